"""Bring a clean worktree from one tree to another after its branch moved.

The branch reference moves first (by compare-and-swap); the files follow with a safe checkout
whose baseline is the tree the worktree was at. libgit2 then updates exactly the files that
differ between the two trees, and refuses before writing anything when one of them was changed
in the worktree (a conflict), so a change made meanwhile is never overwritten.
"""

from __future__ import annotations

import pygit2
from pygit2.callbacks import git_checkout_options
from pygit2.enums import CheckoutStrategy, FileStatus
from pygit2.ffi import C, ffi

MAX_UNSYNCED_PATHS = 50
_IGNORED = FileStatus.IGNORED


def changed_paths(repo: pygit2.Repository) -> list[str]:
    """Paths `git status` lists (ignored files not), sorted, at most MAX_UNSYNCED_PATHS."""
    status = repo.status(untracked_files="normal")
    paths = sorted(path for path, flags in status.items() if not flags & _IGNORED)
    return paths[:MAX_UNSYNCED_PATHS]


def _object_pointer(obj: pygit2.Object) -> object:
    pointer = ffi.new("git_object **")
    ffi.buffer(pointer)[:] = obj._pointer[:]
    return pointer[0]


def move_files(repo: pygit2.Repository, old_tree: pygit2.Oid, new_tree: pygit2.Oid) -> bool:
    """Update the worktree and index of `repo` from `old_tree` to `new_tree`. False when a file
    that differs between them was changed in the worktree; then nothing was written."""
    if old_tree == new_tree:
        return True
    baseline = repo[old_tree].peel(pygit2.Tree)
    target = repo[new_tree].peel(pygit2.Tree)
    repo.index.read(False)
    # pygit2 does not expose the checkout baseline; the options struct does.
    with git_checkout_options(strategy=CheckoutStrategy.SAFE) as payload:
        payload.checkout_options.baseline = ffi.cast("git_tree *", _object_pointer(baseline))
        err = C.git_checkout_tree(repo._repo, _object_pointer(target), payload.checkout_options)
        if err == C.GIT_ECONFLICT:
            return False
        payload.check_error(err)
    return True
