"""The link changes of an upgrade: switch to a verified version, roll back, finish the trial.

All synchronous file work; callers run it off the event loop.
"""

from __future__ import annotations

import logging
import time

from hostd.upgrade import record as rec
from hostd.upgrade.guard import end_trial, write_trial
from hostd.upgrade.layout import CURRENT, PREVIOUS, Layout
from hostd.upgrade.stage import complete

log = logging.getLogger("hostd.upgrade")


def switch(layout: Layout, state_dir: str, record: rec.Record, deadline_s: float) -> rec.Record:
    """Make `record.to` current and `record.previous` previous; the trial starts.

    The record and the guard's trial file are written before `current` changes, so a crash at
    any point leaves either the old version current or a trial both counters know about."""
    complete(layout, record.to)
    layout.point(PREVIOUS, record.previous)
    deadline = time.time() + deadline_s
    record.phase, record.attempts, record.deadline = rec.TRIAL, 0, int(deadline * 1000)
    record.reason, record.reported = "", False
    rec.save(state_dir, record)
    write_trial(layout, record.to, record.previous, int(deadline))
    layout.point(CURRENT, record.to)
    log.info("upgrade: current is now %s (previous %s)", record.to, record.previous)
    return record


def roll_back(
    layout: Layout, state_dir: str, record: rec.Record, reason: str, cooldown_s: float
) -> rec.Record:
    """Point `current` back at the version the trial came from; refuse the target a while."""
    if layout.linked(CURRENT) != record.previous:
        layout.point(CURRENT, record.previous)
    record.phase, record.reason, record.reported = rec.ROLLED_BACK, reason, False
    record.cooldowns[record.to] = rec.now_ms() + int(cooldown_s * 1000)
    rec.save(state_dir, record)
    end_trial(layout)
    log.error("upgrade: rolled back from %s to %s: %s", record.to, record.previous, reason)
    return record


def finish(layout: Layout, state_dir: str, record: rec.Record) -> list[str]:
    """The new version is healthy: end the trial, keep only `current` and `previous`."""
    record.phase = rec.OK
    rec.save(state_dir, record)
    end_trial(layout)
    return remove_others(layout)


def remove_others(layout: Layout) -> list[str]:
    keep = {layout.linked(CURRENT), layout.linked(PREVIOUS)}
    removed = [v for v in layout.installed() + layout.incomplete() if v not in keep]
    for version in removed:
        layout.remove_version(version)
    return removed
