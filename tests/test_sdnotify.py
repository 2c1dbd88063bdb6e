"""systemd notify: the Notifier over real datagram sockets, and hostd's messages as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostd.sdnotify import Notifier, under_systemd
from tests.relay_harness import DevRelay, Hostd, wait_until


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_notifier_sends_to_path_and_abstract_sockets(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    assert notifier.enabled
    assert notifier.watchdog_interval == 1.5
    assert notifier.notify("READY=1", "STATUS=up")
    notifier.status("two\nlines")
    assert received(sock) == ["READY=1\nSTATUS=up", "STATUS=two lines"]
    notifier.close()

    name = f"hostd-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind("\0" + name)
    abstract.setblocking(False)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")
        assert received(abstract) == ["WATCHDOG=1"]
    finally:
        abstract.close()


def test_notifier_is_off_without_systemd_and_checks_the_watchdog_pid(tmp_path: Path) -> None:
    off = Notifier({})
    assert not off.enabled and off.watchdog_interval is None and not off.notify("READY=1")
    other_pid = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "10", "WATCHDOG_PID": "1"}
    assert Notifier(other_pid).watchdog_interval is None
    own_pid = {**other_pid, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(own_pid).watchdog_interval == 0.000005
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")}).notify("READY=1")
    assert under_systemd({"INVOCATION_ID": "abc"}) and not under_systemd({})


async def test_hostd_notifies_ready_watchdog_status_and_stopping(
    relay: DevRelay,
    hostd: Callable[[str], Hostd],
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    host = hostd(relay.url)
    host.env.update({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    messages: list[tuple[float, str]] = []
    health_at_ready: list[object] = []

    async def collect() -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 4096)
            text = data.decode()
            messages.append((time.monotonic(), text))
            if "READY=1" in text.splitlines():
                health_at_ready.append(await host.health())

    collector = asyncio.create_task(collect())
    try:
        await host.start()
        await wait_until(
            lambda: any(f"STATUS=registered with {relay.url}" in m for _, m in messages),
            10,
            "registered status",
        )
        await wait_until(lambda: _count(messages, "WATCHDOG=1") >= 5, 5, "watchdog pings")
        host.send(signal.SIGTERM)
        assert await host.wait_exit(10) == 0
        await wait_until(lambda: _count(messages, "STOPPING=1") == 1, 2, "STOPPING=1")
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)

    lines = [line for _, m in messages for line in m.splitlines()]
    assert lines.index("READY=1") < lines.index(f"STATUS=registered with {relay.url}")
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert health_at_ready and health_at_ready[0] is not None
    pings = [i for i, line in enumerate(lines) if line == "WATCHDOG=1"]
    assert len(pings) >= 5
    assert lines.index("READY=1") < pings[0]
    [register] = await relay.requests("POST", "/api/orchestrators")
    assert register["json"]["meta"]["supervisor"] == "systemd"


def _count(messages: list[tuple[float, str]], line: str) -> int:
    return sum(1 for _, m in messages if line in m.splitlines())
