"""Working-tree status kept in memory until inotify reports a change that could alter it.

A status reads every tracked file's metadata; a daemon asked about the same worktrees again and
again can skip that when nothing changed. Each worktree gets inotify watches on its directories
(ignored directories without tracked files excepted), on its git directory, and on the config and
`info/` of the common git directory. The kernel queues an event before the write that caused it
returns, so draining the queue at the start of each query sees every change made before the
query. The key of a cached count also holds HEAD's commit, the configuration values (from
whichever file, included ones too) and the identity of the global ignore files. When the only
events since the last count are on files (no folder created, moved or deleted, nothing in a git
directory), the caller's `update` may recount just those files.

Not cached (counted afresh every time): worktrees with submodules or other repositories nested
in a watched folder (a commit inside one can change the superproject's status without touching
a watched file), worktrees on filesystems whose changes inotify may not see (network
filesystems), worktrees with more than `max_dirs` directories, worktrees whose watches would
pass `max_watches` (this process's share of hostd's inotify budget), and any worktree once the
kernel refuses a watch. Writes through shared memory maps and through hard links from outside the
worktree raise no event; such edits are seen once any other change in the worktree, the index
or HEAD happens.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

import psutil
import pygit2
from inotify_simple import INotify
from inotify_simple import flags as F

from hostd.git.configkey import Stamp, Values, config_values, last_value, source_stamps, stamp
from hostd.git.paths import Identity, identity, real_path
from hostd.git.refs import head_tree

log = logging.getLogger(__name__)

LOCAL_FILESYSTEMS = frozenset(
    [
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "tmpfs",
        "overlay",
        "zfs",
        "f2fs",
        "bcachefs",
        "reiserfs",
        "jfs",
        "nilfs2",
        "ramfs",
    ]
)
DEFAULT_MAX_DIRS = 20_000
DEFAULT_MAX_WORKTREES = 1024
DEFAULT_MAX_GUESTS = 16
MAX_REPOSITORIES = 256
MAX_USER_WATCHES = "/proc/sys/fs/inotify/max_user_watches"

_DIR_MASK = (
    F.MODIFY
    | F.ATTRIB
    | F.CREATE
    | F.DELETE
    | F.MOVED_FROM
    | F.MOVED_TO
    | F.DELETE_SELF
    | F.MOVE_SELF
    | F.DONT_FOLLOW
    | F.ONLYDIR
    | F.EXCL_UNLINK
)
_RESCAN = F.MOVE_SELF | F.UNMOUNT
_GONE = F.DELETE_SELF | F.IGNORED
_MOVES = F.MOVED_FROM | F.MOVED_TO
# Files in git directories whose change can change which files are ignored; in the common git
# directory, the only names that matter to a linked worktree's status.
_RULE_FILES = frozenset({"config", "config.worktree", "info"})
# Files in a common git directory that change no ref (the main worktree's index is its own).
_NOT_REFS = frozenset({"index", "COMMIT_EDITMSG", "description", "gc.pid", "gc.log", "logs"})
# Files in a linked worktree's administrative folder that `git worktree list` reads.
_LISTED = frozenset({"HEAD", "gitdir", "locked"})
_last_generation = 0


def _next_generation() -> int:
    global _last_generation
    _last_generation += 1
    return _last_generation


def last_generation() -> int:
    """The newest generation given out in this process: unchanged while nothing any status
    watch of the process knows about changed (no event read, no watch added or removed)."""
    return _last_generation


MAX_CHANGED_FILES = 256


class Tally(Protocol):
    @property
    def count(self) -> int: ...


T = TypeVar("T", bound=Tally)
Full = Callable[[pygit2.Repository], T]
Update = Callable[[pygit2.Repository, T, set[str]], bool]


class _Uncacheable(Exception):
    pass


class Token(NamedTuple):
    """What an answer about a worktree was computed under: equal tokens, equal answers."""

    tree: int
    rules: int
    refs: int
    worktrees: int
    key: tuple[object, ...]


@dataclass
class _Tree:
    """One worktree: its watches and, when fresh, its cached count."""

    workdir: str
    git_dirs: tuple[str, ...]
    # Which folders the workdir and git directories are (a folder moved away and another put
    # in its place raises no event on the watches of the first).
    folders: tuple[Identity, ...] = ()
    cacheable: bool = True
    # A new number whenever something in the worktree or its git directory may have changed;
    # `rules` only when what may have changed is more than the content of some files (a
    # folder, an attributes or ignore file, the index, HEAD, the configuration).
    generation: int = field(default_factory=_next_generation)
    rules: int = field(default_factory=_next_generation)
    tally: Tally | None = None
    key: tuple[object, ...] | None = None
    # Files (relative) with events since the tally; None when only a whole recount will do.
    changed: set[str] | None = None
    rescan: bool = True
    recheck_pruned: bool = False
    new_dirs: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    wds: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.workdir

    @property
    def stale(self) -> bool:
        """Something happened since the tally was made."""
        return self.changed is None or bool(self.changed)


@dataclass
class _Common:
    """A common git directory: watches on its refs (and the folder itself, for packed-refs
    and HEAD) and on its worktrees' administrative folders, with a generation for each."""

    path: str
    folder: Identity = None
    refs: int = field(default_factory=_next_generation)
    worktrees: int = field(default_factory=_next_generation)
    cacheable: bool = True
    scanned: bool = False
    new_dirs: list[tuple[str, str]] = field(default_factory=list)
    wds: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return "\0" + self.path

    @property
    def refs_dir(self) -> str:
        return os.path.join(self.path, "refs")


