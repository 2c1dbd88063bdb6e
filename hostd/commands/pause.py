"""A test-only pause point, so tests can `kill -9` hostd at a named phase of a command.

Honoured only with HOSTD_TEST_HANDLERS=1: when HOSTD_TEST_PAUSE names the phase reached, the
process (a git worker or the daemon) writes the phase to HOSTD_TEST_PAUSE_FILE and waits there
until it is killed. Phases are named `<command>:<phase>`, e.g. `cleanup:moved`.
"""

from __future__ import annotations

import os
import time

PAUSE_ENV = "HOSTD_TEST_PAUSE"
PAUSE_FILE_ENV = "HOSTD_TEST_PAUSE_FILE"
_ENABLED_ENV = "HOSTD_TEST_HANDLERS"


def pause_point(phase: str) -> None:
    """Block forever at `phase` when a test asked for it; return at once otherwise."""
    if os.environ.get(_ENABLED_ENV) != "1" or os.environ.get(PAUSE_ENV) != phase:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        with open(marker, "w") as fh:
            fh.write(phase)
    while True:
        time.sleep(3600)


class Phases:
    """Pause points of one command: `Phases("cleanup")("moved")` pauses at `cleanup:moved`.
    Picklable, so it can be handed to a git worker."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __call__(self, phase: str) -> None:
        pause_point(f"{self.command}:{phase}")
