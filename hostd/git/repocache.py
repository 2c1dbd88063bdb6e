"""Keep recently used repositories open: a fresh open re-reads the index and refs from scratch.

A cached handle stays correct: libgit2 reads refs and HEAD from disk on every lookup, refreshes
config files and pack lists when they change, and the index is re-read here when its file
changed. A handle whose git directory disappeared, or is another folder now, is dropped. The
worktrees of one repository share one object database (its packs, their maps and the cache of
read objects), opened on the common git directory.

Only the most recently used handles stay awake, holding what libgit2 loaded for them (the
index, the objects read, the configuration). Older ones are dormant: released with `free()`,
which keeps the handle and lets libgit2 load each part again from disk when it is next used. A
dashboard asking about hundreds of worktrees in turn then holds a few loaded indexes, not
hundreds, while an answer kept from memory still needs only the handle.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from dataclasses import dataclass

import pygit2

from hostd.git.paths import Identity, identity

DEFAULT_SIZE = 512
DEFAULT_AWAKE = 32
# Bytes of index files the awake handles may hold together; loaded, an index takes a few times
# its file size.
DEFAULT_MAX_INDEX_BYTES = 64 * 2**20


@dataclass
class _Kept:
    repo: pygit2.Repository
    index_bytes: int
    folder: Identity
    awake: bool = True


class RepositoryCache:
    """An LRU of open repositories keyed by git directory (one process, one thread)."""

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        awake: int = DEFAULT_AWAKE,
        max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
    ) -> None:
        self.size = size
        self.awake = awake
        self.max_index_bytes = max_index_bytes
        self._repos: OrderedDict[str, _Kept] = OrderedDict()
        self._odbs: dict[str, tuple[Identity, pygit2.Odb]] = {}

    def open(self, git_dir: str) -> pygit2.Repository:
        kept = self._repos.pop(git_dir, None)
        folder = identity(git_dir)
        if kept is not None and folder is not None and folder == kept.folder:
            repo = kept.repo
            if not kept.awake:
                repo.free()  # whatever was loaded while it slept may be stale
                self._share_objects(repo)
            elif not repo.is_bare:
                with contextlib.suppress(pygit2.GitError, OSError):
                    repo.index.read(False)
        else:
            if kept is not None:
                kept.repo.free()
            repo = pygit2.Repository(git_dir)
            self._share_objects(repo)
        self._repos[git_dir] = _Kept(repo, _index_bytes(git_dir, repo), folder)
        self._settle()
        return repo

    def _settle(self) -> None:
        """Drop the oldest handles beyond `size`; put to sleep the oldest awake ones beyond
        `awake` handles or `max_index_bytes`. The newest handle always stays awake."""
        while len(self._repos) > self.size:
            _, oldest = self._repos.popitem(last=False)
            oldest.repo.free()
        count, index_bytes = 0, 0
        for kept in reversed(self._repos.values()):
            if not kept.awake:
                continue
            count, index_bytes = count + 1, index_bytes + kept.index_bytes
            if count > 1 and (count > self.awake or index_bytes > self.max_index_bytes):
                kept.repo.free()
                kept.awake = False

    def _share_objects(self, repo: pygit2.Repository) -> None:
        """Give a linked worktree's handle the object database of its common git directory."""
        common = _linked_common_dir(repo.path)
        if common is None:
            return
        objects = os.path.join(common, "objects")
        folder = identity(objects)
        kept = self._odbs.get(common)
        if kept is None or kept[0] != folder:
            try:
                kept = self._odbs[common] = (folder, pygit2.Odb(objects))
            except (pygit2.GitError, ValueError, OSError):
                return
        repo.set_odb(kept[1])

    def awake_count(self) -> int:
        return sum(kept.awake for kept in self._repos.values())

    def clear(self) -> None:
        for kept in self._repos.values():
            kept.repo.free()
        self._repos.clear()
        self._odbs.clear()


def _index_bytes(git_dir: str, repo: pygit2.Repository) -> int:
    if repo.is_bare:
        return 0
    try:
        return os.stat(os.path.join(git_dir, "index")).st_size
    except OSError:
        return 0


def _linked_common_dir(git_dir: str) -> str | None:
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as f:
            relative = f.read().strip()
    except OSError:
        return None
    return os.path.realpath(os.path.join(git_dir, relative)) if relative else None
