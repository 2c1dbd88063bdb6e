"""Has a change landed? Patch-ids, `git cherry`, and the containment test of the commands.

Nothing here writes objects or refs: libgit2's own tree merge stores auto-merged blobs, so the
containment test merges file by file in memory instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable
from typing import TypeVar

import pygit2
from pygit2.enums import FileMode

from hostd.git.blobs import is_binary

_WHITESPACE = b" \t\n\r"  # git's isspace()
_HUNK_NOISE = re.compile(rb"^(?:@@|\\).*\n?", re.MULTILINE)
_MODULUS = 1 << 160
_TREE = int(FileMode.TREE)
_GITLINK = int(FileMode.COMMIT)
_LINK = int(FileMode.LINK)
_BLOB = int(FileMode.BLOB)
_EXECUTABLE = int(FileMode.BLOB_EXECUTABLE)
_TEXT_MODES = {_BLOB, _EXECUTABLE}
_NULL_HEX = b"0" * 40
_TREE_RECORD = re.compile(rb"[^\0]*\0.{20}", re.DOTALL)  # b"<octal mode> <name>\0" + raw id

Entry = tuple[pygit2.Oid, int]
Change = tuple[bytes, Entry | None, Entry | None]
Header = tuple[tuple[bytes, int, int], ...]
TreePair = tuple[pygit2.Oid | None, pygit2.Oid]
_T = TypeVar("_T")


# ---------------------------------------------------------------- tree diff


def tree_changes(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree | None
) -> list[Change]:
    """Files that differ between two trees, as `git diff-tree -r` lists them (no renames).

    Subtrees with equal ids are skipped unread, so the cost follows the change, not the tree.
    """
    return _Trees(repo).changes(None if old is None else old.id, None if new is None else new.id)


def commit_changes(repo: pygit2.Repository, commit: pygit2.Commit) -> list[Change]:
    """The commit's change against its first parent (a root commit: against the empty tree)."""
    return _Trees(repo).changes(*_tree_pair(commit))


def _tree_pair(commit: pygit2.Commit) -> TreePair:
    return (commit.parents[0].tree_id if commit.parent_ids else None), commit.tree_id


class _Trees:
    """Trees read from the object database as raw entry records; the last few read are kept.

    libgit2's tree diff expands equal subtrees too, so its cost follows the size of the tree.
    """

    _KEPT = 16

    def __init__(self, repo: pygit2.Repository) -> None:
        self._odb = repo.odb
        self._records: dict[pygit2.Oid, frozenset[bytes]] = {}

    def changes(self, old: pygit2.Oid | None, new: pygit2.Oid | None) -> list[Change]:
        changes: list[Change] = []
        self._compare(old, new, b"", changes)
        return changes

    def _read(self, oid: pygit2.Oid | None) -> frozenset[bytes]:
        if oid is None:
            return frozenset()
        records = self._records.get(oid)
        if records is None:
            records = frozenset(_TREE_RECORD.findall(self._odb.read(oid)[1]))
            if len(self._records) >= self._KEPT:
                del self._records[next(iter(self._records))]
            self._records[oid] = records
        return records

    def level(
        self, old: pygit2.Oid | None, new: pygit2.Oid | None
    ) -> list[tuple[bytes, Entry | None, Entry | None]]:
        """The entries that differ between two trees, not looking into subtrees, by name."""
        if old == new:
            return []
        before, after = self._read(old), self._read(new)
        gone, came = _entries(before - after), _entries(after - before)
        names = sorted(gone.keys() | came.keys())
        return [(n, gone.get(n), came.get(n)) for n in names if gone.get(n) != came.get(n)]

    def _compare(
        self, old: pygit2.Oid | None, new: pygit2.Oid | None, prefix: bytes, out: list[Change]
    ) -> None:
        for name, a, b in self.level(old, new):
            path = prefix + name
            sub_a = a[0] if a is not None and a[1] == _TREE else None
            sub_b = b[0] if b is not None and b[1] == _TREE else None
            if sub_a is not None or sub_b is not None:
                self._compare(sub_a, sub_b, path + b"/", out)
            file_a = a if sub_a is None else None
            file_b = b if sub_b is None else None
            if file_a != file_b:
                out.append((path, file_a, file_b))


def _entries(records: Iterable[bytes]) -> dict[bytes, Entry]:
    entries: dict[bytes, Entry] = {}
    for record in records:
        mode, _, rest = record.partition(b" ")
        entries[rest[:-21]] = (pygit2.Oid(raw=rest[-20:]), _filemode(int(mode, 8)))
    return entries


def _filemode(mode: int) -> int:
    """The mode as libgit2 reads it from a tree (git_tree_entry_filemode)."""
    kind = mode & 0o170000
    if kind == _TREE:
        return _TREE
    if mode & 0o111:
        return _EXECUTABLE
    if kind in (_GITLINK, _LINK):
        return kind
    return _BLOB


def _header(changes: list[Change]) -> Header:
    """Paths and modes only: equal whenever the patch-ids are equal."""
    return tuple((p, a[1] if a else 0, b[1] if b else 0) for p, a, b in changes)


