"""Rename detection as git does it (diffcore-rename), over a change list.

Deletions and additions are paired by exact content, then by unique basenames, then by the
similarity matrix (git's chunk-hash estimate), within git's rename limit. libgit2's own
similarity metric pairs files differently from git, hence this module.
"""

from __future__ import annotations

from collections import defaultdict
from operator import itemgetter

import pygit2
from pygit2.enums import DeltaStatus

from hostd.git.blobs import File, is_binary
from hostd.git.changes import Change

# diffcore-rename scores: MAX_SCORE is 100 %, the default -M is 50 %.
MAX_SCORE = 60_000
MIN_SCORE = 30_000
BASENAME_SCORE = MIN_SCORE + (MAX_SCORE - MIN_SCORE) // 2
RENAME_LIMIT = 1000
_UNLIMITED = 32767
_CANDIDATES_PER_DST = 4
_SAME_ALTERNATIVES = 100
_HASHBASE = 107_927
_MASK = 0xFFFF_FFFF
_EMPTY = (1, 0)


def rename_limit(configured: int | None) -> int:
    """The limit for `diff.renameLimit` as configured (None when unset); 0 or less is no limit."""
    if configured is None:
        return RENAME_LIMIT
    return configured if configured > 0 else _UNLIMITED


def pair_renames(changes: list[Change], limit: int, max_file: int) -> list[Change]:
    """Deletions and additions paired into renames; a rename takes its destination's place.
    Files above `max_file` bytes pair only with identical content."""
    srcs = [c.old for c in changes if c.status == DeltaStatus.DELETED and c.old is not None]
    dsts = [c.new for c in changes if c.status == DeltaStatus.ADDED and c.new is not None]
    if not srcs or not dsts:
        return changes
    pairs = _Renames(srcs, dsts, limit, max_file).find()
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
            out.append(Change(-1, DeltaStatus.RENAMED, src, change.new, score))
        else:
            out.append(change)
    return out


class _Renames:
    """Pairs `dst index -> (src index, score)` chosen the way git's diffcore_rename does."""

    def __init__(self, srcs: list[File], dsts: list[File], limit: int, max_file: int) -> None:
        self.srcs, self.dsts, self.limit, self.max_file = srcs, dsts, limit, max_file
        self.used = [False] * len(srcs)
        self.pairs: dict[int, tuple[int, int]] = {}
        self._spans: dict[File, dict[int, int]] = {}

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
            if j is None or src_names[name] == -1 or j == -1:
                continue
            score = self._similarity(self.srcs[i], self.dsts[j], BASENAME_SCORE)
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
                key = (-self._similarity(src, dst, MIN_SCORE), -(src.basename == dst.basename))
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

    def _similarity(self, src: File, dst: File, minimum: int) -> int:
        """git's estimate_similarity: bytes of dst copied from src, relative to the larger file."""
        if not src.regular or not dst.regular:
            return 0
        if src.oversized(self.max_file) or dst.oversized(self.max_file):
            return 0
        src_size, dst_size = src.size(), dst.size()
        largest = max(src_size, dst_size)
        if largest * (MAX_SCORE - minimum) < (largest - min(src_size, dst_size)) * MAX_SCORE:
            return 0
        if not dst_size:
            return 0
        src_spans, dst_spans = self._spans_of(src), self._spans_of(dst)
        copied = sum(min(src_spans[h], dst_spans[h]) for h in src_spans.keys() & dst_spans.keys())
        return copied * MAX_SCORE // largest

    def _spans_of(self, file: File) -> dict[int, int]:
        spans = self._spans.get(file)
        if spans is None:
            spans = self._spans[file] = _span_counts(file.data())
            file.release()  # stored blobs are read again if printed
        return spans


def _span_counts(data: bytes) -> dict[int, int]:
    """git's hash_chars: bytes per hashed chunk (lines, cut every 64 bytes)."""
    if not is_binary(data):
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
