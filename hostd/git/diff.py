"""The body of `GET /api/workspace/diff`: numstat and a capped patch, as `git diff` prints them.

libgit2 computes the changes and the hunks. Renames are paired here with git's own algorithm
(diffcore-rename: exact matches, unique basenames, then the similarity matrix), because
libgit2's similarity metric pairs files differently from git.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import pygit2
from pygit2.enums import DeltaStatus, DiffFlag, DiffOption

from hostd.git.discover import Workspace
from hostd.git.errors import GitError
from hostd.git.quoting import pprint_rename, quote_bytes, quote_path
from hostd.git.refs import resolve_base
from hostd.git.status import dirty_count

PATCH_CAP = 200_000
CONTEXT_LINES = 3
_FLAGS = DiffOption.INCLUDE_TYPECHANGE
_BINARY_SNIFF = 8000

# diffcore-rename scores: MAX_SCORE is 100 %, the default -M is 50 %.
MAX_SCORE = 60_000
MIN_SCORE = 30_000
BASENAME_SCORE = MIN_SCORE + (MAX_SCORE - MIN_SCORE) // 2
RENAME_LIMIT = 1000
_CANDIDATES_PER_DST = 4
_SAME_ALTERNATIVES = 100
_HASHBASE = 107_927
_MASK = 0xFFFF_FFFF
_ZERO = pygit2.Oid(raw=bytes(20))
_GITLINK = 0o160000
_SIDED = (DeltaStatus.TYPECHANGE, DeltaStatus.CONFLICTED)


def workspace_diff(
    ws: Workspace,
    base_ref: str | None,
    base_sha: str | None,
    include_patch: bool = True,
    patch_cap: int = PATCH_CAP,
) -> dict[str, Any]:
    """Committed work merge-base(base, HEAD) → HEAD, or without a base `git diff HEAD`."""
    try:
        return _workspace_diff(ws.repo, base_ref, base_sha, include_patch, patch_cap)
    except (pygit2.GitError, KeyError, OSError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise GitError(str(detail) or type(exc).__name__) from exc


def _workspace_diff(
    repo: pygit2.Repository,
    base_ref: str | None,
    base_sha: str | None,
    include_patch: bool,
    patch_cap: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {"files": []}
    base = resolve_base(repo, base_ref, base_sha)
    if base is not None:
        body["baseRef"] = base.name
    if repo.head_is_unborn:
        body["error"] = "unborn HEAD"
        return body
    head = repo.head.peel(pygit2.Commit)
    if base is None:
        diff = _uncommitted_diff(repo, head.tree)
    else:
        merge_base = _merge_base(repo, base.commit.id, head.id)
        if merge_base is None:
            body["error"] = "no merge base"
            return body
        body["ahead"] = repo.ahead_behind(head.id, base.commit.id)[0]
        body["dirtyCount"] = dirty_count(repo)
        old_tree = repo[merge_base].peel(pygit2.Tree)
        diff = repo.diff(old_tree, head.tree, flags=_FLAGS, context_lines=CONTEXT_LINES)
    worktree = base is None
    printer = _Printer(repo, diff, worktree, _quote_fully(repo))
    changes = _changes(repo, diff, head.tree if worktree else None)
    text = _CappedText(patch_cap) if include_patch else None
    for change in _pair_renames(changes, _rename_limit(repo)):
        rendered = printer.render(change, text is not None and not text.truncated)
        if rendered is None:
            continue
        body["files"].append(rendered[0])
        if text is not None and rendered[1]:
            text.add(rendered[1])
    if text is not None and text.parts:
        body["patch"] = "".join(text.parts)
    if text is not None and text.truncated:
        body["truncated"] = True
    return body


def _merge_base(repo: pygit2.Repository, a: pygit2.Oid, b: pygit2.Oid) -> pygit2.Oid | None:
    try:
        return repo.merge_base(a, b)
    except pygit2.GitError:
        return None


def _uncommitted_diff(repo: pygit2.Repository, head_tree: pygit2.Tree) -> pygit2.Diff:
    """HEAD → index merged with index → worktree: what `git diff HEAD` compares."""
    index = repo.index
    staged = index.diff_to_tree(head_tree, flags=_FLAGS, context_lines=CONTEXT_LINES)
    staged.merge(index.diff_to_workdir(flags=_FLAGS, context_lines=CONTEXT_LINES))
    return staged


def _config(repo: pygit2.Repository, key: str, kind: type[bool] | type[int]) -> Any:
    try:
        return repo.config.get_bool(key) if kind is bool else repo.config.get_int(key)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def _quote_fully(repo: pygit2.Repository) -> bool:
    return _config(repo, "core.quotePath", bool) is not False


def _rename_limit(repo: pygit2.Repository) -> int:
    limit = _config(repo, "diff.renameLimit", int)
    if limit is None:
        return RENAME_LIMIT
    return limit if limit > 0 else 32767


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_SNIFF]


@dataclass(eq=False)
class _File:
    """One side of a change; its content comes from the object database or the worktree."""

    repo: pygit2.Repository
    path: bytes
    mode: int
    oid: pygit2.Oid | None
    worktree: bool
    _data: bytes | None = None
    _size: int | None = None
    _spans: dict[int, int] | None = None

    @classmethod
    def of(cls, repo: pygit2.Repository, side: pygit2.DiffFile, worktree: bool) -> _File:
        oid: pygit2.Oid | None = side.id
        if worktree and (oid == _ZERO or not side.flags & DiffFlag.VALID_ID):
            oid = None
        return cls(repo, side.raw_path, side.mode, oid, worktree)

    @property
    def regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def basename(self) -> bytes:
        return self.path.rpartition(b"/")[2]

    def _in_odb(self) -> bool:
        if self.oid is None or self.mode == _GITLINK:
            return False
        return not self.worktree or self.oid in self.repo.odb

    def blob_id(self) -> pygit2.Oid:
        if self.oid is None:
            self.oid = pygit2.hash(self.data())
        return self.oid

    def size(self) -> int:
        if self._size is None:
            stored = self._data is None and self._in_odb()
            self._size = self.repo.odb.read_header(self.oid)[1] if stored else len(self.data())
        return self._size

    def source(self) -> pygit2.Blob | bytes:
        """What libgit2 diffs: the blob when stored, else the bytes."""
        if self._data is None and self._in_odb():
            return self.repo[self.oid]
        return self.data()

    def data(self) -> bytes:
        if self._data is None:
            self._data = self._load()
        return self._data

    def _load(self) -> bytes:
        if self.mode == _GITLINK:
            return b"Subproject commit %s\n" % str(self.oid).encode()
        if self._in_odb():
            return self.repo[self.oid].data
        full = os.path.join(os.fsencode(self.repo.workdir), self.path)
        if stat.S_ISLNK(self.mode) and os.path.islink(full):
            return os.readlink(full)
        with open(os.open(full, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            data = fh.read()
        return _clean(self.repo, self.path, data)

    def spans(self) -> dict[int, int]:
        if self._spans is None:
            self._spans = _span_counts(self.data())
            if not self.worktree:
                self._data = None  # stored blobs are read again if printed
        return self._spans


def _clean(repo: pygit2.Repository, path: bytes, data: bytes) -> bytes:
    """Worktree bytes as git would store them (line-ending conversion, ident)."""
    if _is_binary(data):
        return data
    try:
        filters = repo.load_filter_list(os.fsdecode(path))
    except (pygit2.GitError, UnicodeError, ValueError):
        return data
    return filters.apply_to_buffer(data) if filters is not None else data


def _unchanged(old: _File | None, new: _File | None) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return old.mode == new.mode and old.blob_id() == new.blob_id()


@dataclass(eq=False)
class _Change:
    """A delta of the libgit2 diff (`index`), or a rename paired here (`index` -1)."""

    index: int
    status: DeltaStatus
    old: _File | None = None
    new: _File | None = None
    score: int = 0


def _changes(
    repo: pygit2.Repository, diff: pygit2.Diff, head_tree: pygit2.Tree | None
) -> list[_Change]:
    """Every delta, with its sides where they are needed before printing (rename candidates,
    type changes, conflicts). `head_tree` is given when the new side is the worktree."""
    worktree = head_tree is not None
    changes = []
    for i, delta in enumerate(diff.deltas):
        change = _Change(i, delta.status)
        if worktree and change.status == DeltaStatus.MODIFIED and _type_changed(delta):
            change.status = DeltaStatus.TYPECHANGE  # as merged from HEAD → index → worktree
        if change.status == DeltaStatus.CONFLICTED and head_tree is not None:
            # libgit2 drops the HEAD side of an unmerged path; `git diff HEAD` compares it.
            change.old = _tree_file(repo, head_tree, delta.new_file.raw_path)
            if delta.new_file.flags & DiffFlag.EXISTS:
                change.new = _File.of(repo, delta.new_file, True)
        elif change.status != DeltaStatus.MODIFIED:
            if change.status != DeltaStatus.ADDED:
                change.old = _File.of(repo, delta.old_file, False)
            if change.status != DeltaStatus.DELETED:
                change.new = _File.of(repo, delta.new_file, worktree)
        changes.append(change)
    return changes


def _type_changed(delta: pygit2.DiffDelta) -> bool:
    return stat.S_IFMT(delta.old_file.mode) != stat.S_IFMT(delta.new_file.mode)


def _tree_file(repo: pygit2.Repository, tree: pygit2.Tree, path: bytes) -> _File | None:
    try:
        entry = tree[os.fsdecode(path)]
    except (KeyError, ValueError, UnicodeError):
        return None
    return _File(repo, path, entry.filemode, entry.id, False)


# --- rename detection (git's diffcore-rename) ------------------------------------------------


def _pair_renames(changes: list[_Change], limit: int) -> list[_Change]:
    """Deletions and additions paired into renames; a rename takes its destination's place."""
    srcs = [c.old for c in changes if c.status == DeltaStatus.DELETED and c.old is not None]
    dsts = [c.new for c in changes if c.status == DeltaStatus.ADDED and c.new is not None]
    if not srcs or not dsts:
        return changes
    pairs = _Renames(srcs, dsts, limit).find()
    if not pairs:
        return changes
    used = {id(srcs[s]) for s, _ in pairs.values()}
    renamed = {id(dsts[j]): (srcs[s], score) for j, (s, score) in pairs.items()}
    out = []
    for change in changes:
        if change.old is not None and id(change.old) in used:
            continue
        if change.new is not None and id(change.new) in renamed:
            src, score = renamed[id(change.new)]
            out.append(_Change(-1, DeltaStatus.RENAMED, src, change.new, score))
        else:
            out.append(change)
    return out


