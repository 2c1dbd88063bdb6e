"""Working-tree status counted the way `git status --porcelain` (v1) prints it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pygit2
from pygit2.enums import DeltaStatus, DiffFind, FileStatus

from hostd.git.cleanproof import proven_clean
from hostd.git.refs import head_tree
from hostd.git.statuswatch import StatusWatch, Token

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


@dataclass
class Tally:
    """The lines `git status --porcelain` prints, path by path; a staged rename's two paths
    make one line (`renames`). `staged_deletions` are paths deleted from the index."""

    mode: str
    lines: dict[str, int]
    renames: int
    staged_deletions: frozenset[str]

    @property
    def count(self) -> int:
        return sum(self.lines.values()) - self.renames


def tally(repo: pygit2.Repository) -> Tally:
    """The whole status, counted from the working tree."""
    mode = untracked_mode(repo)
    lines: dict[str, int] = {}
    deleted: set[str] = set()
    added = False
    for path, flags in repo.status(untracked_files=mode, ignored=False).items():
        if flags & FileStatus.IGNORED:
            continue
        # git hides an untracked directory that replaced a tracked file of the same name.
        hidden = mode == "normal" and flags == FileStatus.WT_NEW and path.endswith("/")
        if hidden and path[:-1] in repo.index:
            continue
        lines[path] = _lines(flags)
        if flags & FileStatus.INDEX_DELETED:
            deleted.add(path)
        added = added or bool(flags & FileStatus.INDEX_NEW)
    renames = _staged_renames(repo) if deleted and added else 0
    return Tally(mode, lines, renames, frozenset(deleted))


def _lines(flags: int) -> int:
    if flags in (FileStatus.CURRENT, FileStatus.IGNORED):
        return 0
    # git prints a path staged for deletion and present on disk twice: `D  p` and `?? p`.
    return 2 if flags & _INDEX_CHANGES and flags & FileStatus.WT_NEW else 1


def retally(repo: pygit2.Repository, tally: Tally, paths: set[str]) -> bool:
    """Update `tally` for files changed at `paths` (the index, HEAD and configuration as they
    were); False, leaving it part-updated, when some path is not listed under its own name."""
    if untracked_mode(repo) != tally.mode:
        return False
    head = head_tree(repo)
    if not all(_listed_as_itself(repo, head, tally, path) for path in paths):
        return False
    for path in paths:
        try:
            flags = repo.status_file(path)
        except KeyError:  # neither in the index nor on disk
            flags = 0
        if tally.mode == "no":
            flags &= ~FileStatus.WT_NEW
        if _lines(flags):
            tally.lines[path] = _lines(flags)
        else:
            tally.lines.pop(path, None)
    return True


def _listed_as_itself(
    repo: pygit2.Repository, head: pygit2.Tree | None, tally: Tally, path: str
) -> bool:
    """Is `path` a line of its own, not part of an untracked folder's line? True for files in
    the index and, unless untracked folders are shown whole, for files in folders of HEAD's tree
    from which the index deleted nothing."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if path in repo.index or tally.mode == "all":
        return True
    folder = path.rpartition("/")[0]
    if not folder:
        return True
    if head is None or any(p.startswith(folder + "/") for p in tally.staged_deletions):
        return False
    try:
        return isinstance(head[folder], pygit2.Tree)
    except KeyError:
        return False


_watch: StatusWatch | None = None


def keep_counts(enabled: bool, events_fd: int | None = None) -> None:
    """Whether this process keeps counts between calls until inotify reports a change;
    `events_fd`: the inotify descriptor to use (see `StatusWatch`)."""
    global _watch
    if _watch is not None:
        _watch.close()
    _watch = StatusWatch(events_fd=events_fd) if enabled else None


def shares_events() -> bool:
    """Does this process's status watch use an inotify descriptor another process reads?"""
    return _watch is not None and _watch.shares_events


def kept_watch() -> StatusWatch | None:
    """This process's status watch, if it keeps counts."""
    return _watch


@contextlib.contextmanager
def as_guest() -> Iterator[None]:
    """Within: the worktrees asked about are another worker's, whose task this process took
    while that one was busy. Their counts stay only for the most recent few such worktrees
    and their answers are not kept, so what is kept about a worktree is held once."""
    with contextlib.nullcontext() if _watch is None else _watch.as_guest():
        yield


def guest() -> bool:
    """Is the current task a guest (see `as_guest`)?"""
    return _watch is not None and _watch.guest


def limit_watches(budget: int | None) -> None:
    """The inotify watches this process may hold (None: only the kernel's limit)."""
    if _watch is not None:
        _watch.max_watches = budget


def dirty_count(repo: pygit2.Repository) -> int:
    """Lines `git status --porcelain` would print: staged, unstaged, unmerged, untracked.

    Where no counts are kept (the commands' workers, which mostly judge worktrees that are
    clean, the CLI, `keep_status: false`) a large worktree is first proven clean on threads.
    The status watch's counts are not: a dirty worktree would pay for the proof and the status.
    """
    if _watch is None:
        if proven_clean(repo, untracked=untracked_mode(repo) != "no"):
            return 0
        return tally(repo).count
    return _watch.count(repo, tally, retally)


def answer_token(repo: pygit2.Repository, worktrees: bool = False) -> Token | None:
    """What answers about this worktree depend on (see `StatusWatch.token`); None when this
    process keeps no counts or cannot see the worktree's changes."""
    return None if _watch is None else _watch.token(repo, worktrees)