def _descends(common: _Common, path: str, role: str) -> bool:
    """Are the folders in `path` watched too: every folder under refs/, and the worktrees'
    administrative folders (not what is in them)."""
    if role == "refs":
        return path != common.path
    return path == os.path.join(common.path, "worktrees")


@dataclass
class _Watch:
    path: str
    # Workdir of each worktree using the watch -> what the directory is to it: "tree",
    # "gitdir", "common" or "info" (a main worktree's git dir is a linked one's common dir);
    # for a common git directory's own watches (keyed by its `_Common.name`): "refs" (the
    # folder itself and the folders under refs/) or "worktrees" (worktrees/ and those in it).
    roles: dict[str, str] = field(default_factory=dict)


class StatusWatch:
    """Cached dirty counts per worktree, invalidated by inotify (one process, one thread)."""

    def __init__(
        self,
        max_dirs: int = DEFAULT_MAX_DIRS,
        max_worktrees: int = DEFAULT_MAX_WORKTREES,
        max_watches: int | None = None,
        events_fd: int | None = None,
        max_guests: int = DEFAULT_MAX_GUESTS,
    ) -> None:
        """`events_fd`: an inotify descriptor to use (and own), which another process may
        poll to learn whether events are waiting. `max_guests` (at least one): the worktrees
        asked about only in guest tasks (`as_guest`) that stay watched, the most recent ones."""
        self.max_dirs = max_dirs
        self.max_worktrees = max_worktrees
        self.max_watches = max_watches
        self.max_guests = max(max_guests, 1)
        self.guest = False
        # Worktrees only guest tasks asked about, least recent first.
        self._guests: OrderedDict[str, None] = OrderedDict()
        self._inotify: INotify | None = None
        self.shares_events = events_fd is not None
        if events_fd is not None:
            self._inotify = INotify(nonblocking=True)
            os.dup2(events_fd, self._inotify.fileno(), inheritable=False)
            os.close(events_fd)
        self._trees: OrderedDict[str, _Tree] = OrderedDict()
        self._commons: OrderedDict[str, _Common] = OrderedDict()
        self._watches: dict[int, _Watch] = {}
        # Watches whose every role ignores names ending in `.lock`, numbered by version.
        self._lock_blind: set[int] = set()
        self._lock_blind_version = 0
        self._lock_blind_frozen: tuple[int, frozenset[int]] = (0, frozenset())
        self.hits = 0

    def token(self, repo: pygit2.Repository, worktrees: bool = False) -> Token | None:
        """What answers about this worktree depend on, as of now; None when changes to it
        cannot be seen (then nothing about it may be answered from memory). Watches are in
        place when it returns, so any later change gives a different token. `worktrees`:
        the answer also lists the repository's worktrees."""
        tree = self._tree(repo)
        if not tree.cacheable:
            return None
        common = self._common(tree.git_dirs[1])
        self._drain()
        key = _key(repo, tree.git_dirs[1])
        self._note_key(tree, key)
        try:
            self._watch_common(common)
            self._update_watches(tree, repo)
        except _Uncacheable as exc:
            self._give_up(tree, str(exc))
            return None
        if not tree.cacheable or not common.cacheable:
            return None
        listed = common.worktrees if worktrees else 0
        return Token(tree.generation, tree.rules, common.refs, listed, key)

    def count(self, repo: pygit2.Repository, full: Full[T], update: Update[T]) -> int:
        """The count of `full(repo)`, kept from the last call when nothing changed since, or
        brought up to date by `update(repo, tally, files)` when only some files changed."""
        tree = self._tree(repo)
        if not tree.cacheable:
            return full(repo).count
        self._drain()
        self._note_key(tree, _key(repo, tree.git_dirs[1]))
        if tree.tally is not None and not tree.stale:
            self.hits += 1
            return tree.tally.count
        try:
            self._update_watches(tree, repo)
        except _Uncacheable as exc:
            self._give_up(tree, str(exc))
            return full(repo).count
        changed, tree.changed = tree.changed, set()
        if tree.tally is None or changed is None or not update(repo, tree.tally, changed):
            tree.tally = full(repo)
        return tree.tally.count

    @staticmethod
    def _note_key(tree: _Tree, key: tuple[object, ...]) -> None:
        """Take in HEAD's commit, the configuration and the global rule files as they are."""
        if tree.key is not None and tree.key != key:
            # Which folders can matter depends on HEAD's tree and on the ignore rules.
            tree.recheck_pruned = tree.recheck_pruned or key[0] != tree.key[0]
            tree.rescan = tree.rescan or key[1:] != tree.key[1:]
            tree.changed = None
            tree.generation = tree.rules = _next_generation()
        tree.key = key

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
        self._inotify = None
        self.shares_events = False
        _next_generation()
        self._trees.clear()
        self._guests.clear()
        self._commons.clear()
        self._watches.clear()

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    # ------------------------------------------------------------ worktrees

    def _tree(self, repo: pygit2.Repository) -> _Tree:
        workdir = real_path(repo.workdir)
        git_dirs = (real_path(repo.path), real_path(_common_dir(repo)))
        folders = tuple(identity(path) for path in (workdir, *git_dirs))
        tree = self._trees.pop(workdir, None)
        if tree is not None and (tree.git_dirs, tree.folders) != (git_dirs, folders):
            self._unwatch(tree)  # another repository there now
            tree = None
        if tree is None:
            tree = _Tree(workdir, git_dirs, folders)
            if self.guest:
                self._guests[workdir] = None
            reason = _why_uncacheable(workdir, tree.git_dirs)
            if reason is not None:
                tree.cacheable = False
                log.info("status of %s is not cached: %s", workdir, reason)
        self._trees[workdir] = tree
        self._note_guest(workdir)
        while len(self._trees) > self.max_worktrees:
            _, oldest = self._trees.popitem(last=False)
            self._guests.pop(oldest.workdir, None)
            self._unwatch(oldest)
        return tree

    @contextlib.contextmanager
    def as_guest(self) -> Iterator[None]:
        """Within: this process runs a task it took from another, busy worker. Worktrees first
        asked about then are guests, and only the most recent `max_guests` of them stay
        watched, so each worktree is held once, by the worker it belongs to."""
        self.guest = True
        try:
            yield
        finally:
            self.guest = False

    def _note_guest(self, workdir: str) -> None:
        """An own task makes a worktree own; past `max_guests`, the least recent guest
        worktrees are unwatched and forgotten."""
        if not self.guest:
            self._guests.pop(workdir, None)
            return
        if workdir not in self._guests:
            return
        self._guests.move_to_end(workdir)
        while len(self._guests) > self.max_guests:
            oldest, _ = self._guests.popitem(last=False)
            self._unwatch(self._trees.pop(oldest))

    def _common(self, path: str) -> _Common:
        folder = identity(path)
        common = self._commons.pop(path, None)
        if common is not None and common.folder != folder:
            self._unwatch(common)
            common = None
        common = common or _Common(path, folder)
        self._commons[path] = common
        while len(self._commons) > MAX_REPOSITORIES:
            _, oldest = self._commons.popitem(last=False)
            self._unwatch(oldest)
        return common

    def _watch_common(self, common: _Common) -> None:
        if not common.cacheable:
            return
        try:
            if not common.scanned:
                self._unwatch(common)
                common.new_dirs[:] = [
                    (common.path, "refs"),
                    (common.refs_dir, "refs"),
                    (os.path.join(common.path, "worktrees"), "worktrees"),
                ]
                common.scanned = True
            while common.new_dirs:
                path, role = common.new_dirs.pop()
                if not os.path.isdir(path) or os.path.islink(path):
                    continue
                self._add(common, path, role)
                if not _descends(common, path, role):
                    continue
                with contextlib.suppress(OSError):
                    for entry in os.scandir(path):
                        if entry.is_dir(follow_symlinks=False):
                            common.new_dirs.append((entry.path, role))
        except _Uncacheable as exc:
            log.warning("answers about %s are not kept: %s", common.path, exc)
            self._unwatch(common)
            common.cacheable = False

    def _give_up(self, tree: _Tree, reason: str) -> None:
        log.warning("status of %s is no longer cached: %s", tree.workdir, reason)
        self._unwatch(tree)
        tree.cacheable = False
        tree.tally = None

    def _update_watches(self, tree: _Tree, repo: pygit2.Repository) -> None:
        if tree.rescan:
            self._unwatch(tree)
            tree.pruned.clear()
            self._watch_git_dirs(tree)
            self._watch_dirs(tree, tree.workdir, repo)
            tree.rescan = False
        else:
            if tree.recheck_pruned:
                pruned, tree.pruned = tree.pruned, []
                tree.new_dirs.extend(pruned)
            for path in tree.new_dirs:
                if os.path.isdir(path) and not os.path.islink(path):
                    self._watch_dirs(tree, path, repo)
        tree.new_dirs.clear()
        tree.recheck_pruned = False

    def _watch_git_dirs(self, tree: _Tree) -> None:
        git_dir, common = tree.git_dirs
        self._add(tree, git_dir, "gitdir")
        if common != git_dir:
            self._add(tree, common, "common")
        info = os.path.join(common, "info")
        if os.path.isdir(info):
            self._add(tree, info, "info")

    def _watch_dirs(self, tree: _Tree, top: str, repo: pygit2.Repository) -> None:
        """Watch `top` and the directories below it that can hold status-relevant files."""
        head = head_tree(repo)
        pending = [top]
        if top != tree.workdir and _ignored_and_untracked(repo, head, top, tree.workdir):
            tree.pruned.append(top)
            pending.clear()
        while pending:
            path = pending.pop()
            self._add(tree, path, "tree")
            if len(tree.wds) > self.max_dirs:
                raise _Uncacheable(f"more than {self.max_dirs} directories")
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                if entry.name == ".git" and path != tree.workdir:
                    # A commit inside a nested repository (a submodule, or one added without
                    # .gitmodules) can change the status without touching a watched file.
                    raise _Uncacheable(f"it holds a nested repository at {path}")
                if entry.name == ".git" or not entry.is_dir(follow_symlinks=False):
                    continue
                if _ignored_and_untracked(repo, head, entry.path, tree.workdir):
                    tree.pruned.append(entry.path)
                else:
                    pending.append(entry.path)

    def _add(self, owner: _Tree | _Common, path: str, role: str) -> None:
        if self._inotify is None:
            self._inotify = INotify(nonblocking=True)
        try:
            wd = self._inotify.add_watch(path, _DIR_MASK)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _Uncacheable(f"inotify refused a watch on {path}: {exc.strerror}") from exc
        watch = self._watches.get(wd)
        if watch is None and not self._make_room(owner):
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)
            raise _Uncacheable(f"hostd's share of inotify watches ({self.max_watches}) is used up")
        if watch is None:
            watch = self._watches[wd] = _Watch(path)
        watch.path = path
        watch.roles[owner.name] = role
        owner.wds.add(wd)
        self._classify(wd)

    def _make_room(self, owner: _Tree | _Common) -> bool:
        """Room for one more watch, made by unwatching the least recently asked worktrees."""
        budget = self.max_watches
        if budget is None:
            return True
        while len(self._watches) >= budget:
            oldest = next((t for t in self._trees.values() if t.wds and t is not owner), None)
            if oldest is None:
                return False
            self._unwatch(oldest)
            oldest.tally = None
        return True

    def _unwatch(self, owner: _Tree | _Common) -> None:
        for wd in owner.wds:
            watch = self._watches.get(wd)
            if watch is None:
                continue
            watch.roles.pop(owner.name, None)
            if not watch.roles:
                del self._watches[wd]
                if self._inotify is not None:
                    with contextlib.suppress(OSError):  # gone with its directory
                        self._inotify.rm_watch(wd)
            self._classify(wd)
        owner.wds.clear()
        if isinstance(owner, _Tree):
            owner.rescan = True
            owner.generation = owner.rules = _next_generation()
        else:
            owner.scanned = False
            owner.refs = owner.worktrees = _next_generation()

    def _classify(self, wd: int) -> None:
        watch = self._watches.get(wd)
        blind = watch is not None and "tree" not in watch.roles.values()
        if blind != (wd in self._lock_blind):
            if blind:
                self._lock_blind.add(wd)
            else:
                self._lock_blind.discard(wd)
            self._lock_blind_version += 1

    @staticmethod
    def generation() -> int:
        return last_generation()

    def lock_blind(self) -> tuple[int, frozenset[int]]:
        """The watches (and a version number of the set) on which an event for a name ending
        in `.lock` changes nothing: git takes such locks even to change nothing (`git status`
        on the index), so another process may drop those events unseen."""
        if self._lock_blind_frozen[0] != self._lock_blind_version:
            self._lock_blind_frozen = (self._lock_blind_version, frozenset(self._lock_blind))
        return self._lock_blind_frozen

    # ------------------------------------------------------------ events

    def feed(self, events: list[tuple[int, int, str]]) -> None:
        """Take in events `(wd, mask, name)` that another process read from this watch's
        inotify descriptor, before any read here."""
        for wd, mask, name in events:
            self._apply(wd, mask, name)

    def _drain(self) -> None:
        if self._inotify is None:
            return
        while events := self._inotify.read(timeout=0):
            for event in events:
                self._apply(event.wd, event.mask, event.name)

    def _apply(self, wd: int, mask: int, name: str) -> None:
        if mask & F.Q_OVERFLOW:
            for tree in self._trees.values():
                tree.rescan, tree.changed = True, None
                tree.generation = tree.rules = _next_generation()
            for common in self._commons.values():
                common.scanned = False
                common.refs = common.worktrees = _next_generation()
            return
        watch = self._watches.get(wd)
        if watch is None:
            return
        if mask & F.IGNORED:
            del self._watches[wd]
            self._classify(wd)
        for owner, role in watch.roles.items():
            tree = self._trees.get(owner)
            if tree is not None:
                self._invalidate(tree, role, watch.path, mask, name)
            common = self._commons.get(owner[1:]) if owner.startswith("\0") else None
            if common is not None:
                self._invalidate_common(common, role, watch.path, mask, name)

    @staticmethod
    def _invalidate_common(common: _Common, role: str, path: str, mask: int, name: str) -> None:
        if name.endswith(".lock"):
            return
        admin_root = os.path.join(common.path, "worktrees")
        if path == common.path:
            if name == "worktrees":
                role = "worktrees"
            elif name in _NOT_REFS:
                return
        elif role == "worktrees" and path != admin_root and name and name not in _LISTED:
            return
        if role == "refs":
            common.refs = _next_generation()
        else:
            common.worktrees = _next_generation()
        if mask & F.ISDIR and mask & (F.CREATE | F.MOVED_TO):
            child = os.path.join(path, name)
            if _descends(common, path, role) or child in (admin_root, common.refs_dir):
                common.new_dirs.append((child, role))
        if mask & _RESCAN:
            common.scanned = False

    @staticmethod
    def _invalidate(tree: _Tree, role: str, path: str, mask: int, name: str) -> None:
        if role == "common" and name not in _RULE_FILES:
            return
        if role != "tree" and name.endswith(".lock"):
            return  # git takes locks even to change nothing; a change lands by renaming one
        tree.generation = _next_generation()
        file_event = (
            role == "tree"
            and name not in ("", ".gitignore", ".git")
            and not mask & (F.ISDIR | _RESCAN | _GONE)
        )
        if not file_event or name == ".gitattributes":
            tree.rules = tree.generation
        if not file_event or tree.changed is None or len(tree.changed) >= MAX_CHANGED_FILES:
            tree.changed = None
        else:
            tree.changed.add(os.path.relpath(os.path.join(path, name), tree.workdir))
        tree.rescan = tree.rescan or (
            role == "info"
            or (role != "tree" and name in _RULE_FILES)
            or bool(mask & _RESCAN)
            or (bool(mask & F.ISDIR) and bool(mask & _MOVES))
            or (bool(mask & _GONE) and (role == "gitdir" or path == tree.workdir))
        )
        tree.recheck_pruned = tree.recheck_pruned or role == "gitdir"
        if role == "tree" and (name == ".gitignore" or (name == ".git" and path != tree.workdir)):
            tree.new_dirs.append(path)
        elif mask & F.ISDIR and mask & F.CREATE:
            tree.new_dirs.append(os.path.join(path, name))


