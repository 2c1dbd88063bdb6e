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

import pygit2
from pygit2.enums import FileMode

from hostd.git.blobs import is_binary

_WHITESPACE = b" \t\n\r"  # git's isspace()
_HUNK_NOISE = re.compile(rb"^(?:@@|\\).*\n?", re.MULTILINE)
_MODULUS = 1 << 160
_TREE = int(FileMode.TREE)
_GITLINK = int(FileMode.COMMIT)
_TEXT_MODES = {int(FileMode.BLOB), int(FileMode.BLOB_EXECUTABLE)}
_NULL_HEX = b"0" * 40

Entry = tuple[pygit2.Oid, int]
Change = tuple[bytes, Entry | None, Entry | None]
Header = tuple[tuple[bytes, int, int], ...]


# ---------------------------------------------------------------- tree diff


def tree_changes(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree | None
) -> list[Change]:
    """Files that differ between two trees, as `git diff-tree -r` lists them (no renames).

    Subtrees with equal ids are skipped unread, so the cost follows the change, not the tree.
    """
    changes: list[Change] = []
    _compare(repo, old, new, b"", changes)
    return changes


def _entries(tree: pygit2.Tree | None) -> dict[bytes, Entry]:
    return {} if tree is None else {o.raw_name: (o.id, int(o.filemode)) for o in tree}


def _compare(
    repo: pygit2.Repository,
    old: pygit2.Tree | None,
    new: pygit2.Tree | None,
    prefix: bytes,
    out: list[Change],
) -> None:
    before, after = _entries(old), _entries(new)
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        path = prefix + name
        sub_a = repo[a[0]] if a is not None and a[1] == _TREE else None
        sub_b = repo[b[0]] if b is not None and b[1] == _TREE else None
        if sub_a is not None or sub_b is not None:
            _compare(repo, sub_a, sub_b, path + b"/", out)
        file_a = a if sub_a is None else None
        file_b = b if sub_b is None else None
        if file_a != file_b:
            out.append((path, file_a, file_b))


def commit_changes(repo: pygit2.Repository, commit: pygit2.Commit) -> list[Change]:
    """The commit's change against its first parent (a root commit: against the empty tree)."""
    parent = repo[commit.parent_ids[0]].peel(pygit2.Tree) if commit.parent_ids else None
    return tree_changes(repo, parent, commit.tree)


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


class _LandingSide:
    """Patch-ids of the landing side, computed only where a head-side change could match."""

    def __init__(
        self, repo: pygit2.Repository, commits: list[pygit2.Commit], wanted: list[list[Change]]
    ) -> None:
        self.repo = repo
        self.by_header: dict[Header, list[list[Change]]] = {}
        self.ids: dict[Header, set[bytes]] = {}
        probes = {changes[0][0] for changes in wanted if changes}
        want_empty = any(not changes for changes in wanted)
        for commit in commits:
            parent = repo[commit.parent_ids[0]].peel(pygit2.Tree) if commit.parent_ids else None
            if parent is not None and parent.id == commit.tree_id:
                if want_empty:
                    self.by_header.setdefault((), []).append([])
                continue
            if parent is None or any(_touches(parent, commit.tree, p) for p in probes):
                changes = tree_changes(repo, parent, commit.tree)
                self.by_header.setdefault(_header(changes), []).append(changes)

    def has(self, changes: list[Change]) -> bool:
        header = _header(changes)
        candidates = self.by_header.get(header)
        if candidates is None:
            return False
        if header not in self.ids:
            self.ids[header] = {_patch_id(self.repo, c) for c in candidates}
        return _patch_id(self.repo, changes) in self.ids[header]


def _touches(old: pygit2.Tree, new: pygit2.Tree, path: bytes) -> bool:
    """Could `path` differ between the trees? False only when it surely does not."""
    a: pygit2.Object | None = old
    b: pygit2.Object | None = new
    for part in path.split(b"/"):
        if not isinstance(a, pygit2.Tree) or not isinstance(b, pygit2.Tree):
            return True
        a, b = _lookup(a, part), _lookup(b, part)
        if a is None and b is None:
            return False
        if a is not None and b is not None and a.id == b.id and a.filemode == b.filemode:
            return False
    return True


def unmerged_commits(
    repo: pygit2.Repository, head: pygit2.Commit, landing: pygit2.Commit
) -> list[pygit2.Commit]:
    """What `git cherry <landing> <head>` marks `+`, oldest first.

    The non-merge commits of landing..head whose patch-id is not among the non-merge commits of
    head..landing. The landing side is only read where a head-side change could match.
    """
    if head.id == landing.id:
        return []
    ours = _non_merges(reversed(_exclusive(repo, head, landing)))
    if not ours:
        return []
    theirs = _non_merges(_exclusive(repo, landing, head))
    if not theirs:
        return ours
    changes = [commit_changes(repo, c) for c in ours]
    landed = _LandingSide(repo, theirs, changes)
    return [c for c, ch in zip(ours, changes, strict=True) if not landed.has(ch)]


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
