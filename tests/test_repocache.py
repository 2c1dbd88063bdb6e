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


def test_dormant_handles_load_again_what_changed_on_disk(base_dir: Path, repo: Repo) -> None:
    cache = RepositoryCache(awake=1)
    agents = [repo.worktree(base_dir / f"wt{i}", f"agent/{i}") for i in range(3)]
    git_dirs = [git(a.path, "rev-parse", "--absolute-git-dir").strip() for a in agents]
    handles = [cache.open(d) for d in git_dirs]
    assert cache.awake_count() == 1
    assert len(handles[0].index) == len(git(agents[0].path, "ls-files").splitlines())
    agents[0].write("new.txt", "new\n")
    agents[0].git("add", "new.txt")
    agents[0].commit("more", {"b.txt": "b\n"})
    woken = cache.open(git_dirs[0])
    assert woken is handles[0]
    assert cache.awake_count() == 1
    assert len(woken.index) == len(git(agents[0].path, "ls-files").splitlines())
    assert str(woken.head.target) == git(agents[0].path, "rev-parse", "HEAD").strip()
    assert woken[woken.head.target].message == "more\n"


def test_awake_handles_are_bounded_by_their_index_files(base_dir: Path, repo: Repo) -> None:
    agents = [repo.worktree(base_dir / f"wt{i}", f"agent/{i}") for i in range(3)]
    git_dirs = [git(a.path, "rev-parse", "--absolute-git-dir").strip() for a in agents]
    index_size = (Path(git_dirs[0]) / "index").stat().st_size
    cache = RepositoryCache(max_index_bytes=2 * index_size)
    for git_dir in git_dirs:
        cache.open(git_dir)
    assert cache.awake_count() == 2
