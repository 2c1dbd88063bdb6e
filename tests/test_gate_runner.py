"""Running gates as process groups: output tail, timeouts, order, environment, cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from hostd.gates import groups
from hostd.gates.environment import MARKER, gate_environment
from hostd.gates.runner import TAIL_CHARS, GateRunner
from hostd.gates.sweep import gates_dir, sweep
from hostd.git.gatefile import Declaration, Gate, parse_declaration
from tests.relay_harness import wait_until

TOKEN = "relay-token-0123456789"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout"
    folder.mkdir()
    return folder


def runner(tmp_path: Path, **kwargs: Any) -> GateRunner:
    kwargs.setdefault("kill_grace", 2.0)
    return GateRunner(
        str(tmp_path / "gates"), gate_environment(os.environ, [TOKEN]), 30.0, **kwargs
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


async def test_a_passing_and_a_failing_gate(tmp_path: Path, work: Path) -> None:
    ok = await runner(tmp_path).run_one(Gate("ok", "echo fine; true"), str(work), 30)
    assert (ok.passed, ok.exit_code, ok.timed_out) == (True, 0, False)
    assert ok.output_tail == "fine\n"
    bad = await runner(tmp_path).run_one(
        Gate("bad", "echo out; echo err >&2; exit 3"), str(work), 30
    )
    assert (bad.passed, bad.exit_code, bad.timed_out) == (False, 3, False)
    assert bad.as_result() == {
        "name": "bad",
        "command": "echo out; echo err >&2; exit 3",
        "exitCode": 3,
        "timedOut": False,
        "durationMs": bad.duration_ms,
        "outputTail": "out\nerr\n",
    }


async def test_output_keeps_only_its_tail(tmp_path: Path, work: Path) -> None:
    command = "head -c 3000000 /dev/zero | tr '\\0' x; printf 'ÿ%.0s' $(seq 100); echo END"
    run = await runner(tmp_path).run_one(Gate("loud", command), str(work), 60)
    assert run.passed
    assert len(run.output_tail) == TAIL_CHARS
    assert run.output_tail.endswith("ÿ" * 100 + "END\n")
    assert run.output_tail.startswith("x")


async def test_stdin_is_closed(tmp_path: Path, work: Path) -> None:
    run = await runner(tmp_path).run_one(Gate("stdin", "cat; echo done"), str(work), 30)
    assert run.passed and run.output_tail == "done\n"


async def test_timeout_ends_the_whole_group_children_included(tmp_path: Path, work: Path) -> None:
    command = "sleep 300 & echo $! > child.pid; echo $$ > leader.pid; sleep 300"
    run = await runner(tmp_path).run_one(Gate("slow", command, timeout_ms=500), str(work), 0.5)
    assert run.timed_out and not run.passed and run.exit_code is None
    assert "timed out" in run.output_tail
    leader, child = pid_in(work / "leader.pid"), pid_in(work / "child.pid")
    assert leader is not None and child is not None
    await wait_until(lambda: gone(child) and not groups.live_members(leader), 10, "group gone")


async def test_a_group_that_ignores_sigterm_is_killed(tmp_path: Path, work: Path) -> None:
    command = "trap '' TERM; (trap '' TERM; sleep 300) & echo $! > child.pid; sleep 300"
    run = await runner(tmp_path, kill_grace=0.2).run_one(Gate("stubborn", command), str(work), 0.3)
    assert run.timed_out
    child = pid_in(work / "child.pid")
    assert child is not None
    await wait_until(lambda: gone(child), 10, "child killed")


async def test_processes_left_behind_by_a_finished_gate_are_ended(
    tmp_path: Path, work: Path
) -> None:
    command = "(sleep 300 > /dev/null 2>&1 &) ; sleep 300 > /dev/null & echo $! > child.pid"
    run = await runner(tmp_path).run_one(Gate("leaky", command), str(work), 30)
    assert run.passed
    child = pid_in(work / "child.pid")
    assert child is not None
    await wait_until(lambda: gone(child), 10, "left-over child ended")
    assert os.listdir(tmp_path / "gates" / groups.GROUPS) == []


async def test_order_progress_and_the_first_required_failure(tmp_path: Path, work: Path) -> None:
    steps: list[dict[str, Any]] = []

    async def progress(step: dict[str, Any]) -> None:
        steps.append(step)

    declaration = parse_declaration(
        b"""[
          {"name": "first", "command": "touch first"},
          {"name": "soft", "command": "echo soft failure; exit 1", "optional": true},
          {"name": "hard", "command": "echo hard failure; exit 2"},
          {"name": "never", "command": "touch never"}
        ]"""
    )
    report = await runner(tmp_path, progress=progress).run_all(declaration, str(work))
    assert [s["gate"] for s in steps] == ["first", "soft", "hard"]
    assert steps[0] == {"phase": "gates", "gate": "first", "index": 1, "of": 4}
    assert report.ran == 3
    assert [w.name for w in report.warnings] == ["soft"]
    assert report.failure is not None and report.failure.name == "hard"
    assert report.failure.output_tail == "hard failure\n"
    assert (work / "first").exists() and not (work / "never").exists()
    fields = report.fields()
    assert fields["gatesRan"] == 3
    assert fields["gateWarnings"][0]["exitCode"] == 1
    assert fields["gateFailure"]["name"] == "hard"


async def test_a_malformed_declaration_fails_without_running(tmp_path: Path) -> None:
    report = await runner(tmp_path).run_all(parse_declaration(b"{nope"), "/nonexistent")
    assert report.ran == 0
    assert report.failure is not None and report.failure.name == "land-gates-config"
    assert "not JSON" in report.failure.output_tail
    assert "exitCode" not in report.failure.as_result()


async def test_cwd_inside_the_checkout_only(tmp_path: Path, work: Path) -> None:
    (work / "sub" / "dir").mkdir(parents=True)
    os.symlink(tmp_path, work / "escape")
    run = await runner(tmp_path).run_one(Gate("sub", "pwd", cwd="sub/dir"), str(work), 30)
    assert run.passed and run.output_tail == f"{work.resolve()}/sub/dir\n"
    for cwd in ("escape", "missing"):
        refused = await runner(tmp_path).run_one(Gate("x", "touch ran", cwd=cwd), str(work), 30)
        assert not refused.passed and "cwd" in refused.output_tail
    assert not (tmp_path / "ran").exists()


async def test_the_relay_token_and_hostd_settings_stay_out(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_RELAY_TOKEN", TOKEN)
    monkeypatch.setenv("HOSTD_RELAY_TOKEN", TOKEN)
    monkeypatch.setenv("HOSTD_CONFIG", "/etc/hostd.yaml")
    monkeypatch.setenv("COPIED_TOKEN", f"Bearer {TOKEN}")
    monkeypatch.setenv("GIT_DIR", str(tmp_path))
    monkeypatch.setenv("KEEP_ME", "visible")
    run = await runner(tmp_path).run_one(Gate("env", "env | sort"), str(work), 30)
    names = {line.split("=", 1)[0] for line in run.output_tail.splitlines()}
    assert TOKEN not in run.output_tail
    assert not {"AGENT_RELAY_TOKEN", "HOSTD_RELAY_TOKEN", "HOSTD_CONFIG", "COPIED_TOKEN"} & names
    assert "GIT_DIR" not in names
    assert {"KEEP_ME", "PATH", MARKER} <= names


async def test_cancelling_a_run_ends_its_group(tmp_path: Path, work: Path) -> None:
    gate = Gate("long", "sleep 300 & echo $! > child.pid; echo $$ > leader.pid; wait")
    task = asyncio.create_task(runner(tmp_path).run_one(gate, str(work), 300))
    await wait_until(lambda: pid_in(work / "child.pid"), 10, "gate started")
    leader, child = pid_in(work / "leader.pid"), pid_in(work / "child.pid")
    assert leader is not None and child is not None
    assert groups.live_members(leader)
    records = os.listdir(tmp_path / "gates" / groups.GROUPS)
    assert len(records) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(child) or await wait_until(lambda: gone(child), 10, "child ended")
    assert not groups.live_members(leader)
    assert os.listdir(tmp_path / "gates" / groups.GROUPS) == []


async def test_a_passed_deadline_times_the_gate_out(tmp_path: Path, work: Path) -> None:
    declaration = Declaration(gates=(Gate("late", "touch ran"),))
    report = await runner(tmp_path).run_all(declaration, str(work), time.monotonic() - 1)
    assert report.failure is not None and report.failure.timed_out


CRASHING_HOSTD = textwrap.dedent(
    """
    import asyncio, os, sys
    from hostd.git.gatefile import Gate
    from hostd.gates.runner import GateRunner
    state, work = sys.argv[1], sys.argv[2]
    gate = Gate("crash", "sleep 300 & echo $! > child.pid; echo $$ > leader.pid; wait")
    runner = GateRunner(os.path.join(state, "gates"), dict(os.environ), 300)
    asyncio.run(runner.run_one(gate, work, 300))
    """
)


async def test_the_start_up_sweep_ends_gates_a_killed_hostd_left(
    tmp_path: Path, work: Path
) -> None:
    state = tmp_path / "state"
    decoy = subprocess.Popen(["sleep", "300"], cwd=work, start_new_session=True)
    crashing = subprocess.Popen([sys.executable, "-c", CRASHING_HOSTD, str(state), str(work)])
    try:
        await wait_until(lambda: pid_in(work / "child.pid"), 20, "gate started")
        leader, child = pid_in(work / "leader.pid"), pid_in(work / "child.pid")
        assert leader is not None and child is not None
        crashing.send_signal(signal.SIGKILL)
        crashing.wait(10)
        assert not gone(child) and groups.live_members(leader)
        killed, _ = await asyncio.to_thread(sweep, str(state))
        assert child in killed and leader in killed
        await wait_until(lambda: gone(child) and not groups.live_members(leader), 10, "swept")
        assert decoy.poll() is None
        assert os.listdir(os.path.join(gates_dir(str(state)), groups.GROUPS)) == []
        assert await asyncio.to_thread(sweep, str(state)) == ([], [])
    finally:
        decoy.kill()
        decoy.wait()
