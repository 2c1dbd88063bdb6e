"""Keep recently used repositories open: a fresh open re-reads the index and refs from scratch.

A cached handle stays correct: libgit2 reads refs and HEAD from disk on every lookup, refreshes
config files and pack lists when they change, and the index is re-read here when its file
changed. A handle whose git directory disappeared is dropped.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict

import pygit2

DEFAULT_SIZE = 32


class RepositoryCache:
    """An LRU of open repositories keyed by git directory (one process, one thread)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._repos: OrderedDict[str, pygit2.Repository] = OrderedDict()

    def open(self, git_dir: str) -> pygit2.Repository:
        repo = self._repos.pop(git_dir, None)
        if repo is not None and os.path.isdir(git_dir):
            if not repo.is_bare:
                with contextlib.suppress(pygit2.GitError, OSError):
                    repo.index.read(False)
        else:
            repo = pygit2.Repository(git_dir)
        self._repos[git_dir] = repo
        while len(self._repos) > self.size:
            _, oldest = self._repos.popitem(last=False)
            oldest.free()
        return repo

    def clear(self) -> None:
        for repo in self._repos.values():
            repo.free()
        self._repos.clear()
