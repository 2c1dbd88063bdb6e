"""Shutdown: drain on SIGTERM while heartbeating, immediate exit on a second signal or SIGQUIT."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.relay_harness import DevRelay, Hostd, counter_lines


async def test_sigterm_drains_a_running_command_while_heartbeating(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 1.5)
    host.send(signal.SIGTERM)
    signalled = time.time() * 1000
    assert await host.wait_exit(15) == 0
    exited = time.time() * 1000

    done = await relay.command(command_id)
    assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    outcome = (await relay.patches(command_id))[-1]
    assert outcome["json"]["status"] == "succeeded" and outcome["status"] == 200
    assert signalled < outcome["time"] < exited
    beats = await relay.requests("POST", f"/api/orchestrators/{host.id}/heartbeat")
    assert len([b for b in beats if signalled < b["time"] < outcome["time"]]) >= 3
    polls = await relay.requests("GET", "/api/commands")
    assert [p for p in polls if p["time"] > signalled + 300] == []
    assert host.log_matches(r"draining 1 command\(s\)")
    assert counter_lines(count) == [command_id]


async def test_second_sigterm_exits_at_once_and_the_command_is_recovered(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 60)
    host.send(signal.SIGTERM)
    await host.wait_log("draining 1 command")
    started = time.monotonic()
    host.send(signal.SIGTERM)
    assert await host.wait_exit(5) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 2
    assert host.log_matches("received SIGTERM, exiting at once")

    await host.start()
    done = await relay.finished(command_id)
    assert done["result"] == {"recovered": True, "runs": 1}
    host.send(signal.SIGQUIT)
    assert await host.wait_exit(5) == 128 + signal.SIGQUIT


async def test_drain_timeout_exits_zero_and_leaves_the_command_to_recovery(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).configure(commands={"drain_timeout": "500ms"}).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 60)
    started = time.monotonic()
    host.send(signal.SIGTERM)
    assert await host.wait_exit(10) == 0
    assert 0.4 < time.monotonic() - started < 5
    assert host.log_matches(f"left to recovery at next start: {command_id}")
    assert (await relay.command(command_id))["status"] == "running"


async def test_sighup_drains_and_exits_like_sigterm(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 1.0)
    host.send(signal.SIGHUP)
    assert await host.wait_exit(15) == 0
    done = await relay.command(command_id)
    assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    assert host.log_matches("received SIGHUP, shutting down")
    assert host.log_matches(r"draining 1 command\(s\)")
    assert host.log_matches("hostd stopped")
