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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

TASKS_PER_WORKER = 200


def _worker_init() -> None:
    import pygit2

    # Ctrl-C reaches the whole process group; the daemon decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Read queries write objects only into in-memory overlays, built from objects that exist;
    # skipping libgit2's existence check on every tree entry makes in-memory replays cheap.
    pygit2.settings.enable_strict_object_creation(False)


class GitPool:
    """A process pool that replaces itself when a worker dies (a libgit2 crash ends one request)."""

    def __init__(self, workers: int, tasks_per_worker: int = TASKS_PER_WORKER) -> None:
        self.workers = workers
        self._tasks_per_pool = workers * tasks_per_worker
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["hostd.queries"])
        self._executor = self._new_executor()
        self._submitted = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        # Not max_tasks_per_child: on Python 3.11 the pool stops spawning after a worker retires.
        return ProcessPoolExecutor(self.workers, mp_context=self._context, initializer=_worker_init)

    def _replace(self, cancel: bool) -> None:
        """Start a fresh pool; the old one finishes its queue (unless cancelled) and exits."""
        old, self._executor, self._submitted = self._executor, self._new_executor(), 0
        old.shutdown(wait=False, cancel_futures=cancel)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._submitted >= self._tasks_per_pool:
            self._replace(cancel=False)
        self._submitted += 1
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args))
        except BrokenProcessPool:
            if executor is self._executor:
                self._replace(cancel=True)
            raise

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
