"""Repositories kept open between queries still see every change git makes on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from hostd import queries
from hostd.git.repocache import RepositoryCache
from tests.gitrepo import Repo, git


def porcelain(path: Path) -> int:
    return len(git(path, "status", "--porcelain").splitlines())


def test_cached_repository_follows_changes_on_disk(base_dir: Path, repo: Repo) -> None:
    agent = repo.worktree(base_dir / "wt", "agent/a")
    args = (str(agent.path), str(base_dir), "main", None)
    assert queries.state_body(*args)["dirtyCount"] == 0
    agent.write("a.txt", "a\n")
    agent.write("mv.txt", "move me\n" * 30)
    agent.commit("add", {})
    agent.git("mv", "mv.txt", "moved.txt")
    agent.write("README.md", "changed\n")
    body = queries.state_body(*args)
    assert body["dirtyCount"] == porcelain(agent.path) == 2
    assert body["ahead"] == 1
    agent.commit("more", {"b.txt": "b\n"})
    repo.commit("main moves", {"c.txt": "c\n"})
    body = queries.state_body(*args)
    assert (body["ahead"], body["behind"], body["dirtyCount"]) == (2, 1, 0)
    agent.git("checkout", "-q", "-b", "agent/b")
    assert queries.probe_body(str(agent.path), str(base_dir))["branch"] == "agent/b"
    repo.git("config", "status.showUntrackedFiles", "no")
    agent.write("untracked.txt", "u\n")
    assert queries.state_body(*args)["dirtyCount"] == porcelain(agent.path) == 0


def test_deleted_repository_is_an_error_not_a_crash(base_dir: Path, repo: Repo) -> None:
    args = (str(repo.path), str(base_dir), None, None)
    assert "error" not in queries.state_body(*args)
    shutil.rmtree(repo.path / ".git")
    assert queries.state_body(*args) == {"error": f"not a git repository: {repo.path}"}


def test_cache_is_bounded(base_dir: Path) -> None:
    cache = RepositoryCache(size=2)
    paths = []
    for i in range(4):
        path = base_dir / f"r{i}"
        git(base_dir, "init", "-q", str(path))
        paths.append(str(path / ".git"))
    repos = [cache.open(p) for p in paths]
    assert cache.open(paths[3]) is repos[3]
    assert cache.open(paths[0]) is not repos[0]
