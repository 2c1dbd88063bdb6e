"""Working-tree status counted the way `git status --porcelain` (v1) prints it."""

from __future__ import annotations

import pygit2
from pygit2.enums import DeltaStatus, DiffFind, FileStatus

from hostd.git.statuswatch import StatusWatch

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


def _detects_renames(repo: pygit2.Repository) -> bool:
    """`status.renames`, else `diff.renames` (default true; `copies` counts as true)."""
    for key in ("status.renames", "diff.renames"):
        if key in repo.config:
            try:
                return repo.config.get_bool(key)
            except (pygit2.GitError, ValueError):
                return True
    return True


def _staged_renames(repo: pygit2.Repository) -> int:
    """Pairs of index entries (deleted + added) that git reports as one staged rename."""
    if repo.head_is_unborn or not _detects_renames(repo):
        return 0
    diff = repo.index.diff_to_tree(repo.head.peel(pygit2.Tree))
    diff.find_similar(DiffFind.FIND_RENAMES)
    return sum(1 for delta in diff.deltas if delta.status == DeltaStatus.RENAMED)


_watch: StatusWatch | None = None


def keep_counts(enabled: bool) -> None:
    """Whether this process keeps counts between calls until inotify reports a change."""
    global _watch
    if _watch is not None:
        _watch.close()
    _watch = StatusWatch() if enabled else None


def dirty_count(repo: pygit2.Repository) -> int:
    """Lines `git status --porcelain` would print: staged, unstaged, unmerged, untracked."""
    if _watch is None:
        return count_dirty(repo)
    return _watch.count(repo, count_dirty)


def count_dirty(repo: pygit2.Repository) -> int:
    """`dirty_count` computed from the working tree, never from memory."""
    mode = untracked_mode(repo)
    entries = repo.status(untracked_files=mode, ignored=False)
    count = 0
    deleted = added = False
    for path, flags in entries.items():
        if flags & FileStatus.IGNORED:
            continue
        # git hides an untracked directory that replaced a tracked file of the same name.
        hidden = mode == "normal" and flags == FileStatus.WT_NEW and path.endswith("/")
        if hidden and path[:-1] in repo.index:
            continue
        staged = flags & _INDEX_CHANGES
        # git prints a path staged for deletion and present on disk twice: `D  p` and `?? p`.
        count += 2 if staged and flags & FileStatus.WT_NEW else 1
        deleted = deleted or bool(flags & FileStatus.INDEX_DELETED)
        added = added or bool(flags & FileStatus.INDEX_NEW)
    if deleted and added:
        count -= _staged_renames(repo)
    return count
