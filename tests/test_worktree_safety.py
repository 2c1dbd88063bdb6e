"""The safety layer of the destructive commands, with git as the oracle: locating a worktree
from itself, containment, crash-consistent removal, branch release, snapshots, params."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pygit2
import pytest

from hostd.commands import params as p
from hostd.commands.target import workspace_params
from hostd.git.errors import RefusedError
from hostd.git.safety import default_base_name, delete_branch
from hostd.git.snapshot import save_snapshot
from hostd.git.worktrees import finish_removals, locate, remove_worktree, uncommitted_changes
from tests.gitrepo import Repo, git, init_repo

PHASES = ["marked", "moved", "unregistered", "purged"]


class Crash(Exception):
    """Stands for the process dying at a pause point: every step before it is on disk."""


def crash_at(wanted: str):
    def pause(phase: str) -> None:
        if phase == wanted:
            raise Crash(phase)

    return pause


def listed(repo: Repo) -> list[str]:
    out = repo.git("worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def snapshot_files(root: Path) -> dict[str, bytes]:
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            full = Path(folder, name)
            files[str(full.relative_to(root))] = full.read_bytes()
    return files


def test_locate_a_linked_worktree(base_dir: Path, repo: Repo) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    found = locate(str(wt.path), str(base_dir / "elsewhere"), str(base_dir))
    assert found.exists and found.path == str(wt.path)
    assert found.branch == "agent/a" and found.head == wt.head()
    assert (
        found.common_dir
        == git(wt.path, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
    )
    assert found.locked is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b, r, t: str(r.path), "it is the main worktree of its repository"),
        (lambda b, r, t: "/etc", "path outside base_dir: /etc"),
        (lambda b, r, t: str(b / ".." / "x"), "path outside base_dir"),
        (lambda b, r, t: str(b / "plain"), "not a linked git worktree"),
        (lambda b, r, t: str(b / "wt" / "a" / "sub"), "not a linked git worktree"),
    ],
)
def test_locate_refuses(base_dir: Path, repo: Repo, tmp_path: Path, make, message: str) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    wt.commit("sub", {"sub/f.txt": "f\n"})
    (base_dir / "plain").mkdir()
    with pytest.raises(RefusedError, match=message.replace(".", r"\.")):
        locate(make(base_dir, repo, tmp_path), None, str(base_dir))


def test_locate_refuses_symlinks(base_dir: Path, repo: Repo, tmp_path: Path) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    os.symlink(wt.path, base_dir / "link")
    with pytest.raises(RefusedError, match="symbolic link"):
        locate(str(base_dir / "link"), None, str(base_dir))
    outside = init_repo(tmp_path / "outside")
    far = outside.worktree(tmp_path / "far" / "b", "agent/b")
    os.symlink(far.path.parent, base_dir / "parent-link")
    with pytest.raises(RefusedError, match="path outside base_dir"):
        locate(str(base_dir / "parent-link" / "b"), None, str(base_dir))


def test_locate_a_gone_worktree_from_repo_root(base_dir: Path, repo: Repo) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    head = wt.head()
    shutil.rmtree(wt.path)
    found = locate(str(wt.path), str(repo.path), str(base_dir))
    assert not found.exists and found.admin_dir is not None
    assert found.branch == "agent/a" and found.head == head
    nowhere = locate(str(wt.path), None, str(base_dir))
    assert nowhere.common_dir is None


@pytest.mark.parametrize("phase", [*PHASES, None])
def test_removal_interrupted_at_any_phase_is_consistent(
    base_dir: Path, repo: Repo, phase: str | None
) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    wt.write("ignored-later.txt", "x")
    files = snapshot_files(wt.path)
    refs_before = repo.git("for-each-ref")
    found = locate(str(wt.path), None, str(base_dir))
    if phase is None:
        remove_worktree(found)
    else:
        with pytest.raises(Crash):
            remove_worktree(found, crash_at(phase))
        present = wt.path.exists()
        assert present == (str(wt.path) in listed(repo)) or phase == "moved"
        if present:
            assert snapshot_files(wt.path) == files
        assert found.common_dir is not None
        done = finish_removals(found.common_dir, str(base_dir))
        assert done == ([] if phase in ("marked", "unregistered", "purged") else [str(wt.path)])
    kept = phase == "marked"
    assert wt.path.exists() == kept
    assert (str(wt.path) in listed(repo)) == kept
    if kept:
        assert snapshot_files(wt.path) == files
        assert not (Path(found.admin_dir or "") / "hostd-removing").exists()
    assert sorted(os.listdir(wt.path.parent)) == (["a"] if kept else [])
    assert not (Path(found.common_dir or "") / "hostd-trash").exists() or not os.listdir(
        Path(found.common_dir or "") / "hostd-trash"
    )
    assert repo.git("for-each-ref") == refs_before
    repo.git("fsck", "--no-progress")


def test_uncommitted_changes_count_untracked_despite_config(base_dir: Path, repo: Repo) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    handle = pygit2.Repository(str(wt.path))
    assert uncommitted_changes(handle) == 0
    wt.git("config", "status.showUntrackedFiles", "no")
    wt.write("new/deep/file.txt", "u\n")
    assert uncommitted_changes(handle) == 1
    wt.write(".gitignore", "*.log\n")
    wt.git("add", ".gitignore")
    wt.write("x.log", "ignored\n")
    assert uncommitted_changes(handle) == 2


def test_snapshot_keeps_the_working_tree(base_dir: Path, repo: Repo) -> None:
    wt = repo.worktree(base_dir / "wt" / "a", "agent/a")
    wt.commit("tracked", {"t.txt": "t\n", "gone.txt": "g\n"})
    wt.write("t.txt", "changed\n")
    wt.write("staged.txt", "staged\n")
    wt.git("add", "staged.txt")
    wt.write("dir/untracked.bin", b"\0\1\2")
    (wt.path / "gone.txt").unlink()
    wt.write(".gitignore", "*.log\n")
    wt.write("skip.log", "ignored\n")
    os.symlink("t.txt", wt.path / "link")
    name = "refs/hostd/snapshots/a-1"
    save_snapshot(pygit2.Repository(str(wt.path)), name, "snap", "hostd <h@l>")
    listing = set(repo.git("ls-tree", "-r", "--name-only", name).split())
    assert listing == {
        "README.md",
        "t.txt",
        "staged.txt",
        "dir/untracked.bin",
        ".gitignore",
        "link",
    }
    assert repo.git("show", f"{name}:t.txt") == "changed\n"
    assert repo.git("cat-file", "-p", f"{name}:dir/untracked.bin") == "\0\1\2"
    assert repo.git("rev-parse", f"{name}^1").strip() == wt.head()
    assert repo.git("ls-tree", "-r", "--name-only", f"{name}^2").split() == [
        "README.md",
        "gone.txt",
        "staged.txt",
        "t.txt",
    ]
    assert repo.git("log", "-1", "--format=%cn <%ce>", name).strip() == "hostd <h@l>"


def test_delete_branch_is_compare_and_swap(repo: Repo) -> None:
    repo.git("branch", "agent/x")
    old = repo.head()
    repo.commit("moves main", {"m.txt": "m\n"})
    handle = pygit2.Repository(str(repo.path))
    repo.git("branch", "-f", "agent/x", "HEAD")
    assert delete_branch(handle, "agent/x", old) is False
    assert repo.git("rev-parse", "agent/x").strip() == repo.head()
    assert delete_branch(handle, "agent/x", repo.head()) is True
    assert repo.git("branch", "--list", "agent/x") == ""
    assert delete_branch(handle, "agent/x", repo.head()) is False


def test_default_base(tmp_path: Path, base_dir: Path) -> None:
    plain = init_repo(base_dir / "plain", branch="master")
    assert default_base_name(pygit2.Repository(str(plain.path))) == "master"
    plain.git("branch", "main")
    assert default_base_name(pygit2.Repository(str(plain.path))) == "main"
    seed = init_repo(tmp_path / "seed", branch="trunk")
    git(tmp_path, "clone", "-q", str(seed.path), str(base_dir / "clone"))
    clone = Repo(base_dir / "clone")
    clone.git("branch", "main")
    assert default_base_name(pygit2.Repository(str(clone.path))) == "trunk"
    clone.git("checkout", "-q", "main")
    clone.git("branch", "-D", "trunk")
    assert default_base_name(pygit2.Repository(str(clone.path))) == "origin/trunk"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "worktreePath: required"),
        ({"worktreePath": 7}, "worktreePath: expected a string, got int"),
        ({"worktreePath": ["/x"]}, "worktreePath: expected a string, got list"),
        ({"worktreePath": "/x\0y"}, "worktreePath: must not contain NUL bytes"),
        ({"worktreePath": "/" + "x" * (1 << 20)}, "worktreePath: longer than"),
        ({"worktreePath": "/x", "branch": "agent/../main"}, "branch: not a valid branch name"),
        ({"worktreePath": "/x", "branch": "-D"}, "branch: not a valid branch name"),
        ({"worktreePath": "/x", "branch": {"a": 1}}, "branch: expected a string"),
        ({"worktreePath": "/x", "baseRef": "--all"}, "baseRef: must not start with '-'"),
        ({"worktreePath": "/x", "baseSha": "-1"}, "baseSha: must not start with '-'"),
        ({"worktreePath": "/x", "workspaceId": "w" * (1 << 20)}, "workspaceId: longer than"),
        ({"worktreePath": "/x", "repoRoot": True}, "repoRoot: expected a string, got bool"),
    ],
)
def test_hostile_params(params: dict, message: str) -> None:
    with pytest.raises(p.ParamError, match=message.replace("(", r"\(")):
        workspace_params(params)


def test_flags_count_only_with_their_json_type() -> None:
    assert p.flag({"deleteBranch": "false"}, "deleteBranch", True) is True
    assert p.flag({"deleteBranch": 0}, "deleteBranch", True) is True
    assert p.flag({"deleteBranch": False}, "deleteBranch", True) is False
    assert p.flag({"force": "true"}, "force", False) is False
    assert p.flag({"force": 1}, "force", False) is False
    assert p.flag({"force": True}, "force", False) is True