_EMPTY = (1, 0)


class _Renames:
    """Pairs `dst index -> (src index, score)` chosen the way git's diffcore_rename does."""

    def __init__(self, srcs: list[_File], dsts: list[_File], limit: int) -> None:
        self.srcs, self.dsts, self.limit = srcs, dsts, limit
        self.used = [False] * len(srcs)
        self.pairs: dict[int, tuple[int, int]] = {}

    def find(self) -> dict[int, tuple[int, int]]:
        self._exact()
        self._basenames()
        self._matrix()
        return self.pairs

    def _record(self, dst: int, src: int, score: int) -> None:
        self.pairs[dst] = (src, score)
        self.used[src] = True

    def _exact(self) -> None:
        by_id: dict[pygit2.Oid, list[int]] = defaultdict(list)
        for i, src in enumerate(self.srcs):
            by_id[src.blob_id()].append(i)
        for j, dst in enumerate(self.dsts):
            best, best_score, left = -1, -1, _SAME_ALTERNATIVES
            for i in by_id.get(dst.blob_id(), ()):
                src = self.srcs[i]
                if (not src.regular or not dst.regular) and src.mode != dst.mode:
                    continue
                if self.used[i]:
                    continue
                score = 1 + (src.basename == dst.basename)
                if score > best_score:
                    best, best_score = i, score
                    if score == 2:
                        break
                left -= 1
                if not left:
                    break
            if best >= 0:
                self._record(j, best, MAX_SCORE)

    def _basenames(self) -> None:
        """Files whose name is unique among the remaining sources and among the destinations."""
        srcs = [i for i in range(len(self.srcs)) if not self.used[i]]
        src_names: dict[bytes, int] = {}
        for i in srcs:
            name = self.srcs[i].basename
            src_names[name] = -1 if name in src_names else i
        dst_names: dict[bytes, int] = {}
        for j, dst in enumerate(self.dsts):
            if j not in self.pairs:
                dst_names[dst.basename] = -1 if dst.basename in dst_names else j
        for i in srcs:
            name = self.srcs[i].basename
            j = dst_names.get(name)
            if j is None or src_names[name] == -1 or j == -1 or j in self.pairs:
                continue
            score = _similarity(self.srcs[i], self.dsts[j], BASENAME_SCORE)
            if score >= BASENAME_SCORE:
                self._record(j, i, score)

    def _matrix(self) -> None:
        """The best candidates of each destination, then the best pairs overall."""
        srcs = [i for i in range(len(self.srcs)) if not self.used[i]]
        dsts = [j for j in range(len(self.dsts)) if j not in self.pairs]
        if not srcs or not dsts or len(srcs) * len(dsts) > self.limit * self.limit:
            return
        matrix: list[tuple[tuple[int, int], int, int]] = []
        for j in dsts:
            dst = self.dsts[j]
            # git's record_if_better: a candidate replaces the first worst slot.
            keys, picks, worst = [_EMPTY] * _CANDIDATES_PER_DST, [-1] * _CANDIDATES_PER_DST, _EMPTY
            for i in srcs:
                src = self.srcs[i]
                key = (-_similarity(src, dst, MIN_SCORE), -(src.basename == dst.basename))
                if key < worst:
                    slot = keys.index(worst)
                    keys[slot], picks[slot] = key, i
                    worst = max(keys)
            matrix += [(key, j, i) for key, i in zip(keys, picks, strict=True)]
        matrix.sort(key=itemgetter(0))
        for (neg_score, _), j, i in matrix:
            if i < 0 or -neg_score < MIN_SCORE:
                break
            if j not in self.pairs and not self.used[i]:
                self._record(j, i, -neg_score)


