"""Git workers end with the daemon that owns them.

Workers are children of multiprocessing's fork server, which outlives a daemon killed with
SIGKILL; its workers would then live on, holding the daemon's pipes and repositories open. A
watcher thread in each worker notices the owner is gone and exits, but never in the middle of
a task: a task holds the guard, so a reference transaction or an object write always finishes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
POLL_S = 0.5
_busy = threading.Lock()


def _alive(pid: int, started: float) -> bool:
    try:
        return psutil.Process(pid).create_time() == started
    except psutil.Error:
        return False


_owner: tuple[int, float] | None = None


def owner_alive() -> bool:
    """False once the daemon that owns this worker is gone (always True outside workers)."""
    return _owner is None or _alive(*_owner)


def exit_with_owner(owner: int) -> None:
    """Start the watcher of this worker: exit once process `owner` is gone."""
    try:
        started = psutil.Process(owner).create_time()
    except psutil.Error:
        os._exit(0)
    global _owner
    _owner = (owner, started)

    def watch() -> None:
        while _alive(owner, started):
            time.sleep(POLL_S)
        with _busy:
            os._exit(0)

    threading.Thread(target=watch, name="hostd-owner-watch", daemon=True).start()


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Run one task of the worker; the watcher waits for it."""
    with _busy:
        return fn(*args)
