"""The daemon's HTTP server under hostile clients: oversized requests, slowloris, fd limits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
from collections.abc import Callable

import pytest

from hostd.logs import JsonFormatter, RedactSecrets
from tests.relay_harness import DevRelay, Hostd, wait_until

TOKEN = "tok-3f9a1c77e2"
PARTIAL_HEAD = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n"


async def exchange(host: Hostd, raw: bytes) -> tuple[int, bytes]:
    """Send raw bytes, read until the server closes; the status code and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def request(target: str, *headers: bytes) -> bytes:
    lines = [f"GET {target} HTTP/1.1".encode(), b"Host: localhost", b"Connection: close"]
    return b"\r\n".join([*lines, *headers, b"", b""])


async def open_half(host: Hostd, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", host.port)
        writer.write(PARTIAL_HEAD)
        writers.append(writer)
    return writers


async def health_answers(host: Hostd, times: int) -> None:
    for _ in range(times):
        status, body = await exchange(host, request("/api/health"))
        assert status == 200 and json.loads(body)["ok"] is True


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def no_tracebacks(host: Hostd) -> None:
    assert host.log_matches("Traceback") == [], host.dump()


MALFORMED = {
    "line-token-first": request(f"/api/workspace/probe?token={TOKEN}&pad={'a' * 9000}"),
    "line-token-last": request(f"/api/workspace/probe?pad={'a' * 9000}&token={TOKEN}"),
    "long-header": request(f"/api/workspace/probe?token={TOKEN}", b"X-Big: " + b"b" * 9000),
    "many-headers": request(
        f"/api/workspace/probe?token={TOKEN}", *(b"X-%d: 1" % i for i in range(200))
    ),
    "bad-name": request(
        f"/api/workspace/probe?token={TOKEN}", b"X-Agent-Relay-Token\x01: " + TOKEN.encode()
    ),
    "long-token": request(
        f"/api/workspace/probe?token={TOKEN}", b"X-Agent-Relay-Token: " + b"t" * 9000
    ),
}


async def test_malformed_requests_get_json_400_and_the_token_is_never_logged(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> None:
    host = await hostd(relay.url).configure(relay={"token": TOKEN}).start()
    for name, raw in MALFORMED.items():
        status, body = await exchange(host, raw)
        assert status == 400, name
        assert set(json.loads(body)) == {"error"}, name
        assert TOKEN.encode() not in body, name
    await health_answers(host, 1)
    await wait_until(
        lambda: len(host.log_matches("bad request from 127.0.0.1")) == len(MALFORMED),
        10,
        "one log line per malformed request",
    )
    assert [line for line in host.lines if TOKEN in line] == []
    no_tracebacks(host)


async def test_unknown_routes_are_404_in_the_log_and_metrics(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> None:
    host = await hostd(relay.url).configure(relay={"token": TOKEN}).start()
    status, body = await exchange(host, request(f"/no/such/route?token={TOKEN}"))
    assert (status, json.loads(body)) == (404, {"error": "not found"})
    await host.wait_log(r"GET /no/such/route 404")
    status, metrics = await exchange(host, request("/metrics"))
    assert 'route="unmatched",status="404"' in metrics.decode()
    assert 'status="500"' not in metrics.decode()
    assert [line for line in host.lines if TOKEN in line] == []


async def test_slow_headers_and_idle_keepalive_connections_are_closed(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> None:
    host = hostd(relay.url).configure(api={"header_timeout": "500ms", "idle_timeout": "500ms"})
    await host.start()
    slow_reader, slow = await asyncio.open_connection("127.0.0.1", host.port)
    slow.write(PARTIAL_HEAD)
    assert await asyncio.wait_for(slow_reader.read(), 10) == b""

    idle_reader, idle = await asyncio.open_connection("127.0.0.1", host.port)
    idle.write(PARTIAL_HEAD + b"\r\n")
    head = await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    assert json.loads(await idle_reader.readexactly(length))["ok"] is True
    assert await asyncio.wait_for(idle_reader.read(), 10) == b""
    await health_answers(host, 1)


async def test_hundreds_of_half_open_sockets_under_a_low_file_limit(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> None:
    host = await hostd(relay.url).configure(api={"header_timeout": "30s"}).start()
    resource.prlimit(host.pid, resource.RLIMIT_NOFILE, (256, 256))
    writers = await open_half(host, 300)
    await health_answers(host, 5)
    await host.wait_log("connection limit 64 reached")
    assert len(host.log_matches("connection limit")) == 1
    assert host.log_matches("Too many open files") == []
    no_tracebacks(host)
    for writer in writers:
        writer.close()


async def test_running_out_of_descriptors_is_logged_once_and_health_recovers(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> None:
    host = await hostd(relay.url).configure(api={"header_timeout": "30s"}).start()
    limit = fd_count(host.pid) + 40
    resource.prlimit(host.pid, resource.RLIMIT_NOFILE, (limit, limit))
    host.send(signal.SIGSTOP)  # the kernel queues the connections; one accept burst meets them
    try:
        writers = await open_half(host, 100)
    finally:
        host.send(signal.SIGCONT)
    await host.wait_log("out of resources accepting connections: Too many open files")
    await wait_until(lambda: fd_count(host.pid) < limit, 10, "descriptors freed")
    await health_answers(host, 3)
    assert len(host.log_matches("Too many open files")) == 1
    no_tracebacks(host)
    for writer in writers:
        writer.close()


@pytest.mark.parametrize("formatter", [logging.Formatter(), JsonFormatter()])
def test_redaction_covers_messages_arguments_and_tracebacks(formatter: logging.Formatter) -> None:
    redact = RedactSecrets([TOKEN])
    try:
        raise ValueError(f"GET /x?a=1&token=other-token&b=2 X-Agent-Relay-Token: {TOKEN}")
    except ValueError as exc:
        record = logging.LogRecord("aiohttp.server", logging.ERROR, "f", 1, "%s", (exc,), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert redact.filter(record)
    text = formatter.format(record)
    assert "token=<redacted>&b=2" in text and "Traceback" in text
    assert TOKEN not in text and "other-token" not in text
