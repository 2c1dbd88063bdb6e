"""Probe and worktree listing against `git worktree list --porcelain` and `git status`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pygit2

from hostd.git.discover import probe
from hostd.git.refs import reference
from hostd.git.status import dirty_count
from tests.gitrepo import Repo, git, init_repo


def git_worktrees(repo: Repo) -> list[dict[str, Any]]:
    """Parse `git worktree list --porcelain` into probe's `worktrees[]` shape."""
    entries: list[dict[str, Any]] = []
    for block in repo.git("worktree", "list", "--porcelain").strip().split("\n\n"):
        entry: dict[str, Any] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key == "worktree":
                entry["path"] = value
            elif key == "HEAD":
                entry["headSha"] = value
            elif key == "branch":
                entry["branch"] = value.removeprefix("refs/heads/")
            elif key in ("bare", "detached"):
                entry[key] = True
            elif key in ("locked", "prunable"):
                entry[key] = True
                if value:
                    entry["reason"] = value
        entries.append(entry)
    return entries


def porcelain_count(path: Path) -> int:
    return len(git(path, "status", "--porcelain").splitlines())


def check_against_git(repo: Repo, path: Path, base_dir: Path) -> dict[str, Any]:
    body = probe(str(path), str(base_dir))
    assert body["isGitRepo"] is True
    assert body["worktrees"] == git_worktrees(repo)
    top = git(path, "rev-parse", "--show-toplevel").strip()
    assert body["repoRoot"] == top
    assert body["dirty"] == (porcelain_count(path) > 0)
    branch = git(path, "symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
    assert body.get("branch") == (branch or None)
    head = git(path, "rev-parse", "-q", "--verify", "HEAD", check=False).strip()
    assert body.get("headSha") == (head or None)
    assert body["detached"] == (not branch)
    return body


def test_probe_worktree_shapes(base_dir: Path, repo: Repo) -> None:
    repo.commit("second", {"a.txt": "a\n"})
    agent = repo.worktree(base_dir / "wt" / "agent-1", "agent/one")
    agent.commit("agent work", {"b.txt": "b\n"})
    repo.worktree(base_dir / "wt" / "agent-0", "agent/zero")
    repo.git("worktree", "add", "-q", "--detach", str(base_dir / "wt" / "detached"), "HEAD~1")
    locked = repo.worktree(base_dir / "wt" / "locked", "agent/locked")
    repo.git("worktree", "lock", "--reason", "on a USB disk", str(locked.path))
    repo.worktree(base_dir / "wt" / "locked-plain", "agent/locked-plain")
    repo.git("worktree", "lock", str(base_dir / "wt" / "locked-plain"))
    gone = repo.worktree(base_dir / "wt" / "gone", "agent/gone")
    shutil.rmtree(gone.path)
    unborn_wt = repo.worktree(base_dir / "wt" / "unborn", "agent/unborn-start")
    unborn_wt.git("symbolic-ref", "HEAD", "refs/heads/agent/unborn")
    agent.write("dirty.txt", "untracked\n")

    body = check_against_git(repo, repo.path, base_dir)
    assert body["branch"] == "main" and body["dirty"] is False
    agent_body = check_against_git(repo, agent.path, base_dir)
    assert agent_body["repoRoot"] == str(agent.path)
    assert agent_body["dirty"] is True
    detached = check_against_git(repo, base_dir / "wt" / "detached", base_dir)
    assert detached["detached"] is True and "branch" not in detached
    unborn = check_against_git(repo, base_dir / "wt" / "unborn", base_dir)
    assert "headSha" not in unborn
    paths = [w["path"] for w in body["worktrees"][1:]]
    assert paths == sorted(paths)
    assert any(w.get("prunable") for w in body["worktrees"])
    assert any(w.get("reason") == "on a USB disk" for w in body["worktrees"])


def test_probe_from_a_subdirectory(base_dir: Path, repo: Repo) -> None:
    sub = repo.path / "deep" / "er"
    sub.mkdir(parents=True)
    body = check_against_git(repo, sub, base_dir)
    assert body["path"] == str(sub)


def test_probe_of_a_linked_worktree_of_a_bare_repository(base_dir: Path, repo: Repo) -> None:
    bare = base_dir / "bare.git"
    git(base_dir, "clone", "-q", "--bare", str(repo.path), str(bare))
    git(bare, "worktree", "add", "-q", "-b", "agent/x", str(base_dir / "bare-wt"), "main")
    body = probe(str(base_dir / "bare-wt"), str(base_dir))
    assert body["worktrees"] == git_worktrees(Repo(base_dir / "bare-wt"))
    assert body["worktrees"][0]["bare"] is True


def test_unborn_repository(base_dir: Path) -> None:
    empty = init_repo(base_dir / "empty", initial=False)
    body = check_against_git(empty, empty.path, base_dir)
    assert body["branch"] == "main" and "headSha" not in body
    assert body["worktrees"][0]["headSha"] == "0" * 40


def repo_status_shapes(repo: Repo) -> None:
    repo.commit(
        "files",
        {
            "keep.txt": "k\n",
            "mv-me.txt": "move me\n" * 20,
            "del.txt": "d\n",
            "mod.txt": "m\n",
            "dir/inner.txt": "i\n",
            ".gitignore": "*.log\n",
        },
    )
    repo.git("mv", "mv-me.txt", "moved.txt")
    repo.write("mod.txt", "changed\n")
    repo.git("rm", "-q", "del.txt")
    repo.write("untracked-dir/a.txt", "a\n")
    repo.write("untracked-dir/b/c.txt", "c\n")
    repo.write("ignored.log", "noise\n")
    repo.write("only-ignored/x.log", "noise\n")
    repo.write("new staged.txt", "s\n")
    repo.git("add", "new staged.txt")
    repo.write("new staged.txt", "s2\n")
    repo.write("ünïcode\tname.txt", "u\n")


def test_dirty_count_matches_git_status(base_dir: Path, repo: Repo) -> None:
    repo_status_shapes(repo)
    assert dirty_count(pygit2.Repository(str(repo.path))) == porcelain_count(repo.path)
    repo.git("config", "status.showUntrackedFiles", "no")
    assert dirty_count(pygit2.Repository(str(repo.path))) == porcelain_count(repo.path)
    repo.git("config", "status.showUntrackedFiles", "all")
    assert dirty_count(pygit2.Repository(str(repo.path))) == porcelain_count(repo.path)


def test_dirty_count_with_a_deletion_staged_and_file_still_on_disk(repo: Repo) -> None:
    repo.git("rm", "-q", "--cached", "README.md")
    assert porcelain_count(repo.path) == 2
    assert dirty_count(pygit2.Repository(str(repo.path))) == 2


def test_dirty_count_with_a_conflict(repo: Repo) -> None:
    repo.conflicted_merge("README.md")
    assert dirty_count(pygit2.Repository(str(repo.path))) == porcelain_count(repo.path) == 1


def test_probe_changes_nothing(base_dir: Path, repo: Repo) -> None:
    repo.worktree(base_dir / "wt", "agent/a")
    before = repo.state_fingerprint()
    index_mtime = os.stat(repo.path / ".git" / "index").st_mtime_ns
    probe(str(repo.path), str(base_dir))
    assert repo.state_fingerprint() == before
    assert os.stat(repo.path / ".git" / "index").st_mtime_ns == index_mtime


def test_reference_lookups_keep_no_hold_on_the_names_they_are_given(repo: Repo) -> None:
    """pygit2 keeps a reference to each name string it looks up; a name built for each of a
    probe's 200 worktree lookups would then never be freed."""
    handle = pygit2.Repository(str(repo.path))
    head = repo.head()
    for suffix in ("main", "no-such-branch"):
        name = "".join(["refs/heads/", suffix])
        held = sys.getrefcount(name)
        found = [reference(handle, "".join(["refs/heads/", suffix])) for _ in range(3)]
        found.append(reference(handle, name))
        assert sys.getrefcount(name) == held
        expected = head if suffix == "main" else None
        assert [None if f is None else str(f.target) for f in found] == [expected] * 4
