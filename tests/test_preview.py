"""merge_preview: every branch of the decision list, git as the oracle."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hostd.git.discover import open_workspace
from hostd.git.preview import merge_preview
from hostd.git.state import workspace_state
from tests.gitrepo import Repo, clone_with_origin, git
from tests.test_overlay import age_objects, objects_snapshot
from tests.test_replay import LINES, git_rebase, lines, merge_tree

HEAD_FIELDS = ["strategy", "hasRemote", "ghAvailable", "baseRef"]


@pytest.fixture
def agent(repo: Repo, base_dir: Path) -> Repo:
    repo.commit("base", {"shared.txt": LINES, "other.txt": LINES})
    return repo.worktree(base_dir / "wt", "agent/x")


def preview(
    ws_repo: Repo,
    base_ref: str | None = "main",
    base_sha: str | None = None,
    strategy: str | None = "rebase-ff",
    gh: bool | None = False,
) -> dict[str, Any]:
    """The preview body, checked to be read-only and free of nulls."""
    before = ws_repo.state_fingerprint()
    ws = open_workspace(str(ws_repo.path), str(ws_repo.path.parent))
    body = merge_preview(ws, base_ref, base_sha, strategy, gh)
    assert ws_repo.state_fingerprint() == before
    assert None not in json.loads(json.dumps(body)).values()
    assert body["strategy"] in ("pr", "rebase-ff")
    leading = [k for k in HEAD_FIELDS if k in body]
    assert list(body)[: len(leading)] == leading
    return body


def head(repo: Repo, rev: str = "HEAD") -> str:
    return repo.git("rev-parse", rev).strip()


# ---------------------------------------------------------------- strategy and leading fields


@pytest.fixture
def work(base_dir: Path) -> Repo:
    """A clone whose `main` tracks `origin/main`, with an agent worktree ahead of it."""
    work, _ = clone_with_origin(base_dir)
    wt = work.worktree(base_dir / "work-wt", "agent/y")
    wt.commit("agent work", {"agent.txt": "agent\n"})
    return wt


@pytest.mark.parametrize(
    ("strategy", "base_ref", "gh", "expected"),
    [
        (None, "main", True, "pr"),
        ("auto", "refs/heads/main", True, "pr"),
        ("banana", "main", True, "pr"),
        ("", "main", True, "pr"),
        (None, "main", False, "rebase-ff"),
        (None, "origin/main", True, "rebase-ff"),
        ("rebase-ff", "main", True, "rebase-ff"),
        ("pr", "origin/main", False, "pr"),
    ],
)
def test_strategy_with_origin(
    work: Repo, strategy: str | None, base_ref: str, gh: bool, expected: str
) -> None:
    body = preview(work, base_ref, strategy=strategy, gh=gh)
    assert list(body)[:4] == HEAD_FIELDS
    assert body["strategy"] == expected
    assert body["hasRemote"] is True and body["ghAvailable"] is gh
    assert body["baseRef"] == base_ref.removeprefix("refs/heads/")


def test_strategy_by_sha_is_not_a_local_branch(work: Repo) -> None:
    sha = head(work, "main")
    body = preview(work, "no-such-branch", sha, strategy=None, gh=True)
    assert body["strategy"] == "rebase-ff"
    assert body["baseRef"] == sha


def test_strategy_without_origin(agent: Repo) -> None:
    agent.commit("work", {"a.txt": "a\n"})
    for strategy in (None, "auto", "garbage"):
        body = preview(agent, strategy=strategy, gh=True)
        assert body["strategy"] == "rebase-ff" and body["hasRemote"] is False
    assert preview(agent, strategy="pr", gh=False)["strategy"] == "pr"


def test_gh_is_looked_up_on_path(work: Repo, tmp_path: Path, monkeypatch) -> None:
    only_git = tmp_path / "only-git"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(only_git))
    body = preview(work, strategy=None, gh=None)
    assert body["ghAvailable"] is False and body["strategy"] == "rebase-ff"

    fake = tmp_path / "fake-gh"
    fake.mkdir()
    (fake / "gh").write_text("#!/bin/sh\nexit 0\n")
    (fake / "gh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{only_git}")
    body = preview(work, strategy=None, gh=None)
    assert body["ghAvailable"] is True and body["strategy"] == "pr"


# ---------------------------------------------------------------- errors


def test_repository_error(repo: Repo, agent: Repo) -> None:
    admin = repo.path / ".git" / "worktrees" / "wt"
    (admin / "HEAD").write_text("1234567890123456789012345678901234567890\n")
    body = preview(agent)
    assert list(body) == [*HEAD_FIELDS, "error"]


def test_unborn_head(repo: Repo) -> None:
    repo.git("checkout", "-q", "--orphan", "fresh")
    repo.git("rm", "-q", "-r", "--cached", ".")
    body = preview(repo)
    assert body["error"] == "unborn HEAD"
    assert "ahead" not in body


@pytest.mark.parametrize(("base_ref", "base_sha"), [("nope", None), (None, None), ("-main", "")])
def test_base_ref_unavailable(agent: Repo, base_ref: str | None, base_sha: str | None) -> None:
    body = preview(agent, base_ref, base_sha)
    assert body == {
        "strategy": "rebase-ff",
        "hasRemote": False,
        "ghAvailable": False,
        "error": "base ref unavailable",
    }


# ---------------------------------------------------------------- copied state, dirty, noop


def test_state_fields_are_copied(repo: Repo, agent: Repo) -> None:
    agent.commit("w1", {"a.txt": "a\n"})
    agent.commit("w2", {"b.txt": "b\n"})
    repo.commit("m1", {"m.txt": "m\n"})
    body = preview(agent)
    behind, ahead = map(
        int, agent.git("rev-list", "--left-right", "--count", "main...HEAD").split()
    )
    assert (body["ahead"], body["behind"], body["unmergedAhead"]) == (ahead, behind, 2)
    assert body["headSha"] == head(agent) and body["dirtyCount"] == 0
    ws = open_workspace(str(agent.path), str(agent.path.parent))
    state = workspace_state(ws, "main", None)
    for key in ("ahead", "behind", "unmergedAhead", "dirtyCount"):
        assert body[key] == state[key]
    assert "landed" not in body and "noop" not in body and "reason" not in body


def test_dirty_worktree(agent: Repo) -> None:
    agent.commit("w1", {"a.txt": "a\n"})
    agent.write("untracked.txt", "x\n")
    agent.write("shared.txt", "changed\n")
    body = preview(agent)
    assert body["dirtyCount"] == 2
    assert body["reason"] == "worktree has uncommitted changes"
    assert not {"noop", "conflict", "cleanFastForward"} & set(body)


def test_nothing_to_merge(repo: Repo, agent: Repo) -> None:
    body = preview(agent)
    assert body["ahead"] == 0 and "unmergedAhead" not in body
    assert body["noop"] is True and body["reason"] == "no commits to merge"
    repo.commit("m1", {"m.txt": "m\n"})
    body = preview(agent)
    assert (body["ahead"], body["behind"]) == (0, 1)
    assert body["noop"] is True and body["reason"] == "no commits to merge"
    assert "landed" not in body and "conflict" not in body


def test_already_landed(repo: Repo, agent: Repo) -> None:
    agent.commit("w1", {"a.txt": "a\n"})
    repo.commit("m1", {"m.txt": "m\n"})
    repo.git("cherry-pick", head(agent))
    body = preview(agent)
    assert body["ahead"] == 1 and body["unmergedAhead"] == 0
    assert body["landed"] is True and body["landedSha"] == head(repo, "main")
    assert body["noop"] is True
    assert body["reason"] == "already merged into base (squash/cherry-pick)"
    assert "conflict" not in body


# ---------------------------------------------------------------- the conflict prediction


def test_ahead_only_is_a_clean_fast_forward(agent: Repo) -> None:
    agent.commit("w1", {"shared.txt": lines(l1="agent")})
    for strategy in ("rebase-ff", "pr"):
        body = preview(agent, strategy=strategy)
        assert (body["conflict"], body["cleanFastForward"]) == (False, True)
        assert "conflictFiles" not in body and "noop" not in body


def test_behind_and_clean(repo: Repo, agent: Repo) -> None:
    agent.commit("w1", {"shared.txt": lines(l1="agent")})
    repo.commit("m1", {"shared.txt": lines(l8="main")})
    assert not git_rebase(repo, "agent/x", "main").conflict
    assert not merge_tree(repo, "main", "agent/x")[0]
    for strategy in ("rebase-ff", "pr"):
        body = preview(agent, strategy=strategy)
        assert (body["conflict"], body["cleanFastForward"]) == (False, False)


def test_conflict_matches_git(repo: Repo, agent: Repo) -> None:
    agent.commit("w1", {"shared.txt": lines(l3="agent"), "other.txt": lines(l1="agent")})
    repo.commit("m1", {"shared.txt": lines(l3="main"), "other.txt": lines(l8="main")})
    age_objects(repo)
    objects = objects_snapshot(repo)
    rebase = preview(agent, strategy="rebase-ff")
    pr = preview(agent, strategy="pr")
    assert objects_snapshot(repo) == objects
    assert rebase["conflict"] is True and rebase["cleanFastForward"] is False
    assert rebase["conflictFiles"] == git_rebase(repo, "agent/x", "main").conflict_files
    assert pr["conflict"] is True
    assert pr["conflictFiles"] == merge_tree(repo, "main", "agent/x")[1] == ["shared.txt"]


def test_commit_already_on_the_base_is_not_replayed(repo: Repo, agent: Repo) -> None:
    """Picked onto the base and reverted there, the skipped change makes a later pick conflict."""
    agent.commit("w1", {"a.txt": "a\n"})
    agent.commit("w2", {"shared.txt": lines(l2="picked")})
    picked = head(agent)
    agent.commit("w3", {"shared.txt": lines(l2="picked", l3="next")})
    repo.commit("m1", {"m.txt": "m\n"})
    repo.git("cherry-pick", picked)
    repo.commit("revert", {"shared.txt": LINES})
    body = preview(agent)
    assert (body["ahead"], body["unmergedAhead"]) == (3, 2)
    assert body["conflict"] is True
    expected = git_rebase(repo, "agent/x", "main").conflict_files
    assert body["conflictFiles"] == expected == ["shared.txt"]


def test_strategies_can_disagree(repo: Repo, agent: Repo) -> None:
    """A change made and then undone replays with a conflict but merges cleanly."""
    agent.commit("w1", {"shared.txt": lines(l4="temporary")})
    agent.commit("w2", {"shared.txt": LINES, "a.txt": "a\n"})
    repo.commit("m1", {"shared.txt": lines(l4="main")})
    rebase = preview(agent, strategy="rebase-ff")
    assert rebase["conflict"] is git_rebase(repo, "agent/x", "main").conflict is True
    assert rebase["conflictFiles"] == ["shared.txt"]
    pr = preview(agent, strategy="pr")
    assert pr["conflict"] is merge_tree(repo, "main", "agent/x")[0] is False
    assert pr["cleanFastForward"] is False


def test_unrelated_histories(repo: Repo, base_dir: Path) -> None:
    repo.git("checkout", "-q", "--orphan", "agent/orphan")
    repo.commit("unrelated", {"x.txt": "x\n"})
    repo.git("checkout", "-q", "main")
    git(repo.path, "worktree", "add", "-q", str(base_dir / "orphan"), "agent/orphan")
    orphan = Repo(base_dir / "orphan")
    for strategy in ("rebase-ff", "pr"):
        body = preview(orphan, strategy=strategy)
        assert body["ahead"] == 1 and body["unmergedAhead"] == 1
        assert "conflict" not in body and "conflictFiles" not in body
        assert body["cleanFastForward"] is False


# ---------------------------------------------------------------- land gates


def test_preview_lists_the_gates_the_base_declares(repo: Repo, agent: Repo) -> None:
    gates = [{"name": "tests", "command": "make test"}, {"name": "lint", "command": "true"}]
    repo.commit("gates", {".agent-relay/land-gates.json": json.dumps(gates)})
    agent.commit("weakens the gate", {".agent-relay/land-gates.json": "[]", "a.txt": "a\n"})
    assert preview(agent)["gates"] == ["tests", "lint"]
    assert preview(agent, strategy="pr")["gates"] == []
    repo.commit("broken gates", {".agent-relay/land-gates.json": "{"})
    assert preview(agent)["gates"] == ["land-gates-config"]


def test_preview_without_a_gate_file_or_with_nothing_to_land(repo: Repo, agent: Repo) -> None:
    agent.commit("work", {"a.txt": "a\n"})
    assert preview(agent)["gates"] == []
    repo.commit("gates", {".agent-relay/land-gates.json": '[{"name": "t", "command": "true"}]'})
    fresh = repo.worktree(repo.path.parent / "fresh", "agent/fresh")
    body = preview(fresh)
    assert body["noop"] is True and body["gates"] == []
