"""Compare-and-swap of a reference inside one libgit2 reference transaction.

The reference is locked (git's own `<ref>.lock` file, so the git CLI waits or fails too), its
value read under the lock, and only if it is the expected one the new value is written. Nothing is
written otherwise.
"""

from __future__ import annotations

import sys
from typing import Any

import pygit2
from pygit2.ffi import ffi


class _Moved(Exception):
    """The reference is not at the expected value: leave the transaction without committing."""


def _reflog_signature(signature: pygit2.Signature) -> Any:
    """The signature as the transaction can pass it to libgit2: pygit2 hands C the Signature's
    `_pointer`, which is the pointer's bytes rather than a pointer."""
    raw = signature._pointer
    if not isinstance(raw, bytes):
        return signature

    class Pointer:
        _pointer = ffi.cast("git_signature *", int.from_bytes(raw, sys.byteorder))
        keep = signature

    return Pointer()


def ref_target(repo: pygit2.Repository, refname: str) -> pygit2.Oid | None:
    """The commit a direct reference names, read from disk; None when it does not exist."""
    try:
        ref = repo.references.get(refname)
    except (pygit2.GitError, ValueError):
        return None
    if ref is None:
        return None
    target = ref.target
    return target if isinstance(target, pygit2.Oid) else None


def compare_and_swap(
    repo: pygit2.Repository,
    refname: str,
    expected: pygit2.Oid | None,
    new: pygit2.Oid | None,
    committer: pygit2.Signature,
    message: str,
) -> bool:
    """Move `refname` from `expected` to `new` (None: absent / delete). False when the reference
    is elsewhere or locked by another writer; then nothing was written."""
    try:
        with repo.transaction() as txn:
            txn.lock_ref(refname)
            if ref_target(repo, refname) != expected:
                raise _Moved
            if new is None:
                txn.remove(refname)
            else:
                txn.set_target(refname, new, _reflog_signature(committer), message)
    except _Moved:
        return False
    except pygit2.GitError as exc:
        if "lock" in str(exc).lower():
            return False
        raise
    return True
