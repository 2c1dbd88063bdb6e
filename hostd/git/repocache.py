"""Keep recently used repositories open: a fresh open re-reads the index and refs from scratch.

A cached handle stays correct: libgit2 reads refs and HEAD from disk on every lookup, refreshes
config files and pack lists when they change, and the index is re-read here when its file
changed. A handle whose git directory disappeared is dropped. The worktrees of one repository
share one object database (its packs, their maps and the cache of read objects), opened on the
common git directory.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict

import pygit2

DEFAULT_SIZE = 512
# Index entries all kept handles may hold together (an entry takes about 100 bytes).
DEFAULT_MAX_ENTRIES = 1_000_000


class RepositoryCache:
    """An LRU of open repositories keyed by git directory (one process, one thread)."""

    def __init__(self, size: int = DEFAULT_SIZE, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.size = size
        self.max_entries = max_entries
        self._repos: OrderedDict[str, tuple[pygit2.Repository, int]] = OrderedDict()
        self._entries = 0
        self._odbs: dict[str, pygit2.Odb] = {}

    def open(self, git_dir: str) -> pygit2.Repository:
        kept = self._pop(git_dir)
        if kept is not None and os.path.isdir(git_dir):
            repo = kept
            if not repo.is_bare:
                with contextlib.suppress(pygit2.GitError, OSError):
                    repo.index.read(False)
        else:
            repo = pygit2.Repository(git_dir)
            self._share_objects(repo)
        entries = _index_entries(repo)
        self._repos[git_dir] = (repo, entries)
        self._entries += entries
        while len(self._repos) > self.size or (
            self._entries > self.max_entries and len(self._repos) > 1
        ):
            oldest = next(iter(self._repos))
            self._pop(oldest).free()  # type: ignore[union-attr]
        return repo

    def _pop(self, git_dir: str) -> pygit2.Repository | None:
        kept = self._repos.pop(git_dir, None)
        if kept is None:
            return None
        self._entries -= kept[1]
        return kept[0]

    def _share_objects(self, repo: pygit2.Repository) -> None:
        """Give a linked worktree's handle the object database of its common git directory."""
        common = _linked_common_dir(repo.path)
        if common is None:
            return
        odb = self._odbs.get(common)
        if odb is None:
            objects = os.path.join(common, "objects")
            try:
                odb = pygit2.Odb(objects)
            except (pygit2.GitError, ValueError, OSError):
                return
            self._odbs[common] = odb
        repo.set_odb(odb)

    def clear(self) -> None:
        for repo, _ in self._repos.values():
            repo.free()
        self._repos.clear()
        self._odbs.clear()
        self._entries = 0


def _index_entries(repo: pygit2.Repository) -> int:
    if repo.is_bare:
        return 0
    try:
        return len(repo.index)
    except (pygit2.GitError, OSError):
        return 0


def _linked_common_dir(git_dir: str) -> str | None:
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as f:
            relative = f.read().strip()
    except OSError:
        return None
    return os.path.realpath(os.path.join(git_dir, relative)) if relative else None
