"""Log a recurring problem without flooding: when it starts or changes, as a reminder every hour
while it lasts, and once when it ends (with its duration)."""

from __future__ import annotations

import logging
import time

REMIND_EVERY = 3600.0


def describe_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


class QuietLog:
    """A problem that changes its message is logged again, up to `MAX_CHANGES` times per episode."""

    MAX_CHANGES = 10

    def __init__(self, logger: logging.Logger, what: str, remind_every: float = REMIND_EVERY):
        self.logger = logger
        self.what = what
        self.remind_every = remind_every
        self.since: float | None = None
        self._reminded = 0.0
        self._count = 0
        self._last = ""
        self._changes = 0

    def problem(self, detail: object, kind: str | None = None) -> None:
        """`kind` says when the problem changed (default: the detail's text)."""
        now = time.monotonic()
        text = str(detail)
        kind = text if kind is None else kind
        self._count += 1
        if self.since is None:
            self.since = self._reminded = now
            self._last, self._changes = kind, 0
            self.logger.warning("%s: %s", self.what, text)
        elif now - self._reminded >= self.remind_every:
            self._reminded, self._last = now, kind
            self.logger.warning(
                "%s (%d times over %s): %s",
                self.what,
                self._count,
                describe_duration(now - self.since),
                text,
            )
        elif kind != self._last and self._changes < self.MAX_CHANGES:
            self._last = kind
            self._changes += 1
            self.logger.warning("%s: %s", self.what, text)
        else:
            self.logger.debug("%s: %s", self.what, text)

    def resolved(self) -> None:
        if self.since is None:
            return
        self.logger.info(
            "%s: resolved after %s (%d times)",
            self.what,
            describe_duration(time.monotonic() - self.since),
            self._count,
        )
        self.since = None
        self._count = 0
