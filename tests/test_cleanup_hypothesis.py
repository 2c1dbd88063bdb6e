"""Randomised branch shapes: cleanup removes a worktree only when git agrees its work is on the
base, and otherwise changes nothing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.gitrepo import Repo, git_rc, init_repo
from tests.test_cleanup import cleanup, fingerprint

FILES = ["a.txt", "b.txt", "dir/c.txt"]

edit = st.tuples(st.sampled_from(FILES), st.integers(0, 3))
landing = st.sampled_from(["none", "cherry-pick-all", "cherry-pick-first", "squash", "merge"])


def git_says_contained(repo: Repo, branch: str) -> bool:
    """The git CLI's view: an ancestor, every commit's patch upstream, or merging changes
    nothing."""
    if git_rc(repo.path, "merge-base", "--is-ancestor", branch, "main")[0] == 0:
        return True
    merges = repo.git("rev-list", "--merges", f"main..{branch}").strip()
    if "+" not in repo.git("cherry", "main", branch) and not merges:
        return True
    merged = repo.git("merge-tree", "--write-tree", "main", branch, check=False).split()
    return bool(merged) and merged[0] == repo.git("rev-parse", "main^{tree}").strip()


def land(repo: Repo, how: str) -> None:
    """Bring (some of) the branch's work onto main the way people do; give up on conflicts."""
    commits = repo.git("rev-list", "--reverse", "main..agent/x").split()
    for commit in {"cherry-pick-all": commits, "cherry-pick-first": commits[:1]}.get(how, []):
        if git_rc(repo.path, "cherry-pick", "--keep-redundant-commits", commit)[0] != 0:
            repo.git("cherry-pick", "--abort", check=False)
            break
    if how == "squash":
        if git_rc(repo.path, "merge", "-q", "--squash", "agent/x")[0] != 0:
            repo.git("reset", "-q", "--hard", "HEAD")
        repo.git("commit", "-q", "--allow-empty", "-m", "squash")
    elif how == "merge" and git_rc(repo.path, "merge", "-q", "--no-edit", "agent/x")[0] != 0:
        repo.git("merge", "--abort", check=False)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    branch_edits=st.lists(edit, min_size=1, max_size=3),
    main_edits=st.lists(edit, max_size=2),
    how=landing,
)
def test_cleanup_agrees_with_git(
    branch_edits: list[tuple[str, int]], main_edits: list[tuple[str, int]], how: str
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hostd-cleanup-hyp-"))
    try:
        base_dir = (tmp / "base").resolve()
        repo = init_repo(base_dir / "repo")
        repo.commit("files", {name: f"{name} v0\n" for name in FILES})
        wt = repo.worktree(base_dir / "wt", "agent/x")
        for n, (name, version) in enumerate(branch_edits):
            wt.commit(f"branch {n}", {name: f"{name} branch {version}\n"}, allow_empty=True)
        for n, (name, version) in enumerate(main_edits):
            repo.commit(f"main {n}", {name: f"{name} main {version} {n}\n"}, allow_empty=True)
        land(repo, how)
        expected = git_says_contained(repo, "agent/x")
        before = fingerprint(repo, wt.path)
        result = cleanup(base_dir, worktreePath=str(wt.path), baseRef="main")
        event("removed" if result["removed"] else "refused")
        if result["removed"]:
            assert expected, (how, branch_edits, main_edits)
            assert not wt.path.exists()
        else:
            assert "unlanded commit(s)" in result["error"]
            assert fingerprint(repo, wt.path) == before
            assert not expected, (how, branch_edits, main_edits, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
