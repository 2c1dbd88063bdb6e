"""workspace.merge through its handler on real repositories and worktrees; git is the oracle
(`git rebase` in a scratch clone, refs, reachable objects and files before and after)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostd.commands import merge_steps
from hostd.commands.merge import MergeHandler
from hostd.commands.registry import Command, CommandContext
from hostd.config import Config, load_config
from hostd.gitpool import GitPool
from tests.gitrepo import Repo, clone_with_origin, git, init_repo
from tests.landing_oracle import commits_of, git_rebase, snapshot

_ids = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def pool() -> Iterator[GitPool]:
    workers = GitPool(1, writes=True)
    yield workers
    workers.shutdown()


async def _no_progress(result: dict[str, Any]) -> None:
    return None


def config_for(base_dir: Path, **workspaces: Any) -> Config:
    overrides = {"base_dir": str(base_dir), "state_dir": str(base_dir.parent / "state")}
    overrides.update({f"workspaces.{k}": v for k, v in workspaces.items()})
    return load_config(None, env={}, overrides=overrides)


async def merge(
    pool: GitPool, base_dir: Path, config: Config | None = None, **params: Any
) -> dict[str, Any]:
    ctx = CommandContext(
        config=config or config_for(base_dir),
        log=logging.getLogger("test"),
        progress=_no_progress,
        request_exit=lambda code: None,
        git=pool,
    )
    command = Command(id=f"m{next(_ids)}", type="workspace.merge", params=params)
    result = await MergeHandler().run(command, ctx)
    assert result is not None
    return result


def agent(repo: Repo, base_dir: Path, name: str = "one") -> Repo:
    path = base_dir / ".agent-relay" / "workspaces" / name
    return repo.worktree(path, f"agent/{name}", "main")


def params_for(wt: Repo, repo: Repo, **extra: Any) -> dict[str, Any]:
    return {
        "workspaceId": "ws-1",
        "repoRoot": str(repo.path),
        "worktreePath": str(wt.path),
        "branch": wt.git("branch", "--show-current").strip(),
        "baseRef": "main",
        "strategy": "rebase-ff",
        **extra,
    }


async def assert_refused(
    pool: GitPool, base_dir: Path, repo: Repo, wt: Repo, error: str, **params: Any
) -> dict[str, Any]:
    """The merge ends `review_requested` with `error`; refs, objects and files unchanged."""
    before = snapshot(repo, wt.path)
    result = await merge(pool, base_dir, **params_for(wt, repo, **params))
    assert (result["status"], result.get("error")) == ("review_requested", error), result
    assert snapshot(repo, wt.path) == before
    return result


def branches(repo: Repo) -> list[str]:
    return repo.git("for-each-ref", "--format=%(refname:short)", "refs/heads").split()


def assert_gone(repo: Repo, wt: Repo) -> None:
    assert not wt.path.exists()
    assert str(wt.path) not in repo.git("worktree", "list", "--porcelain")
    repo.git("fsck", "--no-progress")


async def test_rebase_ff_lands_like_git_rebase_and_removes_the_worktree(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "feature\n"})
    head = wt.commit("f2", {"README.md": "hello\nfrom the agent\n"})
    repo.commit("m1", {"m.txt": "main moved\n"})
    before_main = repo.head()
    expected = git_rebase(repo, "agent/one", "main")
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert "error" not in result, result
    assert result["status"] == "merged" and result["merged"] is True
    assert result["workspaceId"] == "ws-1" and result["strategy"] == "rebase-ff"
    tip = repo.git("rev-parse", "main").strip()
    assert result["mergedSha"] == result["baseSha"] == tip
    assert result["previousBaseSha"] == before_main and result["headSha"] == head
    assert repo.git("rev-parse", "main^{tree}").strip() == expected.tree
    landed = commits_of(repo, f"{before_main}..main")
    assert [(c.author, c.message) for c in landed] == [
        (c.author, c.message) for c in expected.commits
    ]
    assert (
        result["landedCommitShas"]
        == repo.git("rev-list", "--reverse", f"{before_main}..main").split()
    )
    assert result["rewritten"] is True and result["subject"] == "f2"
    assert result["pushed"] is False
    assert result["worktreeRemoved"] is True and result["branchDeleted"] is True
    assert result["baseWorktreeSync"] == {"reconciled": True}
    assert isinstance(result["durationMs"], int)
    assert repo.git("status", "--porcelain") == ""
    assert (repo.path / "f.txt").read_text() == "feature\n"
    assert_gone(repo, wt)
    assert "agent/one" not in branches(repo)
    assert repo.git("log", "-1", "--format=%cn <%ce>", "main").strip() == "hostd <hostd@localhost>"


async def test_fast_forward_when_already_on_the_base_tip(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    first = wt.commit("f1", {"f.txt": "1\n"})
    head = wt.commit("f2", {"g.txt": "2\n"})
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "merged" and result["rewritten"] is False
    assert result["mergedSha"] == head == repo.git("rev-parse", "main").strip()
    assert result["landedCommitShas"] == [first, head]


async def test_dirty_base_worktree_is_left_alone(pool: GitPool, repo: Repo, base_dir: Path) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"README.md": "changed by the agent\n"})
    repo.write("README.md", "being edited in the base worktree\n")
    repo.write("notes.txt", "untracked\n")
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "merged"
    assert result["baseWorktreeSync"] == {
        "reconciled": False,
        "unsyncedPaths": ["README.md", "notes.txt"],
    }
    assert (repo.path / "README.md").read_text() == "being edited in the base worktree\n"
    assert repo.git("show", "main:README.md") == "changed by the agent\n"


async def test_owner_live_branch_advanced_and_checked_out(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "feature\n"})
    repo.commit("m1", {"m.txt": "main\n"})
    result = await merge(pool, base_dir, **params_for(wt, repo, deleteBranch=False))
    assert result["status"] == "active" and result["branchAdvanced"] is True
    assert result["worktreeRemoved"] is False and result["branchDeleted"] is False
    tip = repo.git("rev-parse", "main").strip()
    assert wt.head() == tip and wt.git("status", "--porcelain") == ""
    assert (wt.path / "m.txt").read_text() == "main\n"


async def test_owner_live_with_a_file_changed_meanwhile_keeps_the_branch(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    head = wt.commit("f1", {"f.txt": "feature\n"})
    repo.commit("m1", {"m.txt": "main\n"})
    ignored = wt.path / ".git"
    assert ignored.is_file()
    result = await merge(pool, base_dir, **params_for(wt, repo, deleteBranch=False, push=False))
    assert result["branchAdvanced"] is True
    repo.commit("m2", {"m.txt": "main again\n"})
    wt.write("m.txt", "the agent's own edit\n")
    wt.git("add", "m.txt")
    wt.git("commit", "-q", "-m", "agent edits m")
    wt.write("m.txt", "uncommitted\n")
    result = await merge(pool, base_dir, **params_for(wt, repo, deleteBranch=False))
    assert result["status"] == "review_requested" and "uncommitted" in result["error"]
    assert head != wt.head()


async def test_expected_head_moved_touches_nothing(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    old = wt.commit("f1", {"f.txt": "1\n"})
    wt.commit("f2", {"f.txt": "2\n"})
    tip_moved = "worktree tip moved since dispatch"
    await assert_refused(pool, base_dir, repo, wt, tip_moved, expectedHeadSha=old)


async def test_dirty_worktree_is_review_requested(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "1\n"})
    wt.write("untracked.txt", "work in progress\n")
    await assert_refused(pool, base_dir, repo, wt, "worktree has uncommitted changes")


async def test_conflict_reports_files_and_changes_nothing(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    repo.commit("base", {"s.txt": "1\n2\n3\n"})
    wt = agent(repo, base_dir)
    wt.commit("f1", {"s.txt": "1\nagent\n3\n"})
    repo.commit("m1", {"s.txt": "1\nmain\n3\n"})
    expected = git_rebase(repo, "agent/one", "main")
    before = snapshot(repo, wt.path)
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "conflict" and result["conflict"] is True
    assert result["conflictFiles"] == expected.conflict_files == ["s.txt"]
    assert result["error"] == "merge would conflict with main"
    assert snapshot(repo, wt.path) == before


async def test_nothing_to_land_is_a_noop_that_cleans_up(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    picked = wt.commit("f1", {"f.txt": "1\n"})
    repo.git("cherry-pick", picked)
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "merged" and result["noop"] is True and "error" not in result
    assert result["worktreeRemoved"] is True and result["branchDeleted"] is True
    assert_gone(repo, wt)


async def test_noop_with_owner_live_stays_active(pool: GitPool, repo: Repo, base_dir: Path) -> None:
    wt = agent(repo, base_dir)
    before = snapshot(repo, wt.path)
    result = await merge(pool, base_dir, **params_for(wt, repo, deleteBranch=False))
    assert result["status"] == "active" and result["noop"] is True
    assert snapshot(repo, wt.path) == before


async def test_base_unavailable(pool: GitPool, repo: Repo, base_dir: Path) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "1\n"})
    before = snapshot(repo, wt.path)
    for bad in ("no-such-branch", "-main"):
        result = await merge(pool, base_dir, **params_for(wt, repo, baseRef=bad))
        assert result["status"] == "review_requested", result
        assert "base ref unavailable" in result["error"] or "must not start" in result["error"]
    assert snapshot(repo, wt.path) == before


async def test_missing_worktree_merged_once_then_benign(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    head = wt.commit("f1", {"f.txt": "1\n"})
    params = params_for(wt, repo, expectedHeadSha=head)
    first = await merge(pool, base_dir, **params)
    assert first["status"] == "merged" and "error" not in first
    again = await merge(pool, base_dir, **params)
    assert again["status"] == "merged" and again["noop"] is True and "error" not in again
    other = await merge(pool, base_dir, **{**params, "expectedHeadSha": "1" * 40})
    assert other["status"] == "cleaned" and other["error"] == "worktree no longer exists"


async def test_hostile_params_touch_nothing(pool: GitPool, repo: Repo, base_dir: Path) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "1\n"})
    outside = init_repo(base_dir.parent / "outside")
    before = snapshot(repo, wt.path)
    cases: list[dict[str, Any]] = [
        {"worktreePath": str(outside.path)},
        {"worktreePath": str(repo.path)},
        {"worktreePath": None},
        {"worktreePath": 42},
        {"branch": "agent/../x"},
        {"prTitle": "t" * 241},
        {"expectedHeadSha": "abc"},
        {"worktreePath": str(wt.path) + "\0"},
        {"baseRef": "x" * 1_000_000},
    ]
    for extra in cases:
        result = await merge(pool, base_dir, **params_for(wt, repo, **extra))
        assert result["error"] and result["status"] == "review_requested", (extra, result)
        assert result["workspaceId"] == "ws-1"
    assert snapshot(repo, wt.path) == before


# ---------------------------------------------------------------- upstream


def with_origin(tmp: Path, base_dir: Path) -> tuple[Repo, Path, Repo]:
    """A clone under base_dir whose main tracks a bare origin, and a second clone elsewhere."""
    repo, origin = clone_with_origin(base_dir, "work")
    other = Repo(tmp / "other")
    git(tmp, "clone", "-q", str(origin), str(other.path))
    return repo, origin, other


async def test_upstream_ahead_is_built_on_and_pushed(
    pool: GitPool, tmp_path: Path, base_dir: Path
) -> None:
    repo, origin, other = with_origin(tmp_path, base_dir)
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "agent\n"})
    upstream = other.commit("upstream moved", {"u.txt": "u\n"})
    other.git("push", "-q", "origin", "HEAD:main")
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "merged" and result["pushed"] is True, result
    tip = result["mergedSha"]
    assert git(origin, "rev-parse", "main").strip() == tip == repo.git("rev-parse", "main").strip()
    assert git(origin, "rev-parse", f"{tip}~1").strip() == upstream
    assert repo.git("rev-parse", "origin/main").strip() == tip
    assert repo.git("status", "--porcelain") == ""


async def test_push_false_leaves_origin_alone(
    pool: GitPool, tmp_path: Path, base_dir: Path
) -> None:
    repo, origin, _ = with_origin(tmp_path, base_dir)
    before = git(origin, "rev-parse", "main").strip()
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "agent\n"})
    result = await merge(pool, base_dir, **params_for(wt, repo, push=False))
    assert result["status"] == "merged" and result["pushed"] is False
    assert git(origin, "rev-parse", "main").strip() == before


async def test_diverged_local_base_is_refused(
    pool: GitPool, tmp_path: Path, base_dir: Path
) -> None:
    repo, _, other = with_origin(tmp_path, base_dir)
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "agent\n"})
    repo.commit("local only", {"l.txt": "l\n"})
    other.commit("upstream only", {"u.txt": "u\n"})
    other.git("push", "-q", "origin", "HEAD:main")
    repo.git("fetch", "-q")
    await assert_refused(pool, base_dir, repo, wt, "local base diverged from its upstream")


async def test_push_rejected_moves_the_local_base_back(
    pool: GitPool, tmp_path: Path, base_dir: Path
) -> None:
    """A pre-push hook moves origin after hostd fetched it: the lease rejects the push."""
    repo, origin, other = with_origin(tmp_path, base_dir)
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "agent\n"})
    moved = other.commit("raced", {"r.txt": "r\n"})
    hook = repo.path / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\nunset GIT_DIR\ngit -C '{other.path}' push -q origin HEAD:main\n")
    hook.chmod(0o755)
    before_main = repo.head()
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "review_requested"
    assert result["error"] == "push rejected: upstream moved"
    assert result["pushed"] is False and result["merged"] is False
    assert repo.git("rev-parse", "main").strip() == before_main
    assert repo.git("status", "--porcelain") == ""
    assert not (repo.path / "f.txt").exists()
    assert git(origin, "rev-parse", "main").strip() == moved
    assert wt.path.exists() and "agent/one" in branches(repo)


# ---------------------------------------------------------------- the base moves meanwhile


class CommitsLandFromOutside:
    """The real pool; each time a candidate has been built, someone else commits on main (in
    the base's own worktree), before hostd's compare-and-swap."""

    def __init__(self, pool: GitPool, repo: Repo, times: int) -> None:
        self.pool = pool
        self.repo = repo
        self.left = times
        self.landed: list[str] = []

    async def run(self, fn: Any, *args: Any, key: str = "") -> Any:
        result = await self.pool.run(fn, *args, key=key)
        if fn is merge_steps.build and self.left > 0:
            self.left -= 1
            n = len(self.landed)
            self.landed.append(self.repo.commit(f"outside {n}", {f"outside{n}.txt": f"{n}\n"}))
        return result


async def merge_racing(
    pool: GitPool, repo: Repo, base_dir: Path, times: int, **params: Any
) -> tuple[dict[str, Any], list[str]]:
    racing = CommitsLandFromOutside(pool, repo, times)
    ctx = CommandContext(
        config=config_for(base_dir),
        log=logging.getLogger("test"),
        progress=_no_progress,
        request_exit=lambda code: None,
        git=racing,  # type: ignore[arg-type]
    )
    command = Command(id=f"m{next(_ids)}", type="workspace.merge", params=params)
    result = await MergeHandler().run(command, ctx)
    assert result is not None
    return result, racing.landed


async def test_base_moved_during_the_land_is_rebuilt_and_nothing_is_lost(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "agent\n"})
    result, outside = await merge_racing(pool, repo, base_dir, 1, **params_for(wt, repo))
    assert result["status"] == "merged", result
    assert result["previousBaseSha"] == outside[0]
    assert repo.git("rev-parse", "main~1").strip() == outside[0]
    assert repo.git("show", "main:f.txt") == "agent\n"
    assert repo.git("show", "main:outside0.txt") == "0\n"
    assert repo.git("status", "--porcelain") == "" and (repo.path / "f.txt").exists()


async def test_base_that_keeps_moving_is_given_up_with_nothing_changed(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    head = wt.commit("f1", {"f.txt": "agent\n"})
    result, outside = await merge_racing(pool, repo, base_dir, 10, **params_for(wt, repo))
    assert result["status"] == "review_requested"
    assert result["error"] == "base kept moving; gave up after 4 attempts"
    assert len(outside) == 4 and repo.git("rev-parse", "main").strip() == outside[-1]
    assert wt.head() == head and "agent/one" in branches(repo)


async def test_merge_timeout_before_the_swap_changes_nothing(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "1\n"})
    before = snapshot(repo, wt.path)
    config = config_for(base_dir, merge_timeout="1ms")
    result = await merge(pool, base_dir, config, **params_for(wt, repo))
    assert result["status"] == "review_requested"
    assert result["error"] == "merge timed out after 0.001s"
    assert snapshot(repo, wt.path) == before
