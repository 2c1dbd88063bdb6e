"""Save a worktree's uncommitted state as a commit under a ref, as `git stash -u` keeps it:
the snapshot's tree is the working tree (untracked files included, ignored ones not), its
parents HEAD and a commit of the index."""

from __future__ import annotations

import os
import re
import stat

import pygit2
from pygit2.enums import FileMode, FileStatus

SNAPSHOT_PREFIX = "refs/hostd/snapshots/"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

_GONE = FileStatus.WT_DELETED
_CHANGED = FileStatus.WT_NEW | FileStatus.WT_MODIFIED | FileStatus.WT_TYPECHANGE


def snapshot_ref_name(label: str, epoch_ms: int) -> str:
    """`refs/hostd/snapshots/<label>-<epoch ms>`, the label reduced to safe characters."""
    safe = _UNSAFE.sub("-", label).strip(".-") or "worktree"
    return f"{SNAPSHOT_PREFIX}{safe[:100]}-{epoch_ms}"


def parse_signature(identity: str) -> pygit2.Signature:
    """`Name <email>` as a signature (now)."""
    match = re.fullmatch(r"\s*(.*?)\s*<([^<>]*)>\s*", identity)
    if match is None or not match.group(1):
        return pygit2.Signature("hostd", "hostd@localhost")
    return pygit2.Signature(match.group(1), match.group(2))


def _blob_entry(repo: pygit2.Repository, workdir: str, path: str) -> pygit2.IndexEntry | None:
    full = os.path.join(workdir, path)
    info = os.lstat(full)
    if stat.S_ISLNK(info.st_mode):
        oid = repo.create_blob(os.fsencode(os.readlink(full)))
        return pygit2.IndexEntry(path, oid, FileMode.LINK)
    if not stat.S_ISREG(info.st_mode):
        return None
    mode = FileMode.BLOB_EXECUTABLE if info.st_mode & 0o100 else FileMode.BLOB
    return pygit2.IndexEntry(path, repo.create_blob_fromdisk(full), mode)


def save_snapshot(
    repo: pygit2.Repository, ref_name: str, message: str, identity: str
) -> pygit2.Oid:
    """Commit the uncommitted state of `repo`'s worktree and point `ref_name` at it.

    Refused (ValueError) with unmerged paths: there is no single index state to keep.
    """
    index = repo.index
    index.read(False)
    if index.conflicts is not None:
        raise ValueError("cannot snapshot a worktree with unmerged paths")
    signature = parse_signature(identity)
    parents = [] if repo.head_is_unborn else [repo.head.target]
    index_tree = index.write_tree()
    index_commit = repo.create_commit(
        None, signature, signature, f"index of {message}", index_tree, parents
    )
    files = pygit2.Index()
    files.read_tree(repo[index_tree])
    workdir = repo.workdir
    for path, flags in repo.status(untracked_files="all", ignored=False).items():
        if flags & _GONE or (flags & _CHANGED and not os.path.lexists(os.path.join(workdir, path))):
            if path in files:
                files.remove(path)
        elif flags & _CHANGED:
            entry = _blob_entry(repo, workdir, path)
            if entry is not None:
                files.add(entry)
    tree = files.write_tree(repo)
    commit = repo.create_commit(None, signature, signature, message, tree, [*parents, index_commit])
    repo.references.create(ref_name, commit)
    return commit
