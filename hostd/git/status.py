"""Working-tree status counted the way `git status --porcelain` (v1) prints it."""

from __future__ import annotations

import pygit2
from pygit2.enums import DeltaStatus, DiffFind, FileStatus

_INDEX_CHANGES = (
    FileStatus.INDEX_NEW
    | FileStatus.INDEX_MODIFIED
    | FileStatus.INDEX_DELETED
    | FileStatus.INDEX_RENAMED
    | FileStatus.INDEX_TYPECHANGE
)
_UNTRACKED_MODES = {"no": "no", "false": "no", "normal": "normal", "true": "normal", "all": "all"}


def untracked_mode(repo: pygit2.Repository) -> str:
    """`status.showUntrackedFiles` as pygit2 spells it (default `normal`)."""
    try:
        value = repo.config["status.showUntrackedFiles"]
    except (KeyError, pygit2.GitError):
        return "normal"
    return _UNTRACKED_MODES.get(str(value).strip().lower(), "normal")


def _staged_renames(repo: pygit2.Repository) -> int:
    """Pairs of index entries (deleted + added) that git reports as one staged rename."""
    if repo.head_is_unborn:
        return 0
    diff = repo.index.diff_to_tree(repo.head.peel(pygit2.Tree))
    diff.find_similar(DiffFind.FIND_RENAMES)
    return sum(1 for delta in diff.deltas if delta.status == DeltaStatus.RENAMED)


def dirty_count(repo: pygit2.Repository) -> int:
    """Lines `git status --porcelain` would print: staged, unstaged, unmerged, untracked."""
    entries = repo.status(untracked_files=untracked_mode(repo), ignored=False)
    count = 0
    deleted = added = False
    for flags in entries.values():
        if flags & FileStatus.IGNORED:
            continue
        staged = flags & _INDEX_CHANGES
        # git prints a path staged for deletion and present on disk twice: `D  p` and `?? p`.
        count += 2 if staged and flags & FileStatus.WT_NEW else 1
        deleted = deleted or bool(flags & FileStatus.INDEX_DELETED)
        added = added or bool(flags & FileStatus.INDEX_NEW)
    if deleted and added:
        count -= _staged_renames(repo)
    return count
