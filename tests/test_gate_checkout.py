"""The throwaway checkout: the commit's files exactly as git checks them out, nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hostd.gates.checkout import checkouts_root, materialise, remove, remove_all
from tests.gitrepo import Repo, git


def snapshot(root: Path) -> dict[str, tuple[str, bool, bytes]]:
    """Every file below `root` but `.git`: kind, executable bit, content or link target."""
    found: dict[str, tuple[str, bool, bytes]] = {}
    for folder, dirs, files in os.walk(root):
        at_root = folder == str(root)
        dirs[:] = [d for d in dirs if not (at_root and d == ".git")]
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in [f for f in files if not (at_root and f == ".git")] + links:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", False, os.readlink(path).encode())
            else:
                executable = bool(os.stat(path).st_mode & stat.S_IXUSR)
                found[rel] = ("file", executable, Path(path).read_bytes())
    return found


def varied_commit(repo: Repo, attributes: bool = True) -> str:
    """Files of every kind; with `attributes`, a checkout filter that changes bytes."""
    if attributes:
        repo.write(".gitattributes", "*.txt text eol=crlf\n")
    repo.write("notes.txt", "one\ntwo\n")
    repo.write("deep/er/still/file.py", "print('x')\n")
    repo.write("empty", "")
    repo.write("tool.sh", "#!/bin/sh\necho hi\n").chmod(0o755)
    repo.write("héllo wörld.md", "unicode\n")
    repo.write("bin.dat", bytes(range(256)))
    os.symlink("deep/er", repo.path / "shortcut")
    os.symlink("missing-target", repo.path / "dangling")
    repo.git("add", "-A")
    gitlink = f"160000,{repo.head()},vendor/submodule"
    repo.git("update-index", "--add", "--cacheinfo", gitlink)
    repo.git("commit", "-q", "-m", "varied")
    return repo.head()


@pytest.mark.parametrize("attributes", [False, True], ids=["written-directly", "with-filters"])
def test_checkout_matches_git_worktree_add_of_the_same_commit(
    repo: Repo, tmp_path: Path, attributes: bool
) -> None:
    sha = varied_commit(repo, attributes)
    oracle = tmp_path / "oracle"
    repo.git("worktree", "add", "-q", "--detach", str(oracle), sha)
    path = Path(materialise(str(repo.path / ".git"), sha, str(tmp_path / "gates")))
    assert snapshot(path) == snapshot(oracle)
    assert (path / "vendor" / "submodule").is_dir()
    assert git(path, "rev-parse", "HEAD").strip() == sha
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(path, "symbolic-ref", "-q", "HEAD", check=False) == ""  # detached
    assert path.parent == Path(checkouts_root(str(tmp_path / "gates")))


def test_the_users_repository_is_left_as_it_was(repo: Repo, tmp_path: Path) -> None:
    sha = varied_commit(repo)
    repo.write("untracked-in-main.txt", "not in the commit\n")
    before = repo.state_fingerprint()
    index = (repo.path / ".git" / "index").read_bytes()
    status = repo.git("status", "--porcelain")
    path = materialise(str(repo.path / ".git"), sha, str(tmp_path / "gates"))
    assert not (Path(path) / "untracked-in-main.txt").exists()
    git(path, "commit", "-q", "--allow-empty", "-m", "a gate writes an object")
    remove(path)
    assert not os.path.lexists(path)
    assert repo.state_fingerprint() == before
    assert (repo.path / ".git" / "index").read_bytes() == index
    assert repo.git("status", "--porcelain") == status


def test_remove_deletes_read_only_folders_and_does_not_follow_links(
    repo: Repo, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep me\n")
    path = Path(materialise(str(repo.path / ".git"), repo.head(), str(tmp_path / "gates")))
    (path / "cache" / "sealed").mkdir(parents=True)
    (path / "cache" / "sealed" / "f").write_text("x")
    os.symlink(outside, path / "cache" / "link-out")
    (path / "cache" / "sealed").chmod(0o500)
    (path / "cache").chmod(0o500)
    remove(str(path))
    assert not path.exists()
    assert (outside / "keep").read_text() == "keep me\n"


def test_remove_all_clears_what_a_crash_left(repo: Repo, tmp_path: Path) -> None:
    gates = str(tmp_path / "gates")
    left = [materialise(str(repo.path / ".git"), repo.head(), gates) for _ in range(2)]
    assert sorted(remove_all(gates)) == sorted(os.path.basename(p) for p in left)
    assert os.listdir(checkouts_root(gates)) == []
    assert remove_all(str(tmp_path / "never-used")) == []


def test_a_checkout_from_a_linked_worktrees_repository(repo: Repo, tmp_path: Path) -> None:
    agent = repo.worktree(tmp_path / "agent", "agent/a")
    sha = agent.commit("agent work", {"work.txt": "done\n"})
    common = git(agent.path, "rev-parse", "--git-common-dir").strip()
    path = Path(materialise(os.path.join(agent.path, common), sha, str(tmp_path / "gates")))
    assert (path / "work.txt").read_text() == "done\n"
    assert git(path, "log", "--format=%H", "-1").strip() == sha
