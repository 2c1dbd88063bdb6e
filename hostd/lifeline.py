"""A worker process ends when the process that started it is gone, however that one ended.

Forkserver children cannot use the kernel's parent-death signal: their parent is the forkserver,
which itself lives as long as any of them does. multiprocessing gives each child a sentinel that
becomes readable when the starting process's end of it closes, which the kernel does at its exit.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.process import BaseProcess


def exit_with_parent() -> None:
    """Call in a multiprocessing child: it exits as soon as its starting process is gone."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_after, args=(parent,), name="hostd-lifeline", daemon=True
        ).start()


def _exit_after(parent: BaseProcess) -> None:
    parent.join()
    os._exit(0)