def _similarity(src: _File, dst: _File, minimum: int) -> int:
    """git's estimate_similarity: bytes of dst copied from src, relative to the larger file."""
    if not src.regular or not dst.regular:
        return 0
    src_size, dst_size = src.size(), dst.size()
    largest = max(src_size, dst_size)
    if largest * (MAX_SCORE - minimum) < (largest - min(src_size, dst_size)) * MAX_SCORE:
        return 0
    if not dst_size:
        return 0
    src_spans, dst_spans = src.spans(), dst.spans()
    copied = sum(min(src_spans[h], dst_spans[h]) for h in src_spans.keys() & dst_spans.keys())
    return copied * MAX_SCORE // largest


def _span_counts(data: bytes) -> dict[int, int]:
    """git's hash_chars: bytes per hashed chunk (lines, cut every 64 bytes)."""
    if not _is_binary(data):
        data = data.replace(b"\r\n", b"\n")
    counts: dict[int, int] = {}
    memo: dict[bytes, int] = {}
    lines = data.split(b"\n")
    last = lines.pop()
    for line in (*(line + b"\n" for line in lines), last):
        for k in range(0, len(line), 64):
            chunk = line[k : k + 64]
            h = memo.get(chunk)
            if h is None:
                h = memo[chunk] = _chunk_hash(chunk)
            counts[h] = counts.get(h, 0) + len(chunk)
    return counts


