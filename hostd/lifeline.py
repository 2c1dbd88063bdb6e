"""A worker process ends when the process that started it is gone, however that one ended.

Forkserver children cannot use the kernel's parent-death signal: their parent is the forkserver,
which itself lives as long as any of them does. multiprocessing gives each child a sentinel that
becomes readable when the starting process's end of it closes, which the kernel does at its exit.
A task run through `guarded` is finished first, so a reference transaction or an object write of
a writing worker is never cut in the middle.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

T = TypeVar("T")
_busy = threading.Lock()


def exit_with_parent() -> None:
    """Call in a multiprocessing child: it exits as soon as its starting process is gone."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_after, args=(parent,), name="hostd-lifeline", daemon=True
        ).start()


def parent_alive() -> bool:
    """False once the starting process is gone (always True outside multiprocessing children)."""
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)`; a gone parent ends this process only after it returns."""
    with _busy:
        return fn(*args)


def _exit_after(parent: BaseProcess) -> None:
    parent.join()
    with _busy:
        os._exit(0)