def watch_budget(configured: int) -> int:
    """hostd's inotify watches in all: `configured`, or when 0 a quarter of the user's limit."""
    if configured > 0:
        return configured
    try:
        with open(MAX_USER_WATCHES, encoding="ascii") as f:
            return max(int(f.read()) // 4, 0)
    except (OSError, ValueError):
        return 8192 // 4


def _common_dir(repo: pygit2.Repository) -> str:
    git_dir = repo.path
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as f:
            common = f.read().strip()
    except OSError:
        return git_dir
    return os.path.normpath(os.path.join(git_dir, common))


def _ignored_and_untracked(
    repo: pygit2.Repository, tree: pygit2.Tree | None, path: str, workdir: str
) -> bool:
    """An ignored directory that HEAD tracks nothing under: no change inside it shows."""
    rel = os.path.relpath(path, workdir)
    try:
        if not repo.path_is_ignored(rel + "/"):
            return False
    except (pygit2.GitError, ValueError):
        return False
    if tree is None:
        return True
    try:
        tree[rel]
    except (KeyError, ValueError):
        return True
    return False


def _key(repo: pygit2.Repository, common: str) -> tuple[object, ...]:
    """HEAD's commit, the configuration (whichever file, included ones too, set it) and the
    identity of the global ignore and attributes files."""
    try:
        head: object = repo.head.target
    except (pygit2.GitError, KeyError, ValueError):
        head = None
    config = config_values(repo, common)
    return (head, config, *(stamp(path) for path in _global_rule_files(config)))


def unwatched_stamps(repo: pygit2.Repository, token: Token) -> tuple[tuple[str, Stamp], ...] | None:
    """The files outside every watch that an answer under `token` depends on (the
    configuration files and the global ignore and attributes files), each with its identity
    as the token saw it; call it right after `token`. None when unknown."""
    config = source_stamps(repo)
    if config is None:
        return None
    values = token.key[1]
    rule_files = _global_rule_files(values if isinstance(values, tuple) else None)
    stamps: tuple[Stamp, ...] = token.key[2:]  # type: ignore[assignment]
    return config + tuple(zip(rule_files, stamps, strict=True))


def _global_rule_files(config: Values | None) -> list[str]:
    """Global ignore and attributes files: both decide what a status reports."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    files = [os.path.join(xdg, "git", "ignore"), os.path.join(xdg, "git", "attributes")]
    for key in ("core.excludesfile", "core.attributesfile"):
        value = last_value(config, key)
        if value:
            files.append(os.path.expanduser(value))
    return files


def _why_uncacheable(workdir: str, git_dirs: tuple[str, ...]) -> str | None:
    if os.path.lexists(os.path.join(workdir, ".gitmodules")):
        return "it has submodules"
    for path in (workdir, *git_dirs):
        fstype = filesystem_type(path)
        if fstype not in LOCAL_FILESYSTEMS:
            return f"{path} is on a {fstype or 'unknown'} filesystem"
    return None


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem mounted where `path` lives (`ext4`, `nfs4`, ...)."""
    best: tuple[int, str | None] = (-1, None)
    try:
        partitions = psutil.disk_partitions(all=True)
    except OSError:
        return None
    for part in partitions:
        mount = part.mountpoint
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > best[0]:
            best = (len(mount), part.fstype)
    return best[1]
