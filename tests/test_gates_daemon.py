"""Land gates through the real daemon and the development relay: a failing gate at the relay,
secrets kept from gates, a kill -9 mid-gate, and a drain that ends a gate."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp

from hostd.devrelay.context import STORE
from tests.gitrepo import Repo
from tests.relay_harness import DevRelay, Hostd, wait_until
from tests.test_gate_runner import gone
from tests.test_merge import agent

GATE_FILE = ".agent-relay/land-gates.json"
TOKEN = "bootstrap-token-for-gates-42"


def pids_in(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def merge_action(relay: DevRelay, repo: Repo, wt: Repo, workspace: str) -> str:
    await relay.call(
        "POST",
        "/api/workspaces",
        {
            "id": workspace,
            "repoRoot": str(repo.path),
            "worktreePath": str(wt.path),
            "branch": wt.git("branch", "--show-current").strip(),
            "baseRef": "main",
        },
    )
    body = {"action": "merge", "strategy": "rebase-ff", "agentId": "agent-7"}
    reply = await relay.call("POST", f"/api/workspaces/{workspace}/actions", body)
    return reply["command"]["id"]


async def exit_code(host: Hostd, timeout: float = 30) -> tuple[int]:
    """(exit code,), without waiting for the stderr pipe: git workers of a hostd that exited
    at once may still hold it for a moment."""
    proc = host.proc
    assert proc is not None
    return await wait_until(lambda: proc.returncode is not None and (proc.returncode,), timeout)


def gated(repo: Repo, base_dir: Path, command: str) -> Repo:
    repo.commit("gates", {GATE_FILE: json.dumps([{"name": "suite", "command": command}])})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    return wt


async def test_a_failing_gate_ends_review_requested_at_the_relay_and_sees_no_token(
    http: aiohttp.ClientSession,
    hostd: Callable[[str], Hostd],
    repo: Repo,
    base_dir: Path,
    tmp_path: Path,
) -> None:
    relay = await DevRelay(http).start(token=TOKEN, runtime_tokens=True)
    host = hostd(relay.url).configure(relay={"token": TOKEN})
    try:
        seen = tmp_path / "seen"
        spy = (
            f"mkdir -p {seen}; env > {seen}/env.txt; cp -a . {seen}/checkout; "
            f"cat /proc/$PPID/environ > {seen}/parent-environ; echo 2 tests failed; exit 1"
        )
        wt = gated(repo, base_dir, spy)
        before = repo.git("rev-parse", "main").strip()
        await host.start()
        await host.wait_health(lambda h: h["registration"]["registered"], 15)
        command_id = await merge_action(relay, repo, wt, "ws-gate")
        done = await relay.finished(command_id, 60)
        assert done["status"] == "failed"
        assert done["error"] == "land gate failed: suite"
        assert done["result"]["gateFailure"]["outputTail"].endswith("2 tests failed\n")
        workspace = await relay.call("GET", "/api/workspaces/ws-gate")
        assert workspace["status"] == "review_requested"
        assert repo.git("rev-parse", "main").strip() == before
        assert wt.path.exists()
        gate_steps = [
            p["json"].get("result", {})
            for p in await relay.patches(command_id)
            if p["json"]["status"] == "running"
        ]
        assert {"phase": "gates", "gate": "suite", "index": 1, "of": 1} in gate_steps
        store = relay.runner.app[STORE]  # type: ignore[union-attr]
        (runtime,) = store._db.execute(
            "SELECT runtime_token FROM orchestrators WHERE id = ?", (host.id,)
        ).fetchone()
        assert runtime and "PATH=" in (seen / "env.txt").read_text()
        for secret in (TOKEN, runtime):
            for folder in (seen, host.state_dir):
                grep = subprocess.run(["grep", "-rF", secret, str(folder)], capture_output=True)
                assert grep.returncode == 1, (folder, grep.stdout[:200])
        host.send(signal.SIGTERM)
        assert await host.wait_exit(30) == 0
    finally:
        await relay.stop()


async def hanging_gate(
    relay: DevRelay, host: Hostd, repo: Repo, base_dir: Path, pids: Path
) -> tuple[Repo, str, str, list[int]]:
    """A merge whose gate (and a child of it) runs until killed: (worktree, base before,
    command id, the gate's pids) once the gate is up."""
    wt = gated(repo, base_dir, f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait")
    before = repo.git("rev-parse", "main").strip()
    await host.start()
    command_id = await merge_action(relay, repo, wt, "ws-hang")
    spawned = await wait_until(lambda: len(pids_in(pids)) == 2 and pids_in(pids), 60, "gate up")
    return wt, before, command_id, spawned


async def test_kill_9_mid_gate_leaves_no_gate_process_after_the_next_start(
    relay: DevRelay, hostd: Callable[[str], Hostd], repo: Repo, base_dir: Path, tmp_path: Path
) -> None:
    host = hostd(relay.url)
    wt, before, command_id, spawned = await hanging_gate(
        relay, host, repo, base_dir, tmp_path / "pids"
    )
    host.send(signal.SIGKILL)
    assert await exit_code(host) == (-signal.SIGKILL,)
    assert not any(gone(pid) for pid in spawned)
    checkouts = host.state_dir / "gates" / "checkouts"
    assert list(checkouts.iterdir())
    await host.start()
    await wait_until(lambda: all(gone(pid) for pid in spawned), 20, "gate processes ended")
    await wait_until(lambda: not list(checkouts.iterdir()), 20, "checkout removed")
    done = await relay.finished(command_id, 30)
    assert done["status"] == "failed" and "nothing landed" in done["error"]
    assert repo.git("rev-parse", "main").strip() == before
    assert wt.path.exists()
    host.send(signal.SIGTERM)
    assert await host.wait_exit(30) == 0


async def test_drain_ends_a_gate_that_outlasts_it_and_leaves_the_base(
    relay: DevRelay, hostd: Callable[[str], Hostd], repo: Repo, base_dir: Path, tmp_path: Path
) -> None:
    host = hostd(relay.url).configure(commands={"drain_timeout": "500ms"})
    _, before, _, spawned = await hanging_gate(relay, host, repo, base_dir, tmp_path / "pids")
    host.send(signal.SIGTERM)
    assert await exit_code(host) == (0,)
    await wait_until(lambda: all(gone(pid) for pid in spawned), 20, "gate processes ended")
    assert repo.git("rev-parse", "main").strip() == before


async def test_drain_lets_a_gate_finish_within_it(
    relay: DevRelay, hostd: Callable[[str], Hostd], repo: Repo, base_dir: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    started = tmp_path / "started"
    wt = gated(repo, base_dir, f"touch {started}; while [ ! -e {go} ]; do sleep 0.02; done")
    host = await hostd(relay.url).start()
    command_id = await merge_action(relay, repo, wt, "ws-finish")
    await wait_until(started.exists, 60, "gate up")
    host.send(signal.SIGTERM)
    await host.wait_log("draining", 10)
    go.touch()
    assert await host.wait_exit(30) == 0
    done = await relay.command(command_id)
    assert done["status"] == "succeeded", done
    assert done["result"]["gatesRan"] == 1
    assert repo.git("rev-parse", "main").strip() == done["result"]["mergedSha"]
