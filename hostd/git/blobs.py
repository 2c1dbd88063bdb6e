"""One side of a change and its content, for the diff: `File`, and git's binary sniff.

A side's bytes come from the object database, or from the worktree read as git would store it
(clean filters applied, symlinks as their target, gitlinks as `Subproject commit`); its blob
id and size are found without reading the content when the object database has them. A side
larger than the diff's file limit is never read whole: its size comes from the object header or
`lstat`, its id from a streamed hash.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import pygit2
from pygit2.enums import DiffFlag

ZERO_OID = pygit2.Oid(raw=bytes(20))
_GITLINK = 0o160000
_BINARY_SNIFF = 8000
BIG_FILE_THRESHOLD = 512 * 2**20
_STREAM_ABOVE = 2**20


def is_binary(data: bytes) -> bool:
    """git's buffer_is_binary: a NUL byte among the first 8000."""
    return b"\0" in data[:_BINARY_SNIFF]


@dataclass(eq=False)
class File:
    """One side of a change; its content comes from the object database or the worktree."""

    repo: pygit2.Repository
    path: bytes
    mode: int
    oid: pygit2.Oid | None
    worktree: bool
    _data: bytes | None = None
    _size: int | None = None

    @classmethod
    def of(cls, repo: pygit2.Repository, side: pygit2.DiffFile, worktree: bool) -> File:
        oid: pygit2.Oid | None = side.id
        if worktree and (oid == ZERO_OID or not side.flags & DiffFlag.VALID_ID):
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
            self.oid = pygit2.hash(self.data()) if self._data is not None else self._hash()
        return self.oid

    def _hash(self) -> pygit2.Oid:
        """The id of the worktree content; a large file with no clean filter is hashed as a
        stream, not read whole."""
        full = self._worktree_path()
        streamed = self.regular and self.raw_size() > _STREAM_ABOVE
        if streamed and not os.path.islink(full) and not _filtered(self.repo, self.path):
            return pygit2.hashfile(os.fsdecode(full))
        return pygit2.hash(self.data())

    def raw_size(self) -> int:
        """The size without reading the content: stored size, or the worktree file's size."""
        if self._data is not None or self.mode == _GITLINK:
            return len(self.data())
        if self._in_odb():
            return self.size()
        try:
            return os.lstat(self._worktree_path()).st_size
        except OSError:
            return 0

    def oversized(self, limit: int) -> bool:
        """Above the diff's file limit: counted as binary, never read whole."""
        return self.regular and self.raw_size() > limit

    def size(self) -> int:
        if self._size is None:
            stored = self._data is None and self._in_odb()
            self._size = stored_size(self.repo, self.oid) if stored else len(self.data())
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

    def release(self) -> None:
        """Forget a stored blob's bytes (read again if needed); worktree bytes are kept."""
        if not self.worktree:
            self._data = None

    def _load(self) -> bytes:
        if self.mode == _GITLINK:
            return b"Subproject commit %s\n" % str(self.oid).encode()
        if self._in_odb():
            return self.repo[self.oid].data
        full = self._worktree_path()
        if stat.S_ISLNK(self.mode) and os.path.islink(full):
            return os.readlink(full)
        with open(os.open(full, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            data = fh.read()
        return _clean(self.repo, self.path, data)

    def _worktree_path(self) -> bytes:
        return os.path.join(os.fsencode(self.repo.workdir), self.path)


def too_large(repo: pygit2.Repository, side: pygit2.DiffFile, worktree: bool, limit: int) -> bool:
    """Is this regular file of a delta above `limit` bytes? Told without reading it: from the
    object header, or for a worktree side from `lstat` as git does."""
    if not stat.S_ISREG(side.mode):
        return False
    if worktree:
        try:
            return os.lstat(os.path.join(os.fsencode(repo.workdir), side.raw_path)).st_size > limit
        except OSError:
            return False
    try:
        return stored_size(repo, side.id) > limit
    except (KeyError, pygit2.GitError):
        return False


_sizes: dict[pygit2.Oid, int] = {}
_MAX_SIZES = 200_000


def stored_size(repo: pygit2.Repository, oid: pygit2.Oid) -> int:
    """An object's size from its header; kept, as an object's id fixes its size."""
    size = _sizes.get(oid)
    if size is None:
        size = repo.odb.read_header(oid)[1]
        if len(_sizes) >= _MAX_SIZES:
            _sizes.clear()
        _sizes[oid] = size
    return size


def big_file_limit(repo: pygit2.Repository, limit: int) -> int:
    """The size above which a file counts as binary: `core.bigFileThreshold` (as git diff
    applies it) or `limit`, whichever is lower."""
    try:
        threshold = repo.config.get_int("core.bigFileThreshold")
    except (KeyError, ValueError, pygit2.GitError):
        threshold = BIG_FILE_THRESHOLD
    return min(limit, threshold) if threshold > 0 else limit


def _filtered(repo: pygit2.Repository, path: bytes) -> bool:
    try:
        return repo.load_filter_list(os.fsdecode(path)) is not None
    except (pygit2.GitError, UnicodeError, ValueError):
        return True


def _clean(repo: pygit2.Repository, path: bytes, data: bytes) -> bytes:
    """Worktree bytes as git would store them (line-ending conversion, ident)."""
    if is_binary(data):
        return data
    try:
        filters = repo.load_filter_list(os.fsdecode(path))
    except (pygit2.GitError, UnicodeError, ValueError):
        return data
    return filters.apply_to_buffer(data) if filters is not None else data