def _path_str(path: bytes) -> str:
    # Interned: pygit2's tree lookups keep a reference to the path string they are given.
    return sys.intern(os.fsdecode(path))


def _lookup(tree: pygit2.Tree, path: bytes) -> pygit2.Object | None:
    try:
        return tree[_path_str(path)]
    except (KeyError, ValueError, UnicodeError, pygit2.GitError):
        return None


# ---------------------------------------------------------------- patch-ids


def patch_id(repo: pygit2.Repository, commit: pygit2.Commit) -> bytes:
    """An equivalence key for the change a (non-merge) commit makes, as `git patch-id --stable`.

    Per file: the header (paths, file modes), then the hunk lines with line numbers dropped and
    all whitespace removed; binary files are keyed by their blob ids. File keys are summed, so
    the key does not depend on file order. No rename detection, as in git.
    """
    return _patch_id(repo, commit_changes(repo, commit))


def _patch_id(repo: pygit2.Repository, changes: list[Change]) -> bytes:
    total = sum(_file_id(repo, change) for change in changes) % _MODULUS
    return total.to_bytes(20, "little")


def _file_id(repo: pygit2.Repository, change: Change) -> int:
    path, old, new = change
    bare = path.translate(None, _WHITESPACE)
    h = hashlib.sha1(b"diff--gita/" + bare + b"b/" + bare)
    if old is None and new is not None:
        h.update(b"newfilemode%06o" % new[1])
    elif new is None and old is not None:
        h.update(b"deletedfilemode%06o" % old[1])
    elif old is not None and new is not None and old[1] != new[1]:
        h.update(b"oldmode%06onewmode%06o" % (old[1], new[1]))
    lines = _hunk_lines(repo, path, old, new)
    if lines is None:
        h.update(_hex(old) + _hex(new))
    else:
        h.update(b"---/dev/null" if old is None else b"---a/" + bare)
        h.update(b"+++/dev/null" if new is None else b"+++b/" + bare)
        h.update(lines)
    return int.from_bytes(h.digest(), "little")


def _hex(entry: Entry | None) -> bytes:
    return _NULL_HEX if entry is None else str(entry[0]).encode()


def _hunk_lines(
    repo: pygit2.Repository, path: bytes, old: Entry | None, new: Entry | None
) -> bytes | None:
    """The diff's hunk lines (3 lines of context) without whitespace; None for binary files."""
    if any(e is not None and e[1] == _GITLINK for e in (old, new)):
        return None
    try:
        as_path: str | None = path.decode("utf-8")
    except UnicodeDecodeError:
        as_path = None
    blobs = [repo[e[0]] if e is not None else None for e in (old, new)]
    patch = pygit2.Patch.create_from(blobs[0], blobs[1], as_path, as_path, context_lines=3)
    if patch.delta.is_binary:
        return None
    data = patch.data
    start = data.find(b"\n@@")
    if start < 0:
        return b""
    return _HUNK_NOISE.sub(b"", data[start + 1 :]).translate(None, _WHITESPACE)


# ---------------------------------------------------------------- git cherry


def _exclusive(
    repo: pygit2.Repository, tip: pygit2.Commit, hide: pygit2.Commit
) -> list[pygit2.Commit]:
    """Commits reachable from `tip` but not from `hide`, newest first as `git rev-list` lists
    them (libgit2's limited walk orders by commit date like git's, clock skew included)."""
    walker = repo.walk(tip.id)
    walker.hide(hide.id)
    return list(walker)


def _non_merges(commits: Iterable[pygit2.Commit]) -> list[pygit2.Commit]:
    return [c for c in commits if len(c.parent_ids) <= 1]


# What commits change, remembered by the trees they compare, so valid in any repository: the
# top-level names whose entries differ, and a hash of the header. Not patch-ids: which files
# count as binary depends on the repository's attributes.
_tops: dict[TreePair, tuple[bytes, ...]] = {}
_header_keys: dict[TreePair, int] = {}
_REMEMBERED = 8192
_EMPTY_KEY = hash(())


def _remember(memo: dict[TreePair, _T], pair: TreePair, value: _T) -> _T:
    if len(memo) >= _REMEMBERED:
        del memo[next(iter(memo))]
    memo[pair] = value
    return value


