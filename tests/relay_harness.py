"""hostd as a real process against the development relay in the test's event loop.

Fixtures: `relay` (a running development relay), `hostd` (a factory for hostd processes that are
killed at teardown). Waits are on conditions with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psutil
import pytest
import yaml
from aiohttp import web

from hostd.devrelay import RelaySettings, start
from tests.procs import free_port

T = TypeVar("T")

FAST_RELAY = {
    "heartbeat_interval": "300ms",
    "poll_interval": "200ms",
    "request_timeout": "2s",
    "register_backoff": "100ms",
    "register_backoff_max": "400ms",
    "reconnect_backoff": "200ms",
    "reconnect_backoff_max": "800ms",
    "backoff_jitter": "20ms",
}
_SUPERVISOR_ENV = ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID")


async def wait_until(
    condition: Callable[[], Awaitable[T] | T], timeout: float = 10.0, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(0.02)


class DevRelay:
    """The development relay, driven over HTTP like a dashboard or the test's fault switch."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(
        self, port: int = 0, token: str | None = None, runtime_tokens: bool = False
    ) -> DevRelay:
        settings = RelaySettings(runtime_tokens=runtime_tokens, request_log_size=20000)
        self.token = token
        self.runner, self.url = await start("127.0.0.1", port, token=token, settings=settings)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"X-Agent-Relay-Token": self.token} if self.token else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as res:
            assert res.status < 300, (method, path, res.status, await res.text())
            return await res.json()

    async def enqueue(self, host_id: str, command_type: str, params: dict[str, Any]) -> str:
        body = {"type": command_type, "target": f"orchestrator-{host_id}", "params": params}
        return (await self.call("POST", "/api/commands", body))["id"]

    async def start_counter(self, host_id: str, count: Path, seconds: float) -> str:
        """Queue a `hostd.test.counter` command and wait until hostd has started it."""
        command_id = await self.enqueue(
            host_id, "hostd.test.counter", {"file": str(count), "seconds": seconds}
        )
        await wait_until(lambda: counter_lines(count) == [command_id], 10, "command started")
        return command_id

    async def command(self, command_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/api/commands/{command_id}")

    async def finished(self, command_id: str, timeout: float = 10.0) -> dict[str, Any]:
        async def terminal() -> dict[str, Any] | None:
            command = await self.command(command_id)
            return command if command["status"] in ("succeeded", "failed") else None

        return await wait_until(terminal, timeout, f"command {command_id} finished")

    async def faults(self, **switches: Any) -> Any:
        return await self.call("POST", "/api/_dev/faults", switches)

    async def requests(self, method: str | None = None, path: str | None = None) -> list[Any]:
        query = "&".join(
            f"{key}={value}" for key, value in (("method", method), ("path", path)) if value
        )
        return (await self.call("GET", "/api/_dev/requests?" + query))["requests"]

    async def patches(self, command_id: str) -> list[dict[str, Any]]:
        return await self.requests("PATCH", f"/api/commands/{command_id}")


class Hostd:
    """One `python -m hostd run` process with a generated config; stderr is collected."""

    def __init__(self, tmp: Path, base_dir: Path, relay_url: str, session: aiohttp.ClientSession):
        self.tmp = tmp
        self.base_dir = base_dir
        self.session = session
        self.id = "test-host"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = tmp / "state"
        self.config: dict[str, Any] = {
            "id": self.id,
            "hostname": "test-host.lan",
            "base_dir": str(base_dir),
            "state_dir": str(self.state_dir),
            "api": {"listen": f"127.0.0.1:{self.port}", "public_url": self.url},
            "relay": {"url": relay_url, **FAST_RELAY},
            "commands": {"drain_timeout": "20s"},
        }
        self.env: dict[str, str] = {"HOSTD_TEST_HANDLERS": "1"}
        self.argv: list[str] = [sys.executable, "-m", "hostd"]
        self.cwd: Path | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    def configure(self, **sections: dict[str, Any]) -> Hostd:
        for name, values in sections.items():
            self.config.setdefault(name, {}).update(values)
        return self

    async def start(self) -> Hostd:
        path = self.tmp / "hostd.yaml"
        path.write_text(yaml.safe_dump(self.config))
        env = {k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ENV}
        env.update(self.env)
        self.lines = []
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            "run",
            "--config",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=self.cwd,
        )
        self._reader = asyncio.create_task(self._read(self.proc))
        await wait_until(self.health, 15, "hostd API up")
        return self

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def health(self) -> dict[str, Any] | None:
        try:
            async with self.session.get(self.url + "/api/health") as res:
                return await res.json() if res.status == 200 else None
        except (aiohttp.ClientError, OSError):
            return None

    async def wait_health(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0, what: str = ""
    ) -> dict[str, Any]:
        async def matching() -> dict[str, Any] | None:
            body = await self.health()
            return body if body is not None and check(body) else None

        return await wait_until(matching, timeout, what or "health condition")

    def log_matches(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]

    async def wait_log(self, pattern: str, timeout: float = 10.0) -> list[str]:
        return await wait_until(lambda: self.log_matches(pattern), timeout, f"log {pattern!r}")

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            # Its git workers and their fork server hold its stderr open until they end too.
            try:
                descendants = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                descendants = []
            self.proc.kill()
            for child in descendants:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            await self.proc.wait()
        if self._reader is not None:
            # Processes it left behind may hold its stderr open a little longer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 10)
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.proc is not None:
            # Closed on this loop: once the loop is closed, a transport left open fails in its
            # finalizer whenever the collector gets to it (inside another test).
            self.proc._transport.close()  # type: ignore[attr-defined]

    def dump(self) -> str:
        return "\n".join(self.lines[-80:])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def relay(http: aiohttp.ClientSession) -> AsyncIterator[DevRelay]:
    dev = DevRelay(http)
    await dev.start()
    yield dev
    await dev.stop()


@pytest.fixture
async def hostd(
    tmp_path: Path, base_dir: Path, http: aiohttp.ClientSession
) -> AsyncIterator[Callable[[str], Hostd]]:
    made: list[Hostd] = []

    def make(relay_url: str) -> Hostd:
        proc = Hostd(tmp_path, base_dir, relay_url, http)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        await proc.kill()
        print(f"--- hostd {proc.url} log (last lines) ---\n{proc.dump()}")


def counter_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
