"""workspace.reconcile: remove what fully landed, ask for review otherwise, gitState always."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hostd.commands.local import run_locally
from hostd.commands.reconcile import ReconcileHandler, reconcile_in_worker
from hostd.commands.target import workspace_params
from hostd.config import load_config
from hostd.queries import state_body
from tests.gitrepo import Repo
from tests.test_cleanup import assert_removed, branches, env_for, fingerprint, workspace


def reconcile(base_dir: Path, **params: Any) -> dict[str, Any]:
    return reconcile_in_worker(workspace_params(params), env_for(base_dir))


def test_nothing_committed_is_cleaned(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    state = state_body(str(wt.path), str(base_dir), "main", None)
    result = reconcile(base_dir, worktreePath=str(wt.path), baseRef="main")
    assert result["status"] == "cleaned" and result["removed"] is True
    assert result["gitState"] == state
    assert result["branchDeleted"] is True
    assert_removed(repo, wt)


def test_all_landed_is_merged(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.commit("work", {"w.txt": "w\n"})
    repo.commit("main moves on", {"m.txt": "m\n"})
    repo.git("cherry-pick", "agent/one")
    assert repo.git("cherry", "main", "agent/one").startswith("-")
    result = reconcile(base_dir, worktreePath=str(wt.path), baseRef="main", branch="agent/one")
    assert result["status"] == "merged" and result["removed"] is True
    assert result["gitState"]["landed"] is True and result["gitState"]["ahead"] == 1
    assert "agent/one" not in branches(repo)
    assert_removed(repo, wt)


def test_default_base_when_none_is_given(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    result = reconcile(base_dir, worktreePath=str(wt.path))
    assert result["gitState"]["baseRef"] == "main"
    assert result["status"] == "cleaned"


def test_unlanded_or_dirty_asks_for_review_and_touches_nothing(base_dir: Path, repo: Repo) -> None:
    unlanded = workspace(repo, base_dir)
    unlanded.commit("work", {"w.txt": "w\n"})
    dirty = workspace(repo, base_dir, "ws2", "agent/two")
    dirty.write("scratch.txt", "s\n")
    for wt in (unlanded, dirty):
        before = fingerprint(repo, unlanded.path, dirty.path)
        result = reconcile(base_dir, workspaceId="ws1", worktreePath=str(wt.path), baseRef="main")
        assert result["status"] == "review_requested" and result["removed"] is False
        assert "error" not in result
        assert result["gitState"] == state_body(str(wt.path), str(base_dir), "main", None)
        assert fingerprint(repo, unlanded.path, dirty.path) == before


def test_unresolvable_base_asks_for_review(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    before = fingerprint(repo, wt.path)
    result = reconcile(base_dir, worktreePath=str(wt.path), baseRef="nope", baseSha="f" * 40)
    assert result["status"] == "review_requested" and "baseRef" not in result["gitState"]
    assert fingerprint(repo, wt.path) == before


def test_missing_worktree_is_cleaned_without_removal(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    shutil.rmtree(wt.path)
    result = reconcile(base_dir, worktreePath=str(wt.path), repoRoot=str(repo.path))
    assert result["status"] == "cleaned" and result["removed"] is False
    assert "worktree no longer exists" in result["gitState"]["error"]


async def test_results_through_the_handler(base_dir: Path, repo: Repo, tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"base_dir": str(base_dir)})
    outside = await run_locally(
        ReconcileHandler(), {"workspaceId": "ws9", "worktreePath": str(tmp_path)}, config
    )
    assert outside["workspaceId"] == "ws9" and outside["status"] == "review_requested"
    assert outside["error"] == f"path outside base_dir: {tmp_path}"
    assert outside["gitState"] == {"error": outside["error"]}
    bad = await run_locally(ReconcileHandler(), {"workspaceId": "ws9", "worktreePath": 1}, config)
    assert bad["status"] == "review_requested" and "gitState" in bad
    wt = workspace(repo, base_dir)
    params = {"workspaceId": "ws1", "worktreePath": str(wt.path), "baseRef": "main"}
    done = await run_locally(ReconcileHandler(), params, config)
    assert done["workspaceId"] == "ws1" and done["status"] == "cleaned" and done["removed"]
    assert "error" not in done
