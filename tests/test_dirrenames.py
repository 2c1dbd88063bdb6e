"""merge-ort's directory-rename conflicts in the replay, the three-way merge, the preview and the
merge command, against `git rebase` and `git merge-tree --write-tree`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hostd.git.discover import open_workspace
from hostd.git.overlay import overlay_repository
from hostd.git.preview import merge_preview
from hostd.git.replay import replay
from tests.gitrepo import Repo, init_repo
from tests.landing_oracle import snapshot
from tests.test_merge import GitPool, merge, params_for, pool  # noqa: F401 (fixture)
from tests.test_replay import (
    assert_conflicts_like_git,
    assert_like_git,
    assert_merge_like_git,
    branch_from,
    switch,
)


def moved_directory(repo: Repo, renamer: str = "feat") -> None:
    """`renamer` renames olddir/ to newdir/; the other branch adds olddir/c.txt."""
    repo.commit("base", {"olddir/a.txt": "a\n", "olddir/b.txt": "b\n", "top.txt": "t\n"})
    branch_from(repo, "feat")
    if renamer == "feat":
        repo.git("mv", "olddir", "newdir")
        repo.commit("rename")
        switch(repo, "main")
        repo.commit("add", {"olddir/c.txt": "c\n"})
    else:
        repo.commit("add", {"olddir/c.txt": "c\n"})
        switch(repo, "main")
        repo.git("mv", "olddir", "newdir")
        repo.commit("rename")


@pytest.mark.parametrize("renamer", ["feat", "main"])
def test_file_added_in_a_renamed_directory_conflicts(repo: Repo, renamer: str) -> None:
    moved_directory(repo, renamer)
    assert assert_like_git(repo).conflict_files == ["newdir/c.txt"]
    assert assert_conflicts_like_git(repo) == ["newdir/c.txt"]
    assert assert_merge_like_git(repo) == ["newdir/c.txt"]
    with overlay_repository(pygit2.Repository(str(repo.path))) as overlay:
        head = overlay.revparse_single("feat").peel(pygit2.Commit)
        onto = overlay.revparse_single("main").peel(pygit2.Commit)
        landed = replay(overlay, head, onto, pygit2.Signature("t", "t@t"), shortcut=True)
    assert landed.conflict_files == ["newdir/c.txt"]


def test_directory_rename_split_conflicts(repo: Repo) -> None:
    """Half the files to x/, half to y/: git stops without an unmerged path; hostd names the
    added file."""
    repo.commit("base", {"olddir/a.txt": "a\n", "olddir/b.txt": "b\n"})
    branch_from(repo, "feat")
    repo.write("x/.keep", "")
    repo.git("mv", "olddir/a.txt", "x/a.txt")
    repo.git("mv", "olddir/b.txt", "y.txt")
    repo.commit("split")
    switch(repo, "main")
    repo.commit("add", {"olddir/c.txt": "c\n"})
    assert assert_like_git(repo).conflict_files == ["olddir/c.txt"]
    assert assert_merge_like_git(repo) == []  # git's list; hostd's, checked, names c.txt


def test_partial_move_is_no_directory_rename(repo: Repo) -> None:
    repo.commit("base", {"olddir/a.txt": "a\n", "olddir/b.txt": "b\n"})
    branch_from(repo, "feat")
    repo.git("mv", "olddir/a.txt", "a.txt")
    repo.commit("move one")
    switch(repo, "main")
    repo.commit("add", {"olddir/c.txt": "c\n"})
    assert not assert_like_git(repo).conflict
    assert assert_merge_like_git(repo) == []


def test_directory_renames_off_in_the_config(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    moved_directory(repo)
    repo.git("config", "merge.directoryRenames", "false")
    for key, value in {"COUNT": "1", "KEY_0": "merge.directoryRenames", "VALUE_0": "false"}.items():
        monkeypatch.setenv(f"GIT_CONFIG_{key}", value)  # for git's rebase in a scratch clone
    assert not assert_like_git(repo).conflict
    assert assert_merge_like_git(repo) == []


def _preview(repo: Repo, strategy: str) -> dict:
    ws = open_workspace(str(repo.path), str(repo.path.parent))
    return merge_preview(ws, "main", None, strategy, False)


@pytest.mark.parametrize("strategy", ["rebase-ff", "pr"])
def test_preview_predicts_the_directory_rename_conflict(repo: Repo, strategy: str) -> None:
    moved_directory(repo)
    switch(repo, "feat")
    body = _preview(repo, strategy)
    assert body["conflict"] is True and body["cleanFastForward"] is False
    assert body["conflictFiles"] == ["newdir/c.txt"]


async def test_merge_stops_at_the_directory_rename_conflict(
    pool: GitPool,  # noqa: F811
    repo: Repo,
    base_dir: Path,
) -> None:
    repo.commit("base", {"olddir/a.txt": "a\n", "olddir/b.txt": "b\n"})
    wt = repo.worktree(base_dir / ".agent-relay" / "workspaces" / "one", "agent/one", "main")
    wt.git("mv", "olddir", "newdir")
    wt.commit("rename")
    repo.commit("add", {"olddir/c.txt": "c\n"})
    before = snapshot(repo, wt.path)
    result = await merge(pool, base_dir, **params_for(wt, repo))
    assert result["status"] == "conflict" and result["conflictFiles"] == ["newdir/c.txt"]
    assert snapshot(repo, wt.path) == before


# Random directory moves: files under d1/, d1/sub/ and d2/ with distinct contents; one side
# moves directories and edits files, the other adds files and edits. Not generated: both sides
# moving files between directories (rename/rename shapes where libgit2's merge still differs
# from merge-ort's).
DIRS = ["d1", "d1/sub", "d2", "n1", "n2", "d2/in"]
_edit = st.tuples(st.just("edit"), st.integers(0, 5), st.integers(0, 2))
_mover = st.one_of(
    st.tuples(st.just("movedir"), st.sampled_from(DIRS[:3]), st.sampled_from(DIRS[3:])), _edit
)
_adder = st.one_of(st.tuples(st.just("add"), st.sampled_from(DIRS), st.integers(0, 2)), _edit)
_moves = st.lists(st.lists(_mover, min_size=1, max_size=3), min_size=1, max_size=2)
_adds = st.lists(st.lists(_adder, min_size=1, max_size=3), min_size=1, max_size=2)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.txt") if ".git" not in p.parts)


def _apply(repo: Repo, side: str, number: int, ops: list) -> None:
    root = repo.path
    for i, (kind, *args) in enumerate(ops):
        files = _files(root)
        if kind == "movedir":
            src, dst = root / args[0], root / args[1]
            if src.is_dir() and not dst.exists() and not dst.is_relative_to(src):
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
        elif kind == "add":
            target = root / args[0] / f"{side}{number}{i}-{args[1]}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(f"{target.name} {k}\n" for k in range(6)))
        elif kind == "edit" and files:
            target = files[args[0] % len(files)]
            lines = target.read_text().splitlines()
            lines[args[1]] = f"{side} {number}"
            target.write_text("".join(f"{line}\n" for line in lines))
    repo.git("add", "-A")
    repo.git("commit", "-q", "--allow-empty", "-m", f"{side} {number}")


def _moves_repo(tmp: str, feat: list, main: list) -> Repo:
    repo = init_repo(Path(tmp) / "repo", initial=False)
    names = ["d1/a.txt", "d1/b.txt", "d1/sub/c.txt", "d1/sub/d.txt", "d2/e.txt", "top.txt"]
    repo.commit("base", {n: "".join(f"{n} {k}\n" for k in range(6)) for n in names})
    branch_from(repo, "feat")
    for number, ops in enumerate(feat):
        _apply(repo, "feat", number, ops)
    switch(repo, "main")
    for number, ops in enumerate(main):
        _apply(repo, "main", number, ops)
    return repo


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves=_moves, adds=_adds, mover=st.sampled_from(["feat", "main"]))
def test_random_directory_moves_like_git(moves: list, adds: list, mover: str) -> None:
    """The replay as `git rebase`, its shortcut as the full replay, the three-way merge as
    `git merge-tree --write-tree`."""
    feat, main = (moves, adds) if mover == "feat" else (adds, moves)
    with tempfile.TemporaryDirectory() as tmp:
        repo = _moves_repo(tmp, feat, main)
        result = assert_like_git(repo)
        assert_conflicts_like_git(repo)
        files = assert_merge_like_git(repo)
        event(f"rebase conflict={result.conflict}, merge conflict={bool(files)}")
