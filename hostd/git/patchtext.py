"""Printing a change list as `git diff` does: the numstat records and the patch text, capped.

Each change gives a `files[]` record (path as numstat prints it, counts or binary) and its
patch: git's extended header, then libgit2's hunks or `GIT binary patch`. The joined patch text
is cut at the cap, and once cut no more patch text is computed; no more of a file's patch is
decoded than the room left. A file above the file limit is counted as binary without being
read, and the patch stops before it (`truncated`): its binary patch is not computed.
"""

from __future__ import annotations

import os
import stat
from typing import Any

import pygit2
from pygit2.enums import DeltaStatus, DiffOption

from hostd.git.binpatch import as_git_prints, compression_level
from hostd.git.blobs import ZERO_OID, File, is_binary, too_large
from hostd.git.changes import Change, delta_sides
from hostd.git.quoting import pprint_rename, quote_bytes, quote_path
from hostd.git.renames import MAX_SCORE

PATCH_CAP = 200_000
CONTEXT_LINES = 3
_SIDED = (DeltaStatus.TYPECHANGE, DeltaStatus.CONFLICTED)

_Counts = tuple[int, int]
# The patch text of a file too large to read: the patch stops before it.
_CUT = "\0cut"
# UTF-8 takes at most this many bytes per character.
_MAX_CHAR_BYTES = 4


def print_changes(
    repo: pygit2.Repository,
    diff: pygit2.Diff,
    changes: list[Change],
    *,
    worktree: bool,
    quote_fully: bool,
    patch_cap: int | None,
    max_file: int,
) -> dict[str, Any]:
    """`files`, and unless `patch_cap` is None the `patch` (if any) and `truncated` (if cut).

    `worktree` says the new sides of `diff` are in the worktree; `quote_fully` is
    core.quotePath; files above `max_file` bytes count as binary and are not read."""
    printer = _Printer(repo, diff, worktree, quote_fully, max_file)
    text = _CappedText(patch_cap) if patch_cap is not None else None
    out: dict[str, Any] = {"files": []}
    for change in changes:
        printer.room = text.room if text is not None and not text.truncated else 0
        rendered = printer.render(change, printer.room > 0)
        if rendered is None:
            continue
        out["files"].append(rendered[0])
        if text is not None and rendered[1] == _CUT:
            text.truncated = True
        elif text is not None and rendered[1]:
            text.add(rendered[1])
    if text is not None and text.parts:
        out["patch"] = "".join(text.parts)
    if text is not None and text.truncated:
        out["truncated"] = True
    return out


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

    def __init__(
        self,
        old: File | None,
        new: File | None,
        show_binary: bool = True,
        force_binary: bool = False,
    ) -> None:
        self.old, self.new = old, new
        self._sources = (old.source() if old else None, new.source() if new else None)
        flag = DiffOption.SHOW_BINARY if show_binary else DiffOption.NORMAL
        if force_binary:
            flag |= DiffOption.FORCE_BINARY
        self.patch = pygit2.Patch.create_from(
            *self._sources, flag=flag, context_lines=CONTEXT_LINES
        )

    @property
    def binary(self) -> bool:
        return bool(self.patch.delta.is_binary)

    @property
    def counts(self) -> _Counts:
        return _line_counts(self.patch)

    def body(self, markers: tuple[bytes, bytes], level: int) -> bytes:
        """The hunks under git's `---`/`+++` lines, or the binary patch deflated at `level`."""
        data = self.patch.data
        at = data.find(b"\n@@ -")
        if at >= 0:
            return b"--- %s\n+++ %s\n" % markers + data[at + 1 :]
        at = data.find(b"\nGIT binary patch\n")
        if at < 0:
            return b""
        sides = (self.new.data() if self.new else b"", self.old.data() if self.old else b"")
        return as_git_prints(data[at + 1 :], *sides, level)


