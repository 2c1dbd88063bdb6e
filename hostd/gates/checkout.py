"""A throwaway checkout of one commit under `state_dir`, outside every worktree of the user's.

It is a repository of its own: a `.git` whose object database borrows the source repository's
through `objects/info/alternates`, a detached HEAD at the commit and an index of its tree, so a
gate may run `git status`, `git diff` or `git ls-files` there. When no checkout filter can
apply, the files are written by `treewriter` (several at a time) and the index carries no stat
data (git re-reads each file once, at the first `git status`); otherwise libgit2 checks the tree
out with its filters. It is not registered
as a worktree of the source repository, so nothing in the user's repository records it and a
crash leaves nothing there to repair: removing the folder is the whole cleanup. Objects a gate
writes stay in the checkout's own database.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from typing import Any

import pygit2
from pygit2.enums import CheckoutStrategy

from hostd.gates.treewriter import filters_may_apply, write_tree

CHECKOUTS = "checkouts"


def checkouts_root(gates_dir: str) -> str:
    return os.path.join(gates_dir, CHECKOUTS)


def materialise(
    common_dir: str, commit_sha: str, gates_dir: str, filtered: bool | None = None
) -> str:
    """Check `commit_sha` of the repository at `common_dir` out into a new folder; its path.
    `filtered` forces libgit2's checkout (True) or the direct writer (False); None decides."""
    root = checkouts_root(gates_dir)
    os.makedirs(root, mode=0o700, exist_ok=True)
    path = tempfile.mkdtemp(prefix="land-", dir=root)
    try:
        _populate(path, common_dir, commit_sha, filtered)
    except BaseException:
        remove(path)
        raise
    return path


def _populate(path: str, common_dir: str, commit_sha: str, filtered: bool | None) -> None:
    source = pygit2.Repository(common_dir)
    pygit2.init_repository(path)
    git_dir = os.path.join(path, ".git")
    objects = os.path.join(os.path.realpath(source.path), "objects")
    with open(os.path.join(git_dir, "objects", "info", "alternates"), "w") as fh:
        fh.write(objects + "\n")
    shallow = os.path.join(source.path, "shallow")
    if os.path.exists(shallow):
        shutil.copyfile(shallow, os.path.join(git_dir, "shallow"))
    repo = pygit2.Repository(path)
    commit = repo[commit_sha].peel(pygit2.Commit)
    if filtered is None:
        filtered = filters_may_apply(repo, commit.tree)
    if filtered:
        repo.checkout_tree(commit.tree, strategy=CheckoutStrategy.FORCE)
    else:
        write_tree(repo, commit.tree, path)
        index = repo.index
        index.read_tree(commit.tree)
        index.write()
    repo.set_head(commit.id)


def remove(path: str) -> None:
    """Delete a checkout, also folders a gate made read-only; symbolic links are not followed."""
    if os.path.lexists(path):
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def _make_writable_and_retry(func: object, path: str, exc_info: tuple[Any, ...]) -> None:
    if isinstance(exc_info[1], FileNotFoundError):
        return
    parent = os.path.dirname(path)
    os.chmod(parent, stat.S_IRWXU)
    if not os.path.islink(path) and os.path.isdir(path):
        os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(path, onerror=_make_writable_and_retry)
    else:
        os.unlink(path)


def remove_all(gates_dir: str) -> list[str]:
    """Delete every checkout left under `gates_dir` (at start-up, after a crash)."""
    root = checkouts_root(gates_dir)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        remove(os.path.join(root, name))
        removed.append(name)
    return removed
