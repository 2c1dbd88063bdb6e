"""A fast proof that a worktree has nothing to show in its status, on several threads.

libgit2's status compares the working tree with the index one file after another; git's own
status spreads the file checks over threads (`core.preloadIndex`). A worktree about to be
removed or judged is usually clean, and proving that costs most on large trees. Here HEAD is
compared with the index, and the working tree with the index in groups of top-level entries,
each group on its own thread (libgit2 runs without the GIL; each thread has its own repository
handle). Only a proof counts: any difference, conflict, unborn HEAD or name that cannot be
passed to libgit2 answers False, and the caller counts with the full status.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pygit2
from pygit2 import Diff
from pygit2.enums import DiffOption

try:  # pygit2's C bindings: the diff call with a pathspec that Index.diff_to_workdir lacks
    from pygit2.ffi import C, ffi
    from pygit2.utils import StrArray
except ImportError:  # another pygit2 layout: every worktree gets the full status
    C = ffi = StrArray = None

from hostd.git.refs import head_tree

# Below this size of index file (about 4 000 entries) one status on one thread is as fast.
MIN_INDEX_BYTES = 400_000
THREADS = 2


def proven_clean(
    repo: pygit2.Repository, untracked: bool, min_index_bytes: int = MIN_INDEX_BYTES
) -> bool:
    """True only when `git status` would list nothing: no staged, unstaged or unmerged change,
    and (with `untracked`) no untracked file that is not ignored. False also for small
    worktrees (index file under `min_index_bytes`), where the full status is as fast."""
    workdir = repo.workdir
    if C is None or workdir is None or repo.head_is_unborn:
        return False
    try:
        if os.stat(os.path.join(repo.path, "index")).st_size < min_index_bytes:
            return False
        tree = head_tree(repo)
        if tree is None:
            return False
        names = set(os.listdir(workdir)) | {entry.name for entry in tree}
    except (pygit2.GitError, OSError, ValueError):
        return False
    names.discard(".git")
    ordered = sorted(names)
    groups = [ordered[k::THREADS] for k in range(THREADS)]
    head = tree.id

    def check(k: int) -> bool:
        return _group_clean(repo.path, groups[k], untracked, head if k == 0 else None)

    with ThreadPoolExecutor(THREADS) as pool:
        return all(list(pool.map(check, range(THREADS))))


def _group_clean(git_dir: str, names: list[str], untracked: bool, head: pygit2.Oid | None) -> bool:
    """The working tree matches the index under these top-level names; with `head`, the index
    also matches that tree and holds no conflict."""
    flags = DiffOption.DISABLE_PATHSPEC_MATCH
    if untracked:
        flags |= DiffOption.INCLUDE_UNTRACKED
    try:
        repo = pygit2.Repository(git_dir)
        try:
            index = repo.index
            if head is not None and (
                index.conflicts is not None or len(index.diff_to_tree(repo[head])) > 0
            ):
                return False
            if not names:
                return True
            options = ffi.new("git_diff_options *")
            if C.git_diff_options_init(options, 1) != 0:
                return False
            options.flags = int(flags)
            with StrArray(names) as pathspec:
                pathspec.assign_to(options.pathspec)
                out = ffi.new("git_diff **")
                if C.git_diff_index_to_workdir(out, repo._repo, index._index, options) != 0:
                    return False
            return len(Diff.from_c(bytes(ffi.buffer(out)[:]), repo)) == 0
        finally:
            repo.free()
    except (pygit2.GitError, OSError, ValueError, UnicodeError, AttributeError, TypeError):
        return False
