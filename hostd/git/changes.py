"""The change list of a libgit2 diff: a `Change` per delta, with the sides needed before printing.

Also the corrections that make a merged HEAD → index → worktree diff read like `git diff HEAD`
(type changes, the HEAD side of unmerged paths).
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass

import pygit2
from pygit2.enums import DeltaStatus, DiffFlag

from hostd.git.blobs import File


@dataclass(eq=False)
class Change:
    """A delta of the libgit2 diff (`index`), or a rename paired later (`index` -1)."""

    index: int
    status: DeltaStatus
    old: File | None = None
    new: File | None = None
    score: int = 0
    delta: pygit2.DiffDelta | None = None


def delta_sides(
    repo: pygit2.Repository, delta: pygit2.DiffDelta, status: DeltaStatus, worktree: bool
) -> tuple[File | None, File | None]:
    """Both sides of a delta, but no old side for an addition and no new side for a deletion."""
    old = None if status == DeltaStatus.ADDED else File.of(repo, delta.old_file, False)
    new = None if status == DeltaStatus.DELETED else File.of(repo, delta.new_file, worktree)
    return old, new


def list_changes(
    repo: pygit2.Repository, diff: pygit2.Diff, head_tree: pygit2.Tree | None
) -> list[Change]:
    """Every delta, with its sides where they are needed before printing (rename candidates,
    type changes, conflicts). `head_tree` is given when the new side is the worktree."""
    worktree = head_tree is not None
    changes = []
    for i, delta in enumerate(diff.deltas):
        change = Change(i, delta.status, delta=delta)
        if worktree and change.status == DeltaStatus.MODIFIED and _type_changed(delta):
            change.status = DeltaStatus.TYPECHANGE  # as merged from HEAD → index → worktree
        if change.status == DeltaStatus.CONFLICTED and head_tree is not None:
            # libgit2 drops the HEAD side of an unmerged path; `git diff HEAD` compares it.
            change.old = _tree_file(repo, head_tree, delta.new_file.raw_path)
            if delta.new_file.flags & DiffFlag.EXISTS:
                change.new = File.of(repo, delta.new_file, True)
        elif change.status != DeltaStatus.MODIFIED:
            change.old, change.new = delta_sides(repo, delta, change.status, worktree)
        changes.append(change)
    return changes


def _type_changed(delta: pygit2.DiffDelta) -> bool:
    return stat.S_IFMT(delta.old_file.mode) != stat.S_IFMT(delta.new_file.mode)


def _tree_file(repo: pygit2.Repository, tree: pygit2.Tree, path: bytes) -> File | None:
    try:
        # Interned: pygit2's tree lookups keep a reference to the path string they are given.
        entry = tree[sys.intern(os.fsdecode(path))]
    except (KeyError, ValueError, UnicodeError):
        return None
    return File(repo, path, entry.filemode, entry.id, False)
