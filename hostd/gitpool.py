"""Worker processes for git queries.

pygit2 holds the GIL through whole libgit2 calls (status, index loads), so git work in threads
stalls the event loop; in worker processes it cannot. Workers are recycled after a number of
tasks, which also bounds what libgit2 and pygit2 caches and leaks can hold.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import signal
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

TASKS_PER_WORKER = 200
OBJECT_CACHE_BYTES = 64 * 2**20


def _worker_init(keep_status: bool = False, writes: bool = False) -> None:
    from hostd.lifeline import exit_with_parent

    exit_with_parent()

    import pygit2

    from hostd.git.status import keep_counts

    # Ctrl-C reaches the whole process group; the daemon decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Read queries write objects only into in-memory overlays, built from objects that exist;
    # skipping libgit2's existence check on every tree entry makes in-memory replays cheap.
    # Workers that write to repositories (commands) keep the check.
    pygit2.settings.enable_strict_object_creation(writes)
    pygit2.settings.cache_max_size(OBJECT_CACHE_BYTES)
    keep_counts(keep_status)


class _Worker:
    """One worker process, replaced after a number of tasks or when it dies."""

    def __init__(
        self,
        context: multiprocessing.context.BaseContext,
        tasks_per_worker: int,
        keep_status: bool,
        writes: bool,
    ) -> None:
        self._context = context
        self._tasks_per_worker = tasks_per_worker
        self._initargs = (keep_status, writes)
        self.executor = self._new_executor()
        self.submitted = 0
        self.in_flight = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        # Not max_tasks_per_child: on Python 3.11 the pool stops spawning after a worker retires.
        return ProcessPoolExecutor(
            1,
            mp_context=self._context,
            initializer=_worker_init,
            initargs=self._initargs,
        )

    def replace(self, cancel: bool) -> None:
        """Start a fresh process; the old one finishes its queue (unless cancelled) and exits."""
        old, self.executor, self.submitted = self.executor, self._new_executor(), 0
        old.shutdown(wait=False, cancel_futures=cancel)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.submitted >= self._tasks_per_worker:
            self.replace(cancel=False)
        self.submitted += 1
        self.in_flight += 1
        executor = self.executor
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, functools.partial(fn, *args))
        except BrokenProcessPool:
            if executor is self.executor:
                self.replace(cancel=True)
            raise
        finally:
            self.in_flight -= 1


class GitPool:
    """Worker processes with affinity: queries on one repository go to the same worker (whose
    open repositories are then warm) unless it is busy and another worker is idle."""

    def __init__(
        self,
        workers: int,
        tasks_per_worker: int = TASKS_PER_WORKER,
        keep_status: bool = False,
        writes: bool = False,
    ) -> None:
        """`keep_status`: workers keep status counts until inotify reports a change.
        `writes`: the workers write to repositories (commands), so libgit2 checks that every
        object a new tree or commit names exists."""
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["hostd.queries"])
        self._workers = [
            _Worker(context, tasks_per_worker, keep_status, writes) for _ in range(workers)
        ]

    def _pick(self, key: str) -> _Worker:
        preferred = self._workers[zlib.crc32(key.encode()) % len(self._workers)]
        if preferred.in_flight == 0:
            return preferred
        idlest = min(self._workers, key=lambda worker: worker.in_flight)
        return idlest if idlest.in_flight < preferred.in_flight else preferred

    async def run(self, fn: Callable[..., T], *args: Any, key: str = "") -> T:
        """Run `fn(*args)` in a worker; `key` (e.g. the repository path) chooses the worker."""
        return await self._pick(key).run(fn, *args)

    def shutdown(self) -> None:
        for worker in self._workers:
            worker.executor.shutdown(wait=False, cancel_futures=True)
