"""workspace.cleanup and workspace.reconcile with the real daemon: kill -9 at every phase of a
cleanup and restart, end to end through the development relay, and the local CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.gitrepo import Repo
from tests.procs import run_hostd
from tests.relay_harness import DevRelay, Hostd, wait_until
from tests.test_cleanup import assert_removed, branches, listed_paths, tree_files, workspace

PHASES = ["checked", "marked", "moved", "unregistered", "purged", "branch"]


def statuses(patches: list[dict[str, Any]]) -> list[str]:
    return [p["json"]["status"] for p in patches]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def kill_9(host: Hostd) -> None:
    """kill -9 the daemon, then its git workers (which would outlive it), each by its pid."""
    family = psutil.Process(host.pid).children(recursive=True)
    host.send(signal.SIGKILL)
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    assert await host.wait_exit() == -signal.SIGKILL


async def stop(host: Hostd) -> None:
    host.send(signal.SIGTERM)
    assert await host.wait_exit() == 0


async def kill_when_paused(host: Hostd, marker: Path) -> None:
    """kill -9 the daemon once a pause point is reached."""
    await wait_until(marker.exists, 30, "pause point reached")
    pid = int(marker.read_text().split()[1])
    await kill_9(host)
    await wait_until(lambda: not alive(pid), 10, "paused worker ended")


@pytest.fixture
async def daemon(
    relay: DevRelay, hostd: Callable[[str], Hostd]
) -> AsyncIterator[Callable[[], Hostd]]:
    """hostd processes that are killed with their git workers at teardown."""
    made: list[Hostd] = []

    def make() -> Hostd:
        made.append(hostd(relay.url))
        return made[-1]

    yield make
    for host in made:
        if host.proc is not None and host.proc.returncode is None:
            await kill_9(host)


@pytest.mark.parametrize("phase", [*PHASES, "snapshotted"])
async def test_kill_9_at_each_cleanup_phase_then_restart(
    relay: DevRelay,
    daemon: Callable[[], Hostd],
    base_dir: Path,
    repo: Repo,
    tmp_path: Path,
    phase: str,
) -> None:
    wt = workspace(repo, base_dir)
    forced = phase == "snapshotted"
    if forced:
        wt.write("unsaved.txt", "keep me\n")
    files = tree_files(wt.path)
    marker = tmp_path / "paused"
    host = daemon()
    host.env.update(HOSTD_TEST_PAUSE=f"cleanup:{phase}", HOSTD_TEST_PAUSE_FILE=str(marker))
    await host.start()
    params: dict[str, Any] = {
        "workspaceId": "ws1",
        "worktreePath": str(wt.path),
        "repoRoot": str(repo.path),
    }
    if forced:
        params.update(force=True, reason="agent lost")
    command_id = await relay.enqueue(host.id, "workspace.cleanup", params)
    await kill_when_paused(host, marker)

    present, registered = wt.path.exists(), str(wt.path) in listed_paths(repo)
    assert present <= registered, "a folder git no longer knows as a worktree"
    if present:
        assert tree_files(wt.path) == files

    del host.env["HOSTD_TEST_PAUSE"]
    await host.start()
    done = await relay.finished(command_id, 30)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["workspaceId"] == "ws1" and result["status"] == "cleaned"
    assert result["removed"] is True
    assert "alreadyGone" not in result
    assert_removed(repo, wt)
    if forced:
        snapshots = repo.git("for-each-ref", "--format=%(refname)", "refs/hostd/snapshots")
        assert len(snapshots.split()) >= 1
        assert all(
            repo.git("show", f"{ref}:unsaved.txt") == "keep me\n" for ref in snapshots.split()
        )
        assert "agent/one" in branches(repo)
    else:
        assert "agent/one" not in branches(repo)
        assert result["branchDeleted"] is (phase != "branch")
    assert os.listdir(wt.path.parent.parent) == []
    assert statuses(await relay.patches(command_id)).count("succeeded") == 1
    await stop(host)


async def test_end_to_end_through_the_development_relay(
    relay: DevRelay, daemon: Callable[[], Hostd], base_dir: Path, repo: Repo
) -> None:
    host = await daemon().start()

    async def registered() -> dict[str, Any] | None:
        listed = await relay.call("GET", "/api/orchestrators")
        items = listed if isinstance(listed, list) else listed.get("orchestrators", [])
        return next((o for o in items if o.get("id") == host.id), None)

    caps = (await wait_until(registered, 10, "registered"))["capabilities"]
    assert caps.get("workspaceCleanup") is True and caps.get("workspaceReconcile") is True

    cleaned = workspace(repo, base_dir, "ws1", "agent/one")
    reconciled = workspace(repo, base_dir, "ws2", "agent/two")
    reconciled.commit("work", {"w.txt": "w\n"})
    repo.commit("main moves on", {"m.txt": "m\n"})
    repo.git("cherry-pick", "agent/two")
    kept = workspace(repo, base_dir, "ws3", "agent/three")
    kept.commit("unlanded", {"u.txt": "u\n"})
    orphan = workspace(repo, base_dir, "orphan", "agent/orphan")
    for wid, wt, branch in [
        ("ws1", cleaned, "agent/one"),
        ("ws2", reconciled, "agent/two"),
        ("ws3", kept, "agent/three"),
    ]:
        await relay.call(
            "POST",
            "/api/workspaces",
            {
                "id": wid,
                "repoRoot": str(repo.path),
                "worktreePath": str(wt.path),
                "branch": branch,
                "baseRef": "main",
            },
        )

    reply = await relay.call("POST", "/api/workspaces/ws1/actions", {"action": "cleanup"})
    done = await relay.finished(reply["command"]["id"], 30)
    assert done["status"] == "succeeded", done
    ws1 = await relay.call("GET", "/api/workspaces/ws1")
    assert ws1["status"] == "cleaned"
    assert_removed(repo, cleaned)

    for wid, wt, expected in [("ws2", reconciled, "merged"), ("ws3", kept, "review_requested")]:
        params = {"workspaceId": wid, "worktreePath": str(wt.path), "repoRoot": str(repo.path)}
        params.update(baseRef="main", branch=f"agent/{'two' if wid == 'ws2' else 'three'}")
        command_id = await relay.enqueue(host.id, "workspace.reconcile", params)
        done = await relay.finished(command_id, 30)
        assert done["status"] == "succeeded" and done["result"]["status"] == expected, done
        assert "gitState" in done["result"]
        assert (await relay.call("GET", f"/api/workspaces/{wid}"))["status"] == expected
    assert_removed(repo, reconciled)
    assert kept.path.exists() and "agent/three" in branches(repo)

    listing = await relay.call("GET", "/api/workspaces/orphans")
    found = {o["worktreePath"]: o for o in listing["orphans"]}
    assert str(orphan.path) in found and str(kept.path) not in found
    body = {"worktreePath": str(orphan.path), "repoRoot": str(repo.path), "branch": "agent/orphan"}
    reply = await relay.call("POST", "/api/workspaces/orphans/reclaim", body)
    done = await relay.finished(reply["command"]["id"], 30)
    assert done["status"] == "succeeded" and done["result"]["removed"] is True, done
    assert_removed(repo, orphan)
    assert "agent/orphan" not in branches(repo)
    listing = await relay.call("GET", "/api/workspaces/orphans")
    assert str(orphan.path) not in {o["worktreePath"] for o in listing["orphans"]}
    await stop(host)


def test_cli_cleanup_and_reconcile(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.write("unsaved.txt", "u\n")
    args = ["--base-dir", str(base_dir)]
    refused = run_hostd("cleanup", str(wt.path), *args)
    assert refused.returncode == 1, refused.stderr
    assert "1 uncommitted change(s)" in json.loads(refused.stdout)["error"]
    review = run_hostd("reconcile", str(wt.path), *args)
    assert review.returncode == 0 and json.loads(review.stdout)["status"] == "review_requested"
    assert wt.path.exists()
    forced = run_hostd("cleanup", str(wt.path), "--force", "--reason", "from the CLI", *args)
    assert forced.returncode == 0, forced.stdout
    result = json.loads(forced.stdout)
    assert result["removed"] is True and result["snapshotRef"].startswith("refs/hostd/snapshots/")
    assert_removed(repo, wt)
    other = workspace(repo, base_dir, "ws2", "agent/two")
    done = run_hostd("reconcile", str(other.path), *args)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "cleaned"
    assert_removed(repo, other)
