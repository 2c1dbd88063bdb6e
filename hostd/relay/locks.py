"""Who may run when: one command per repository (process lock plus a file lock in the real
common git dir, so two hostd processes cannot interleave), at most N at once, upgrades alone."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator

from hostd.git.discover import common_dir, find_repository

log = logging.getLogger("hostd.commands")

LOCK_FILE = "hostd.lock"
_FILE_LOCK_POLL = (0.05, 0.5)
_WAIT_NOTICE_AFTER = 5.0


def repository_key(paths: list[str], base_dir: str) -> str | None:
    """The real common git dir of the first path that lies in a repository under base_dir."""
    for path in paths:
        repo = find_repository(path, base_dir) if os.path.isdir(path) else None
        if repo is not None:
            return common_dir(repo)
    return None


class RepositoryLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str | None) -> AsyncIterator[None]:
        """Waiters on one key are served first come, first served."""
        if key is None:
            yield
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            fd = await _flock(os.path.join(key, LOCK_FILE))
            try:
                yield
            finally:
                if fd is not None:
                    os.close(fd)


async def _flock(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        log.warning("cannot open lock file %s (%s); locking within this process only", path, exc)
        return None
    delay, waited, noticed = _FILE_LOCK_POLL[0], 0.0, False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if waited >= _WAIT_NOTICE_AFTER and not noticed:
                    noticed = True
                    log.warning("waiting for %s, held by another process", path)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, _FILE_LOCK_POLL[1])
    except BaseException:
        os.close(fd)
        raise


class Slots:
    """At most `limit` commands at once; an exclusive holder runs with nothing else, and once it
    waits no new command starts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, exclusive: bool = False) -> AsyncIterator[None]:
        async with self._cond:
            if exclusive:
                self._exclusive_waiting += 1
                try:
                    await self._cond.wait_for(lambda: self._used == 0 and not self._exclusive)
                finally:
                    self._exclusive_waiting -= 1
                    self._cond.notify_all()
                self._exclusive = True
            else:
                await self._cond.wait_for(
                    lambda: (
                        not self._exclusive
                        and not self._exclusive_waiting
                        and self._used < self.limit
                    )
                )
                self._used += 1
        try:
            yield
        finally:
            async with self._cond:
                if exclusive:
                    self._exclusive = False
                else:
                    self._used -= 1
                self._cond.notify_all()
