"""A test-only pause point, so tests can `kill -9` hostd at a named phase of a command.

Honoured only with HOSTD_TEST_HANDLERS=1: when HOSTD_TEST_PAUSE names the phase reached, the
process (a git worker or the daemon) writes `<phase> <pid>` to HOSTD_TEST_PAUSE_FILE and waits
there until it is killed, or until its parent process is gone (a git worker outlives a killed
daemon only that long). Phases are named `<command>:<phase>`, e.g. `cleanup:moved`.
"""

from __future__ import annotations

import os
import time

from hostd.workerguard import owner_alive

PAUSE_ENV = "HOSTD_TEST_PAUSE"
PAUSE_FILE_ENV = "HOSTD_TEST_PAUSE_FILE"
_ENABLED_ENV = "HOSTD_TEST_HANDLERS"


def pause_point(phase: str) -> None:
    """Block forever at `phase` when a test asked for it; return at once otherwise."""
    if os.environ.get(_ENABLED_ENV) != "1" or os.environ.get(PAUSE_ENV) != phase:
        return
    parent = os.getppid()
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        with open(marker + ".tmp", "w") as fh:
            fh.write(f"{phase} {os.getpid()}")
        os.replace(marker + ".tmp", marker)
    while os.getppid() == parent and owner_alive():
        time.sleep(0.05)
    os._exit(1)


class Phases:
    """Pause points of one command: `Phases("cleanup")("moved")` pauses at `cleanup:moved`.
    Picklable, so it can be handed to a git worker."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __call__(self, phase: str) -> None:
        pause_point(f"{self.command}:{phase}")
