"""Child processes end when the process that started them is gone, however that one ended.

Git workers: forkserver children cannot use the kernel's parent-death signal, since their parent
is the forkserver, which itself lives as long as any of them does. multiprocessing gives each
child a sentinel that becomes readable when the starting process's end of it closes, which the
kernel does at its exit. A task run through `guarded` is finished first, so a reference
transaction or an object write of a writing worker is never cut in the middle.
hostd under `hostd demo`: the demo names itself in HOSTD_PARENT_PID and hostd asks the kernel
for a stop signal when it goes.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

T = TypeVar("T")
_busy = threading.Lock()
PARENT_ENV = "HOSTD_PARENT_PID"
_PR_SET_PDEATHSIG = 1


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


def signal_when_parent_exits(sig: signal.Signals, env: Mapping[str, str] = os.environ) -> bool:
    """When `env` names this process's parent, the kernel sends `sig` once that parent exits.
    False if the named parent is already gone."""
    expected = env.get(PARENT_ENV)
    if not expected:
        return True
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    return str(os.getppid()) == expected
