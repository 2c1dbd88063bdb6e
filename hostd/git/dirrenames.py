"""merge-ort's directory rename detection, which libgit2's merge lacks.

A directory one side removed is taken as renamed to where the most of its files went (a tie is
a "directory rename split"); a path the other side adds (or renames) into it would follow it.
With git's default `merge.directoryRenames=conflict` every such move stops the merge with
"CONFLICT (file location)", listed at the moved path; a split, or a move onto a path already
taken, stops it at the path as added. `merge.directoryRenames=false` (or `merge.renames=false`)
turns the detection off; `true` makes git move the file without stopping, which hostd does not
do: it reports those moves as conflicts too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

import pygit2
from pygit2.enums import DeltaStatus

from hostd.git.blobs import BIG_FILE_THRESHOLD, big_file_limit
from hostd.git.changes import Change, list_changes
from hostd.git.renames import RENAME_LIMIT, pair_renames


def directory_rename_conflicts(
    repo: pygit2.Repository, ancestor: pygit2.Oid, ours: pygit2.Oid, theirs: pygit2.Oid
) -> dict[str, str]:
    """The paths merge-ort leaves conflicted because of a directory rename: the path a side
    gave the file (where libgit2 keeps it) -> the path git lists."""
    if not _detection_on(repo):
        return {}
    sides = [_Side(repo, ancestor, ours), _Side(repo, ancestor, theirs)]
    renamed = [sides[0].directory_renames(sides[1]), sides[1].directory_renames(sides[0])]
    both = renamed[0][0].keys() & renamed[1][0].keys()
    for moves, _ in renamed:
        for directory in both:
            del moves[directory]
    conflicts: dict[bytes, bytes] = {}
    for me, other in ((0, 1), (1, 0)):
        moves, splits = renamed[me]
        conflicts.update(_moved_paths(sides[me], sides[other], moves, splits, renamed[other][0]))
    return {_text(source): _text(target) for source, target in conflicts.items()}


def tree_has(tree: pygit2.Tree, path: bytes) -> bool:
    """The tree has a file or directory at `path`."""
    try:
        tree[path.decode("utf-8", "surrogateescape")]
    except (KeyError, ValueError):
        return False
    return True


def _text(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _detection_on(repo: pygit2.Repository) -> bool:
    config = repo.config
    for key in ("merge.renames", "merge.directoryRenames"):
        try:
            if key in config and not config.get_bool(key):
                return False
        except (pygit2.GitError, ValueError):
            continue  # "conflict" is not a boolean: git's default
    return True


class _Side:
    """One side's change against the merge base."""

    def __init__(self, repo: pygit2.Repository, ancestor: pygit2.Oid, tip: pygit2.Oid) -> None:
        self.repo, self.tree = repo, repo[tip].peel(pygit2.Tree)
        self.ancestor = repo[ancestor].peel(pygit2.Tree)
        self.changes = list_changes(repo, repo.diff(self.ancestor, self.tree), None)
        self._paired: list[Change] | None = None

    def has(self, path: bytes) -> bool:
        return tree_has(self.tree, path)

    def removed_directories(self) -> set[bytes]:
        """Directories of the merge base this side no longer has."""
        gone: set[bytes] = set()
        for change in self.changes:
            if change.status == DeltaStatus.DELETED and change.old is not None:
                gone.update(d for d in _directories(change.old.path) if d not in gone)
        return {d for d in gone if not self.has(d)}

    def arrivals(self) -> list[bytes]:
        """Paths this side adds, plain or as a rename's destination."""
        added = [c.new.path for c in self.changes if c.status == DeltaStatus.ADDED and c.new]
        return sorted(added)

    def renames(self) -> list[tuple[bytes, bytes]]:
        if self._paired is None:
            limit = big_file_limit(self.repo, BIG_FILE_THRESHOLD)
            self._paired = pair_renames(self.changes, RENAME_LIMIT, limit)
        return [
            (c.old.path, c.new.path)
            for c in self._paired
            if c.status == DeltaStatus.RENAMED and c.old is not None and c.new is not None
        ]

    def directory_renames(self, other: _Side) -> tuple[dict[bytes, bytes], set[bytes]]:
        """(old directory -> new directory, split directories) of the removed directories the
        other side adds files into, and of those below them (as git, only files added right in
        a directory make it a candidate; a rename counts for its parents only in those)."""
        removed = self.removed_directories()
        direct = {p.rpartition(b"/")[0] for p in other.arrivals()} & removed
        below = {d for d in removed if any(_under(d, top) for top in direct)}
        if not direct:
            return {}, set()
        counts: defaultdict[bytes, Counter[bytes]] = defaultdict(Counter)
        for old, new in self.renames():
            for step, (old_dir, new_dir) in enumerate(_directory_pairs(old, new)):
                if old_dir not in direct and old_dir not in below:
                    break
                if old_dir in direct or step == 0:
                    counts[old_dir][new_dir] += 1
        moves: dict[bytes, bytes] = {}
        splits: set[bytes] = set()
        for old_dir, targets in counts.items():
            ranked = targets.most_common(2)
            if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
                splits.add(old_dir)
            else:
                moves[old_dir] = ranked[0][0]
        return moves, splits


def _moved_paths(
    me: _Side,
    other: _Side,
    moves: dict[bytes, bytes],
    splits: set[bytes],
    excluded: dict[bytes, bytes],
) -> dict[bytes, bytes]:
    """The other side's arrivals that my directory renames move (or would, but cannot): where
    the other side put them -> where git lists them."""
    if not moves and not splits:
        return {}
    arrivals = other.arrivals()
    targets: defaultdict[bytes, list[bytes]] = defaultdict(list)
    conflicts: dict[bytes, bytes] = {}
    for path in arrivals:
        directory = next(
            (d for d in _directories(path, deepest=True) if d in moves or d in splits), None
        )
        if directory is None:
            continue
        if directory in splits:
            conflicts[path] = path
            continue
        new_dir = moves[directory]
        if new_dir in excluded:
            continue
        rest = path[len(directory) + 1 :]
        targets[new_dir + b"/" + rest if new_dir else rest].append(path)
    for target, sources in targets.items():
        if len(sources) > 1 or me.has(target):
            conflicts.update((source, source) for source in sources)
        else:
            conflicts[sources[0]] = target
    return conflicts


def _directory_pairs(old: bytes, new: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(old directory, new directory) pairs a rename suggests, as git counts them: the parent
    directories, then their parents while the names left behind agree."""
    old_dir, _, _ = old.rpartition(b"/")
    new_dir, _, _ = new.rpartition(b"/")
    if not old_dir or old_dir == new_dir:
        return
    while True:
        yield old_dir, new_dir
        if not old_dir or not new_dir:
            return
        old_parent, _, old_name = old_dir.rpartition(b"/")
        new_parent, _, new_name = new_dir.rpartition(b"/")
        if old_name != new_name or old_parent == new_parent:
            return
        old_dir, new_dir = old_parent, new_parent


def _directories(path: bytes, deepest: bool = False) -> Iterator[bytes]:
    """The directories leading to `path`, outermost first (or deepest first)."""
    parts = path.split(b"/")[:-1]
    prefixes = [b"/".join(parts[: i + 1]) for i in range(len(parts))]
    yield from reversed(prefixes) if deepest else prefixes


def _under(path: bytes, directory: bytes) -> bool:
    return path.startswith(directory + b"/")
