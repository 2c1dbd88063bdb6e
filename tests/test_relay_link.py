"""Registration and heartbeat against the development relay, hostd as a real process."""

from __future__ import annotations

import itertools
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pygit2
import pytest

from hostd import PROTOCOL_VERSION, SEMVER
from tests.procs import free_port
from tests.relay_harness import DevRelay, Hostd, wait_until


def _nulls(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path or "<root>"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


async def test_registers_with_every_field_then_heartbeats_at_the_interval(
    relay: DevRelay, hostd: Callable[[str], Hostd], base_dir: Path
) -> None:
    host = await hostd(relay.url).start()
    await host.wait_health(lambda h: h["registration"]["registered"], what="registered")
    beats = await wait_until(lambda: _heartbeats(relay, host, minimum=6), 10, "six heartbeats")

    registers = await relay.requests("POST", "/api/orchestrators")
    assert len(registers) == 1
    body = registers[0]["json"]
    assert _nulls(body) == []
    runtime = {
        "version": SEMVER,
        "protocolVersion": PROTOCOL_VERSION,
        "package": {"name": "hostd", "version": SEMVER},
        "capabilities": {
            "hostApi": True,
            "relayCommandBus": True,
            "workspaceMerge": True,
            "workspaceCleanup": True,
            "workspaceReconcile": True,
        },
        "providers": [],
        "providerStatus": {},
        "providerCatalog": [],
    }
    assert {k: v for k, v in body.items() if k != "meta"} == {
        "id": "test-host",
        "hostname": "test-host.lan",
        "baseDir": str(base_dir),
        "apiUrl": host.url,
        **runtime,
        "envKeys": [],
    }
    meta = body["meta"]
    assert meta["pid"] == host.pid
    assert meta["supervisor"] == "process"
    assert meta["version"] == SEMVER
    assert abs(meta["startedAt"] - time.time() * 1000) < 60_000
    assert meta["python"] == platform.python_version()
    assert (meta["pygit2"], meta["libgit2"]) == (pygit2.__version__, pygit2.LIBGIT2_VERSION)
    assert "selfUnit" not in meta

    assert beats[0]["json"] == runtime
    gaps = [(b["time"] - a["time"]) / 1000 for a, b in itertools.pairwise(beats)]
    assert 0.25 <= statistics.median(gaps) <= 0.45, gaps
    assert min(gaps) >= 0.2, gaps

    health = await host.health()
    assert health is not None
    assert health["degraded"] is False
    assert health["relay"]["connected"] is True
    assert health["relay"]["consecutiveHeartbeatFailures"] == 0
    assert isinstance(health["relay"]["lastHeartbeatOkAt"], int)
    assert health["registration"] == {
        "registered": True,
        "degraded": False,
        "consecutiveFailures": 0,
    }
    assert health["commandLoop"] == {"inFlight": 0, "running": [], "stalled": False}


async def _heartbeats(relay: DevRelay, host: Hostd, minimum: int) -> list[Any] | None:
    beats = await relay.requests("POST", f"/api/orchestrators/{host.id}/heartbeat")
    return beats if len(beats) >= minimum else None


@pytest.mark.parametrize("runtime_tokens", [False, True], ids=["404", "401-runtime-token"])
async def test_forgotten_host_registers_again_at_once_with_the_bootstrap_token(
    http: aiohttp.ClientSession, hostd: Callable[[str], Hostd], runtime_tokens: bool
) -> None:
    relay = await DevRelay(http).start(token="bootstrap", runtime_tokens=runtime_tokens)
    try:
        host = hostd(relay.url).configure(
            relay={"token": "bootstrap", "reconnect_backoff": "5s", "reconnect_backoff_max": "5s"}
        )
        await host.start()
        await wait_until(lambda: _heartbeats(relay, host, minimum=2), 10, "heartbeats")
        beats = await relay.requests("POST", f"/api/orchestrators/{host.id}/heartbeat")
        assert {b["auth"] for b in beats} == {"runtime" if runtime_tokens else "configured"}

        await relay.faults(forgetHosts=True)
        # With runtime tokens, the first call after forgetting gets 401 (the token is gone); when
        # that was a poll, the heartbeat already went with the bootstrap token and got 404.
        rejected = (401, 404) if runtime_tokens else (404,)

        async def registered_again() -> tuple[Any, Any] | None:
            beats = await relay.requests("POST", f"/api/orchestrators/{host.id}/heartbeat")
            refused = [b for b in beats if b.get("status") in rejected]
            registers = await relay.requests("POST", "/api/orchestrators")
            if refused and len(registers) >= 2:
                return refused[0], registers[1]
            return None

        refused, again = await wait_until(registered_again, 5, "re-registration")
        assert again["time"] - refused["time"] < 2000
        assert again["auth"] == "configured"
        assert again["status"] == 200

        since = again["seq"]

        async def heartbeats_after() -> list[Any] | None:
            beats = await relay.requests("POST", f"/api/orchestrators/{host.id}/heartbeat")
            fresh = [b for b in beats if b["seq"] > since]
            return fresh if len(fresh) >= 2 else None

        fresh = await wait_until(heartbeats_after, 5, "heartbeats after re-registration")
        assert {b["status"] for b in fresh} == {200}
        assert {b["auth"] for b in fresh} == {"runtime" if runtime_tokens else "configured"}
        assert len(await host.wait_log("no longer knows this host", 5)) == 1
    finally:
        await relay.stop()


async def test_relay_down_at_start_serves_api_reports_degraded_then_registers(
    http: aiohttp.ClientSession, hostd: Callable[[str], Hostd]
) -> None:
    port = free_port()
    host = await hostd(f"http://127.0.0.1:{port}").start()
    health = await host.wait_health(
        lambda h: h["registration"]["consecutiveFailures"] >= 8, 15, "eight failed registrations"
    )
    assert health["ok"] is True
    assert health["degraded"] is True
    assert health["registration"]["degraded"] is True
    assert health["registration"]["registered"] is False
    assert 0 <= health["registration"]["nextRetryInMs"] <= 500
    assert health["relay"]["connected"] is False
    assert "cannot connect" in health["relay"]["lastError"]
    assert len(host.log_matches("registration with .* failed")) == 1
    assert len(await host.wait_log("registration degraded after 5 consecutive failures")) == 1
    assert len(host.log_matches("WARNING|ERROR")) == 2

    relay = await DevRelay(http).start(port=port)
    try:
        health = await host.wait_health(
            lambda h: h["relay"]["connected"] and h["registration"]["registered"], 5, "registered"
        )
        assert health["degraded"] is False
        assert health["registration"]["consecutiveFailures"] == 0
        assert "nextRetryInMs" not in health["registration"]
        pattern = r"registered with .* after \d+ failed attempt\(s\); recovered after"
        assert len(await host.wait_log(pattern, 5)) == 1
        await wait_until(lambda: _polls(relay, 1), 5, "polling once connected")
    finally:
        await relay.stop()


async def _polls(relay: DevRelay, minimum: int) -> list[Any] | None:
    polls = await relay.requests("GET", "/api/commands")
    return polls if len(polls) >= minimum else None


async def test_hanging_relay_gets_no_overlapping_heartbeats_and_no_polls(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> None:
    host = hostd(relay.url).configure(relay={"request_timeout": "600ms"})
    await host.start()
    await host.wait_health(lambda h: h["relay"]["connected"], what="connected")
    await relay.faults(hang=["POST /api/orchestrators*"])
    hang_started = time.time() * 1000

    health = await host.wait_health(lambda h: not h["relay"]["connected"], 10, "disconnected")
    disconnected_at = time.time() * 1000
    assert health["degraded"] is True
    assert health["relay"]["degraded"] is True
    assert "timed out" in health["relay"]["lastError"]

    async def link_calls(minimum: int) -> list[Any] | None:
        calls = [
            r
            for r in await relay.requests("POST", "/api/orchestrators*")
            if r["time"] > hang_started
        ]
        return calls if len(calls) >= minimum else None

    calls = await wait_until(lambda: link_calls(6), 15, "six link requests while hanging")
    await relay.faults(hang=[])
    released_at = time.time() * 1000
    gaps = [(b["time"] - a["time"]) / 1000 for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.55, gaps

    polls = await relay.requests("GET", "/api/commands")
    assert [p for p in polls if disconnected_at + 300 < p["time"] < released_at] == []
    assert len(await host.wait_log("heartbeat to .* failed", 5)) == 1

    health = await host.wait_health(lambda h: h["relay"]["connected"], 10, "reconnected")
    assert health["degraded"] is False
    assert host.proc is not None and host.proc.returncode is None
