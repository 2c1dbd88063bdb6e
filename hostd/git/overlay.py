"""A second handle on a repository whose object writes stay in process memory.

Read endpoints predict merges by writing trees and commits; none of that may reach disk. The
overlay's object database has a single backend, written in Python: writes go to a dict, reads
try the dict and then the repository's own object database (loose, packs, alternates).

The disk database is not attached as an alternate on purpose: libgit2 "freshens" an object
that already exists before writing it, and that touches the mtime of loose objects and packs
in every backend, alternates included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pygit2

_TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
_strict = True


def set_strict_object_creation(on: bool) -> None:
    """libgit2's check, on every tree and commit written, that the objects it names exist: kept
    for writes that reach a repository's disk. Writes into an overlay skip it: they stay in
    memory and are built from objects read from the repository."""
    global _strict
    _strict = on
    pygit2.settings.enable_strict_object_creation(on)


class MemoryBackend(pygit2.OdbBackend):
    """Objects written through it live in `objects`; everything else is read from `disk`."""

    def __init__(self, disk: pygit2.Odb) -> None:
        super().__init__()
        self.disk = disk
        self.objects: dict[pygit2.Oid, tuple[int, bytes]] = {}

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        found = self.objects.get(oid)
        if found is not None:
            return found
        return self.disk.read(oid)

    def read_prefix_cb(self, prefix: str) -> tuple[int, bytes, pygit2.Oid]:
        if len(prefix) == pygit2.GIT_OID_HEXSZ:
            oid = pygit2.Oid(hex=prefix)
            kind, data = self.read_cb(oid)
            return kind, data, oid
        matches = [oid for oid in self.objects if str(oid).startswith(prefix)]
        if len(matches) > 1:
            raise ValueError(f"ambiguous object prefix {prefix}")
        if matches:
            kind, data = self.objects[matches[0]]
            return kind, data, matches[0]
        kind, data = self.disk.read(prefix)
        return kind, data, _object_id(kind, data)

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        found = self.objects.get(oid)
        if found is not None:
            return found[0], len(found[1])
        return self.disk.read_header(oid)

    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self.objects[oid] = (kind, data)

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return oid in self.objects or oid in self.disk

    def exists_prefix_cb(self, prefix: str) -> pygit2.Oid:
        return self.read_prefix_cb(prefix)[2]

    def refresh_cb(self) -> None:
        pass


def _object_id(kind: int, data: bytes) -> pygit2.Oid:
    header = _TYPE_NAMES[kind] + b" " + str(len(data)).encode() + b"\0"
    return pygit2.Oid(raw=hashlib.sha1(header + data).digest())


@contextmanager
def overlay_repository(repo: pygit2.Repository) -> Iterator[pygit2.Repository]:
    """A fresh Repository for the same git directory whose object writes stay in memory.

    Refs, index and working tree are the real ones: callers must not write those through it.
    On exit the written objects are dropped and the files the overlay opened are closed.
    """
    overlay = pygit2.Repository(repo.path)
    backend = MemoryBackend(overlay.odb)
    odb = pygit2.Odb()
    odb.add_backend(backend, 1)
    overlay.set_odb(odb)
    pygit2.settings.enable_strict_object_creation(False)
    try:
        yield overlay
    finally:
        pygit2.settings.enable_strict_object_creation(_strict)
        backend.objects.clear()
        overlay.free()
