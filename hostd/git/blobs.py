"""One side of a change and its content, for the diff: `File`, and git's binary sniff.

A side's bytes come from the object database, or from the worktree read as git would store it
(clean filters applied, symlinks as their target, gitlinks as `Subproject commit`); its blob
id and size are found without reading the content when the object database has them.
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

    def release(self) -> None:
        """Forget a stored blob's bytes (read again if needed); worktree bytes are kept."""
        if not self.worktree:
            self._data = None

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


def _clean(repo: pygit2.Repository, path: bytes, data: bytes) -> bytes:
    """Worktree bytes as git would store them (line-ending conversion, ident)."""
    if is_binary(data):
        return data
    try:
        filters = repo.load_filter_list(os.fsdecode(path))
    except (pygit2.GitError, UnicodeError, ValueError):
        return data
    return filters.apply_to_buffer(data) if filters is not None else data