def _chunk_hash(chunk: bytes) -> int:
    a1 = a2 = 0
    for c in chunk:
        a1, a2 = (((a1 << 7) ^ (a2 >> 25)) + c) & _MASK, ((a2 << 7) ^ (a1 >> 25)) & _MASK
    return ((a1 + a2 * 0x61) & _MASK) % _HASHBASE


# --- printing ---------------------------------------------------------------------------------


class _CappedText:
    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self.room = max(cap, 0)
        self.truncated = False

    def add(self, text: str) -> None:
        if len(text) > self.room:
            text, self.truncated = text[: self.room], True
        if text:
            self.parts.append(text)
        self.room -= len(text)


class _BlobPatch:
    """A libgit2 patch of two sides; it reads the blobs lazily, so they are kept alive here."""

    def __init__(self, old: _File | None, new: _File | None, show_binary: bool = True) -> None:
        self._sources = (old.source() if old else None, new.source() if new else None)
        flag = DiffOption.SHOW_BINARY if show_binary else DiffOption.NORMAL
        self.patch = pygit2.Patch.create_from(
            *self._sources, flag=flag, context_lines=CONTEXT_LINES
        )

    @property
    def binary(self) -> bool:
        return bool(self.patch.delta.is_binary)

    @property
    def counts(self) -> tuple[int, int]:
        _, additions, deletions = self.patch.line_stats
        return additions, deletions

    def body(self, labels: tuple[bytes, bytes]) -> bytes:
        """The hunks (or binary patch) under git's `---`/`+++` labels."""
        data = self.patch.data
        at = data.find(b"\n@@ -")
        if at >= 0:
            return b"--- %s\n+++ %s\n" % labels + data[at + 1 :]
        at = data.find(b"\nGIT binary patch\n")
        return data[at + 1 :] if at >= 0 else b""


