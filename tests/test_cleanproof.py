"""The threaded clean proof says "clean" exactly when `git status --porcelain` lists nothing."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostd.git.cleanproof import proven_clean
from tests.gitrepo import Repo, init_repo
from tests.test_statuswatch import FILES, OPERATIONS, _random_change

BASE = {
    "a.txt": "a\n",
    "d/b.txt": "b\n",
    "d/e/c.txt": "c\n",
    "z.txt": "z\n",
    ".gitignore": "ign/\n",
}


def proof(repo: Repo, untracked: bool = True) -> bool:
    return proven_clean(pygit2.Repository(str(repo.path)), untracked, min_index_bytes=0)


def git_clean(repo: Repo, untracked: bool = True) -> bool:
    flag = "-unormal" if untracked else "-uno"
    return repo.git("status", "--porcelain", flag) == ""


def _typechange(repo: Repo) -> None:
    (repo.path / "d/e/c.txt").unlink()
    os.symlink("../b.txt", repo.path / "d/e/c.txt")


CHANGES: dict[str, Callable[[Repo], None]] = {
    "a nested file is edited": lambda r: r.write("d/e/c.txt", "changed\n"),
    "a top-level file is edited": lambda r: r.write("z.txt", "changed\n"),
    "a nested file is deleted": lambda r: (r.path / "d/e/c.txt").unlink(),
    "an untracked nested file": lambda r: r.write("d/e/new.txt", "new\n"),
    "an untracked top-level file": lambda r: r.write("new.txt", "new\n"),
    "an untracked folder": lambda r: r.write("n/m/new.txt", "new\n"),
    "a staged edit": lambda r: (r.write("d/b.txt", "staged\n"), r.git("add", "d/b.txt")),
    "a staged edit taken back in the file": lambda r: (
        r.write("d/b.txt", "staged\n"),
        r.git("add", "d/b.txt"),
        r.write("d/b.txt", "b\n"),
    ),
    "a staged deletion": lambda r: r.git("rm", "-q", "--cached", "z.txt"),
    "intent to add": lambda r: (r.write("i.txt", "i\n"), r.git("add", "-N", "i.txt")),
    "a mode change": lambda r: os.chmod(r.path / "d/b.txt", 0o755),
    "a file becomes a symlink": _typechange,
    "a merge conflict": lambda r: r.conflicted_merge("d/e/c.txt"),
    "a name with a glob character": lambda r: r.write("d/[x]*.txt", "x\n"),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_every_change_disproves_clean(tmp_path: Path, name: str) -> None:
    repo = init_repo(tmp_path / "r")
    repo.commit("base", BASE)
    assert proof(repo) and git_clean(repo)
    CHANGES[name](repo)
    assert not git_clean(repo)
    assert not proof(repo)


def test_ignored_files_and_hidden_untracked_files_leave_it_clean(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    repo.commit("base", BASE)
    repo.write("ign/build.o", "o\n")
    assert proof(repo) and git_clean(repo)
    repo.write("u.txt", "u\n")
    assert git_clean(repo, untracked=False) and proof(repo, untracked=False)
    assert not proof(repo)


def test_small_worktrees_are_left_to_the_full_status(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    repo.commit("base", BASE)
    assert git_clean(repo)
    assert not proven_clean(pygit2.Repository(str(repo.path)), True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(FILES)), max_size=8))
def test_random_changes_are_judged_as_git_judges_them(operations: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = init_repo(Path(tmp) / "r")
        repo.commit("base", BASE)
        for op, rel in operations:
            _random_change(repo, op, rel)
            assert proof(repo) == git_clean(repo)
            assert proof(repo, untracked=False) == git_clean(repo, untracked=False)
