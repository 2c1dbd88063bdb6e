"""workspace.merge end to end: the development relay, a hostd process, a dashboard action; and
`kill -9` at each phase of a merge, then a restart that reports the true outcome once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostd.commands.merge import INTERRUPTED
from tests.gitrepo import Repo, clone_with_origin, git
from tests.relay_harness import DevRelay, Hostd, wait_until

TERMINAL = ("succeeded", "failed")


def agent(repo: Repo, base_dir: Path, name: str = "one") -> Repo:
    return repo.worktree(base_dir / ".agent-relay" / "workspaces" / name, f"agent/{name}", "main")


async def create_workspace(relay: DevRelay, repo: Repo, wt: Repo, ws_id: str = "ws-1") -> None:
    await relay.call(
        "POST",
        "/api/workspaces",
        {
            "id": ws_id,
            "mode": "isolated",
            "repoRoot": str(repo.path),
            "sourceCwd": str(repo.path),
            "worktreePath": str(wt.path),
            "branch": wt.git("branch", "--show-current").strip(),
            "baseRef": "main",
        },
    )


async def merge_action(relay: DevRelay, ws_id: str = "ws-1", **options: Any) -> str:
    reply = await relay.call(
        "POST", f"/api/workspaces/{ws_id}/actions", {"action": "merge", **options}
    )
    return reply["command"]["id"]


async def workspace_status(relay: DevRelay, ws_id: str, wanted: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        record = await relay.call("GET", f"/api/workspaces/{ws_id}")
        return record if record["status"] == wanted else None

    return await wait_until(reached, 30, f"workspace {ws_id} {wanted}")


async def terminal_patches(relay: DevRelay, command_id: str) -> list[dict[str, Any]]:
    return [p for p in await relay.patches(command_id) if p["json"]["status"] in TERMINAL]


async def test_merge_action_lands_and_the_relay_shows_merged(
    relay: DevRelay, hostd: Callable[[str], Hostd], repo: Repo, base_dir: Path
) -> None:
    host = await hostd(relay.url).start()
    await host.wait_health(lambda h: h["registration"]["registered"], 15, "registered")
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "feature\n"})
    repo.commit("m1", {"m.txt": "main\n"})
    await create_workspace(relay, repo, wt)
    command_id = await merge_action(relay, strategy="rebase-ff")
    record = await workspace_status(relay, "ws-1", "merged")
    done = await relay.finished(command_id)
    assert done["status"] == "succeeded"
    assert done["result"]["mergedSha"] == repo.git("rev-parse", "main").strip()
    assert record["metadata"]["mergeResult"]["workspaceId"] == "ws-1"
    assert repo.git("show", "main:f.txt") == "feature\n"
    assert not wt.path.exists()
    phases = [p["json"].get("result", {}).get("phase") for p in await relay.patches(command_id)]
    assert [p for p in phases if p] == ["preview", "fetching", "replaying", "swapping",
                                        "syncing", "finishing"]  # fmt: skip
    assert len(await terminal_patches(relay, command_id)) == 1


async def test_conflict_ends_in_review_with_the_error_shown(
    relay: DevRelay, hostd: Callable[[str], Hostd], repo: Repo, base_dir: Path
) -> None:
    host = await hostd(relay.url).start()
    await host.wait_health(lambda h: h["registration"]["registered"], 15, "registered")
    repo.commit("base", {"s.txt": "1\n2\n"})
    wt = agent(repo, base_dir)
    wt.commit("f1", {"s.txt": "agent\n2\n"})
    repo.commit("m1", {"s.txt": "main\n2\n"})
    before = repo.head()
    await create_workspace(relay, repo, wt)
    command_id = await merge_action(relay)
    record = await workspace_status(relay, "ws-1", "review_requested")
    done = await relay.finished(command_id)
    assert done["status"] == "failed"
    assert done["error"] == "merge would conflict with main"
    assert done["result"]["status"] == "conflict"
    assert done["result"]["conflictFiles"] == ["s.txt"]
    assert "merge would conflict with main" in json.dumps(record)
    assert repo.head() == before and wt.path.exists()


def consistent(repo: Repo, wt: Repo, before: str, finished: bool = False) -> bool:
    """Base at the old or a new tip containing the branch; worktree present and registered, or
    gone (a registration left by a crash names a missing folder: git lists it as prunable, and
    the next run finishes it); the object database intact."""
    main = repo.git("rev-parse", "main").strip()
    entries = repo.git("worktree", "list", "--porcelain").split("\n\n")
    entry = next((e for e in entries if e.startswith(f"worktree {wt.path}\n")), None)
    if wt.path.exists():
        assert entry is not None and "prunable" not in entry
        assert wt.git("status", "--porcelain") == ""
    else:
        assert entry is None or (not finished and "prunable" in entry)
    repo.git("fsck", "--no-progress")
    if main == before:
        return False
    assert repo.git("show", "main:f.txt") == "feature\n"
    return True


PHASES = ["preview", "replaying", "swapping", "syncing", "pushing", "finishing", "moved", "branch"]


@pytest.mark.parametrize("phase", [f"merge:{name}" for name in PHASES])
async def test_kill_9_at_each_phase_then_one_true_report(
    relay: DevRelay,
    hostd: Callable[[str], Hostd],
    base_dir: Path,
    tmp_path: Path,
    phase: str,
) -> None:
    """The base has an upstream, so the land fetches and pushes too."""
    repo, origin = clone_with_origin(base_dir, "repo")
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "feature\n"})
    repo.commit("m1", {"m.txt": "main\n"})
    before = repo.head()
    marker = tmp_path / "paused"
    host = hostd(relay.url)
    host.env.update(HOSTD_TEST_PAUSE=phase, HOSTD_TEST_PAUSE_FILE=str(marker))
    await host.start()
    await host.wait_health(lambda h: h["registration"]["registered"], 15, "registered")
    await create_workspace(relay, repo, wt)
    command_id = await merge_action(relay, strategy="rebase-ff")
    await wait_until(marker.exists, 30, f"paused at {phase}")
    await host.kill()
    landed = consistent(repo, wt, before)

    again = hostd(relay.url)
    await again.start()
    done = await relay.finished(command_id, 30)
    assert len(await terminal_patches(relay, command_id)) == 1
    assert consistent(repo, wt, before, finished=True) == landed
    if not landed:
        assert (done["status"], done["error"]) == ("failed", INTERRUPTED)
        assert wt.path.exists() and repo.git("status", "--porcelain") == ""
        return
    assert done["status"] == "succeeded", done
    tip = repo.git("rev-parse", "main").strip()
    assert done["result"]["status"] == "merged" and done["result"]["mergedSha"] == tip
    assert git(origin, "rev-parse", "main").strip() == tip
    assert not wt.path.exists()
    assert "agent/one" not in repo.git("branch", "--list")
    assert git(repo.path, "status", "--porcelain") == ""
    await workspace_status(relay, "ws-1", "merged")


@pytest.mark.parametrize("phase", ["merge:finishing", "merge:advanced"])
async def test_kill_9_owner_live_then_branch_advanced_once(
    relay: DevRelay,
    hostd: Callable[[str], Hostd],
    base_dir: Path,
    tmp_path: Path,
    phase: str,
) -> None:
    """Owner live: killed before or after the agent branch moved, the restart reports `active`
    with the branch on the new base tip and the worktree checked out there."""
    repo, origin = clone_with_origin(base_dir, "repo")
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "feature\n"})
    repo.commit("m1", {"m.txt": "main\n"})
    marker = tmp_path / "paused"
    host = hostd(relay.url)
    host.env.update(HOSTD_TEST_PAUSE=phase, HOSTD_TEST_PAUSE_FILE=str(marker))
    await host.start()
    await host.wait_health(lambda h: h["registration"]["registered"], 15, "registered")
    await create_workspace(relay, repo, wt)
    command_id = await merge_action(relay, strategy="rebase-ff", deleteBranch=False)
    await wait_until(marker.exists, 30, f"paused at {phase}")
    await host.kill()
    tip = repo.git("rev-parse", "main").strip()
    advanced = wt.git("rev-parse", "HEAD").strip() == tip
    assert advanced == (phase == "merge:advanced")

    again = hostd(relay.url)
    await again.start()
    done = await relay.finished(command_id, 30)
    assert len(await terminal_patches(relay, command_id)) == 1
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert (result["status"], result["mergedSha"], result["recovered"]) == ("active", tip, True)
    assert result["branchAdvanced"] is True and "error" not in result
    assert repo.git("rev-parse", "main").strip() == tip
    assert git(origin, "rev-parse", "main").strip() == tip
    assert wt.git("rev-parse", "agent/one").strip() == tip
    assert wt.git("rev-parse", "HEAD").strip() == tip
    assert wt.git("status", "--porcelain") == "" and wt.path.joinpath("m.txt").exists()
    repo.git("fsck", "--no-progress")