class _Commits:
    """What commits change, by the trees they compare: changes and patch-ids for one query,
    top-level names and header keys remembered across queries."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.trees = _Trees(repo)
        self.changes: dict[TreePair, list[Change]] = {}
        self.patch_ids: dict[TreePair, bytes] = {}

    def tops(self, pair: TreePair) -> tuple[bytes, ...]:
        tops = _tops.get(pair)
        if tops is None:
            tops = _remember(_tops, pair, tuple(n for n, _, _ in self.trees.level(*pair)))
        return tops

    def header_key(self, pair: TreePair) -> int:
        key = _header_keys.get(pair)
        if key is None:
            key = _remember(_header_keys, pair, hash(_header(self._changes(pair))))
        return key

    def same_change(self, pair: TreePair, candidates: list[TreePair]) -> bool:
        """Does one of `candidates` (of the same header key) make the change `pair` makes?"""
        header = _header(self._changes(pair))
        same_header = [c for c in candidates if _header(self._changes(c)) == header]
        if not same_header:
            return False
        own = self._patch_id(pair)
        return any(self._patch_id(c) == own for c in same_header)

    def _changes(self, pair: TreePair) -> list[Change]:
        changes = self.changes.get(pair)
        if changes is None:
            changes = self.changes[pair] = self.trees.changes(*pair)
        return changes

    def _patch_id(self, pair: TreePair) -> bytes:
        found = self.patch_ids.get(pair)
        if found is None:
            found = self.patch_ids[pair] = _patch_id(self.repo, self._changes(pair))
        return found


def unmerged_commits(
    repo: pygit2.Repository, head: pygit2.Commit, landing: pygit2.Commit
) -> list[pygit2.Commit]:
    """What `git cherry <landing> <head>` marks `+`, oldest first.

    The non-merge commits of landing..head whose patch-id is not among the non-merge commits of
    head..landing. Patch-ids are compared only where the headers (paths and modes) are equal,
    and a landing-side commit is diffed in full only where it changes a top-level entry that a
    head-side commit changes.
    """
    if head.id == landing.id:
        return []
    ours = _non_merges(reversed(_exclusive(repo, head, landing)))
    if not ours:
        return []
    theirs = _non_merges(_exclusive(repo, landing, head))
    if not theirs:
        return ours
    commits = _Commits(repo)
    our_pairs = [_tree_pair(c) for c in ours]
    our_keys = [commits.header_key(p) for p in our_pairs]
    wanted = set(our_keys)
    touched = {name for pair in our_pairs for name in commits.tops(pair)}
    landed: dict[int, list[TreePair]] = {}
    for commit in theirs:
        pair = _tree_pair(commit)
        tops = commits.tops(pair)
        may_match = not touched.isdisjoint(tops) if tops else _EMPTY_KEY in wanted
        if not may_match:
            continue
        key = commits.header_key(pair)
        if key in wanted:
            landed.setdefault(key, []).append(pair)
    return [
        c
        for c, pair, key in zip(ours, our_pairs, our_keys, strict=True)
        if key not in landed or not commits.same_change(pair, landed[key])
    ]


# ---------------------------------------------------------------- containment


def contained(repo: pygit2.Repository, tip: pygit2.Commit, target: pygit2.Commit) -> bool | None:
    """Is the content of `tip` in `target`? True, False, or None when it cannot be told.

    True when tip is target or one of its ancestors, the trees are equal, every commit of
    target..tip (none of them a merge) has its patch-id on the target side, or a three-way merge
    of target and tip yields target's tree. False when that merge yields another tree.
    """
    if tip.id == target.id or tip.tree_id == target.tree_id:
        return True
    if repo.descendant_of(target.id, tip.id):
        return True
    ours = _exclusive(repo, tip, target)
    if all(len(c.parent_ids) <= 1 for c in ours) and not unmerged_commits(repo, tip, target):
        return True
    base_id = repo.merge_base(tip.id, target.id)
    if base_id is None:
        return None
    return _merge_keeps_target(repo, repo[base_id].peel(pygit2.Tree), tip.tree, target.tree)


def _entry(tree: pygit2.Tree, path: bytes) -> Entry | None:
    obj = _lookup(tree, path)
    return None if obj is None else (obj.id, int(obj.filemode))


def _merge_keeps_target(
    repo: pygit2.Repository, base: pygit2.Tree, tip: pygit2.Tree, target: pygit2.Tree
) -> bool | None:
    """Would merging tip into target (from `base`) leave target's tree as it is?"""
    for path, ancestor, theirs in tree_changes(repo, base, tip):
        ours = _entry(target, path)
        if theirs == ours:
            continue
        if ours == ancestor:
            return False
        verdict = _file_merge_keeps(repo, path, ancestor, ours, theirs)
        if verdict is not True:
            return verdict
    return True


def _file_merge_keeps(
    repo: pygit2.Repository,
    path: bytes,
    ancestor: Entry | None,
    ours: Entry | None,
    theirs: Entry | None,
) -> bool | None:
    """Both sides changed `path`: does the content merge reproduce ours? None on a conflict."""
    if ancestor is None or ours is None or theirs is None:
        return None
    if not ancestor[1] == ours[1] == theirs[1] or ours[1] not in _TEXT_MODES:
        return None
    blobs = [repo[oid].peel(pygit2.Blob) for oid, _ in (ancestor, ours, theirs)]
    if any(is_binary(blob.data) for blob in blobs):
        return None
    name = _path_str(path)
    entries = [pygit2.IndexEntry(name, oid, FileMode(m)) for oid, m in (ancestor, ours, theirs)]
    try:
        result = repo.merge_file_from_index(*entries)
        merged = result.contents.encode("utf-8")
    except (UnicodeError, pygit2.GitError):
        return None
    if not result.automergeable:
        return None
    return merged == blobs[1].data