class _Printer:
    """A `files[]` record and the patch text of each change."""

    def __init__(
        self,
        repo: pygit2.Repository,
        diff: pygit2.Diff,
        worktree: bool,
        quote_fully: bool,
        max_file: int,
    ) -> None:
        self.repo, self.diff, self.worktree, self.quote_fully = repo, diff, worktree, quote_fully
        self.max_file = max_file
        self.level = compression_level(repo)
        self.room = 0

    def render(self, change: Change, want_text: bool) -> tuple[dict[str, Any], str | None] | None:
        """The record and patch text of a change; None when there is nothing to show."""
        if change.index >= 0 and change.status not in _SIDED:
            return self._plain(change, want_text)
        old, new = change.old, change.new
        renamed = change.index < 0
        if not renamed and _unchanged(old, new):
            return None
        if self._oversized(old, new):
            binary, counts, text = True, (0, 0), _CUT
        elif old is not None and new is not None and stat.S_IFMT(old.mode) != stat.S_IFMT(new.mode):
            binary, counts, text = self._typechange(old, new, want_text)
        else:
            binary, counts, text = self._sided(old, new, change.score, want_text)
        if renamed:
            assert old is not None and new is not None
            path = pprint_rename(old.path, new.path, self.quote_fully)
            return _record(path, binary, counts, new.path, old.path), text
        side = new or old
        assert side is not None
        return _record(quote_path(side.path, self.quote_fully), binary, counts, side.path), text

    def _plain(self, change: Change, want_text: bool) -> tuple[dict[str, Any], str | None]:
        assert change.delta is not None
        raw = change.delta.new_file.raw_path
        path = quote_path(raw, self.quote_fully)
        old, new = change.old, change.new
        if old is None and new is None:  # a modification: its sides are not built yet
            sides = (change.delta.old_file, False), (change.delta.new_file, self.worktree)
            oversized = any(too_large(self.repo, f, wt, self.max_file) for f, wt in sides)
        else:
            oversized = self._oversized(old, new)
        if oversized:
            return _record(path, True, (0, 0), raw), _CUT
        patch = self.diff[change.index]
        counts, binary, text = _line_counts(patch), bool(patch.delta.is_binary), None
        if want_text and binary:
            if old is None and new is None:
                old, new = delta_sides(self.repo, change.delta, change.status, self.worktree)
            text = self._binary(old, new)
        elif want_text:
            delta = change.delta
            old_path = None if change.status == DeltaStatus.ADDED else delta.old_file.raw_path
            new_path = None if change.status == DeltaStatus.DELETED else delta.new_file.raw_path
            text = self._decode(self._with_markers(patch.data, old_path, new_path))
        return _record(path, binary, counts, raw), text

    def _with_markers(self, data: bytes, old: bytes | None, new: bytes | None) -> bytes:
        """libgit2's patch text with git's quoting of the `diff --git` line and git's `---`/`+++`
        lines: none without hunks (an empty new file), a TAB after a path with a space."""
        first, second = old or new, new or old
        assert first is not None and second is not None
        end = data.find(b"\n")
        names = self._quote(b"a/" + first), self._quote(b"b/" + second)
        data = b"diff --git %s %s" % names + data[end:]
        hunk = data.find(b"\n@@ -")
        at = data.find(b"\n--- ", 0, hunk if hunk >= 0 else len(data))
        if at < 0:
            return data
        if hunk < 0:
            return data[: at + 1]
        return data[: at + 1] + b"--- %s\n+++ %s\n" % self._markers(old, new) + data[hunk + 1 :]

    def _oversized(self, old: File | None, new: File | None) -> bool:
        return any(side is not None and side.oversized(self.max_file) for side in (old, new))

    def _binary(self, old: File | None, new: File | None) -> str:
        """A `GIT binary patch` (libgit2 computes one only with SHOW_BINARY, which is slow)."""
        header, changed = self._header(old, new, binary=True)
        patch = _BlobPatch(old, new, force_binary=True)
        body = patch.body(self._file_markers(old, new), self.level) if changed else b""
        return self._decode(header + body)

    def _sided(
        self, old: File | None, new: File | None, score: int, want_text: bool
    ) -> tuple[bool, _Counts, str | None]:
        if old is not None and new is not None and old.blob_id() == new.blob_id():
            binary = is_binary(old.data()) or self._binary_by_attributes(old, new)
            counts, body = (0, 0), b""
        else:
            patch = _BlobPatch(old, new, want_text, self._binary_by_attributes(old, new))
            binary, counts = patch.binary, patch.counts
            body = patch.body(self._file_markers(old, new), self.level) if want_text else b""
        if not want_text:
            return binary, counts, None
        header, _ = self._header(old, new, binary, score=score)
        return binary, counts, self._decode(header + body)

    def _typechange(
        self, old: File, new: File, want_text: bool
    ) -> tuple[bool, _Counts, str | None]:
        """Counted as one change like git does, printed as a deletion and an addition."""
        forced = self._binary_by_attributes(old, new)
        patch = _BlobPatch(old, new, show_binary=False, force_binary=forced)
        if not want_text:
            return patch.binary, patch.counts, None
        parts = []
        for a, b in ((old, None), (None, new)):
            side = _BlobPatch(a, b, force_binary=forced)
            body = side.body(self._file_markers(a, b), self.level)
            parts.append(self._header(a, b, side.binary)[0] + body)
        return patch.binary, patch.counts, self._decode(b"".join(parts))

    def _decode(self, data: bytes) -> str:
        """The text of `data`, no more than fits in the room left and one character more."""
        return data[: (self.room + 1) * _MAX_CHAR_BYTES].decode("utf-8", "replace")

    def _labels(self, old: File | None, new: File | None) -> tuple[bytes, bytes]:
        return (
            self._quote(b"a/" + old.path) if old else b"/dev/null",
            self._quote(b"b/" + new.path) if new else b"/dev/null",
        )

    def _file_markers(self, old: File | None, new: File | None) -> tuple[bytes, bytes]:
        return self._markers(old.path if old else None, new.path if new else None)

    def _markers(self, old: bytes | None, new: bytes | None) -> tuple[bytes, bytes]:
        """The `---`/`+++` names: git ends one with a TAB when the path has a space."""
        return (
            self._quote(b"a/" + old) + b"\t" * (b" " in old) if old else b"/dev/null",
            self._quote(b"b/" + new) + b"\t" * (b" " in new) if new else b"/dev/null",
        )

    def _binary_by_attributes(self, old: File | None, new: File | None) -> bool:
        """`.gitattributes` says `-diff` (or `binary`) for a side's path."""
        for side in (old, new):
            if side is None:
                continue
            try:
                if self.repo.get_attr(os.fsdecode(side.path), "diff") is False:
                    return True
            except (pygit2.GitError, ValueError):
                continue
        return False

    def _quote(self, path: bytes) -> bytes:
        return quote_bytes(path, self.quote_fully)

    def _header(
        self, old: File | None, new: File | None, binary: bool, score: int = 0
    ) -> tuple[bytes, bool]:
        """git's extended header; also whether the contents differ (an `index` line)."""
        first, second = old or new, new or old
        assert first is not None and second is not None
        lines = [b"diff --git %s %s" % self._labels(first, second)]
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
        old_id = old.blob_id() if old else ZERO_OID
        new_id = new.blob_id() if new else ZERO_OID
        changed = old_id != new_id
        if changed:
            width = 40 if binary else 7
            line = b"index %s..%s" % (str(old_id)[:width].encode(), str(new_id)[:width].encode())
            if old is not None and new is not None and old.mode == new.mode:
                line += b" %06o" % old.mode
            lines.append(line)
        return b"\n".join(lines) + b"\n", changed


def _unchanged(old: File | None, new: File | None) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return old.mode == new.mode and old.blob_id() == new.blob_id()


def _line_counts(patch: pygit2.Patch) -> _Counts:
    """Additions and deletions of a libgit2 patch."""
    _, additions, deletions = patch.line_stats
    return additions, deletions


def _record(
    path: str, binary: bool, counts: _Counts, new: bytes, old: bytes | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {"path": path, "binary": binary}
    if not binary:
        record["additions"], record["deletions"] = counts
    if old is not None:
        record["oldPath"] = os.fsdecode(old)
    record["newPath"] = os.fsdecode(new)
    return record