class _Printer:
    """A `files[]` record and the patch text of each change."""

    def __init__(
        self, repo: pygit2.Repository, diff: pygit2.Diff, worktree: bool, quote_fully: bool
    ) -> None:
        self.repo, self.diff, self.worktree, self.quote_fully = repo, diff, worktree, quote_fully

    def render(self, change: _Change, want_text: bool) -> tuple[dict[str, Any], str | None] | None:
        """The record and patch text of a change; None when there is nothing to show."""
        if change.index >= 0 and change.status not in _SIDED:
            return self._plain(change, want_text)
        old, new = change.old, change.new
        renamed = change.index < 0
        if not renamed and _unchanged(old, new):
            return None
        if old is not None and new is not None and stat.S_IFMT(old.mode) != stat.S_IFMT(new.mode):
            binary, counts, text = self._typechange(old, new, want_text)
        else:
            binary, counts, text = self._sided(old, new, change.score, want_text)
        if renamed:
            assert old is not None and new is not None
            path = pprint_rename(old.path, new.path, self.quote_fully)
            return self._record(path, binary, counts, new.path, old.path), text
        side = new or old
        assert side is not None
        return self._record(
            quote_path(side.path, self.quote_fully), binary, counts, side.path
        ), text

    def _plain(self, change: _Change, want_text: bool) -> tuple[dict[str, Any], str | None]:
        patch = self.diff[change.index]
        _, additions, deletions = patch.line_stats
        binary, text = bool(patch.delta.is_binary), None
        if want_text:
            text = self._binary(change, patch.delta) if binary else _decode(patch.data)
        raw = patch.delta.new_file.raw_path
        path = quote_path(raw, self.quote_fully)
        return self._record(path, binary, (additions, deletions), raw), text

    @staticmethod
    def _record(
        path: str, binary: bool, counts: tuple[int, int], new: bytes, old: bytes | None = None
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"path": path, "binary": binary}
        if not binary:
            record["additions"], record["deletions"] = counts
        if old is not None:
            record["oldPath"] = os.fsdecode(old)
        record["newPath"] = os.fsdecode(new)
        return record

    def _binary(self, change: _Change, delta: pygit2.DiffDelta) -> str:
        """A `GIT binary patch` (libgit2 computes one only with SHOW_BINARY, which is slow)."""
        old = change.old
        if old is None and change.status != DeltaStatus.ADDED:
            old = _File.of(self.repo, delta.old_file, False)
        new = change.new
        if new is None and change.status != DeltaStatus.DELETED:
            new = _File.of(self.repo, delta.new_file, self.worktree)
        header, changed = self._header(old, new, binary=True)
        body = _BlobPatch(old, new).body(self._labels(old, new)) if changed else b""
        return _decode(header + body)

    def _sided(
        self, old: _File | None, new: _File | None, score: int, want_text: bool
    ) -> tuple[bool, tuple[int, int], str | None]:
        if old is not None and new is not None and old.blob_id() == new.blob_id():
            binary, counts, body = _is_binary(old.data()), (0, 0), b""
        else:
            patch = _BlobPatch(old, new, want_text)
            binary, counts = patch.binary, patch.counts
            body = patch.body(self._labels(old, new)) if want_text else b""
        if not want_text:
            return binary, counts, None
        header, _ = self._header(old, new, binary, score=score)
        return binary, counts, _decode(header + body)

    def _typechange(
        self, old: _File, new: _File, want_text: bool
    ) -> tuple[bool, tuple[int, int], str | None]:
        """Counted as one change like git does, printed as a deletion and an addition."""
        patch = _BlobPatch(old, new, show_binary=False)
        if not want_text:
            return patch.binary, patch.counts, None
        parts = []
        for a, b in ((old, None), (None, new)):
            side = _BlobPatch(a, b)
            parts.append(self._header(a, b, side.binary)[0] + side.body(self._labels(a, b)))
        return patch.binary, patch.counts, _decode(b"".join(parts))

    def _labels(self, old: _File | None, new: _File | None) -> tuple[bytes, bytes]:
        return (
            self._quote(b"a/" + old.path) if old else b"/dev/null",
            self._quote(b"b/" + new.path) if new else b"/dev/null",
        )

    def _quote(self, path: bytes) -> bytes:
        return quote_bytes(path, self.quote_fully)

    def _header(
        self, old: _File | None, new: _File | None, binary: bool, score: int = 0
    ) -> tuple[bytes, bool]:
        """git's extended header; also whether the contents differ (an `index` line)."""
        first, second = old or new, new or old
        assert first is not None and second is not None
        lines = [
            b"diff --git %s %s"
            % (self._quote(b"a/" + first.path), self._quote(b"b/" + second.path))
        ]
        if old is None:
            lines.append(b"new file mode %06o" % second.mode)
        elif new is None:
            lines.append(b"deleted file mode %06o" % first.mode)
        elif old.mode != new.mode:
            lines += [b"old mode %06o" % old.mode, b"new mode %06o" % new.mode]
        if score:
            assert old is not None and new is not None
            lines += [
                b"similarity index %d%%" % (score * 100 // MAX_SCORE),
                b"rename from " + self._quote(old.path),
                b"rename to " + self._quote(new.path),
            ]
        old_id = old.blob_id() if old else _ZERO
        new_id = new.blob_id() if new else _ZERO
        changed = old_id != new_id
        if changed:
            width = 40 if binary else 7
            line = b"index %s..%s" % (str(old_id)[:width].encode(), str(new_id)[:width].encode())
            if old is not None and new is not None and old.mode == new.mode:
                line += b" %06o" % old.mode
            lines.append(line)
        return b"\n".join(lines) + b"\n", changed


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")
