"""Start-up bookkeeping of a managed install and the trial of a freshly switched version.

At start (before anything else): staged versions a crash left behind are removed; a new version
on trial counts its start and rolls back past MAX_ATTEMPTS starts or the deadline; the old
version, started again after a rollback, learns why and reports the command `failed`.
While on trial, `watch` waits for registration and `healthy_after` of serving, then ends the
trial (older versions removed) or, at the deadline, rolls back and exits 75.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from hostd import SEMVER
from hostd.config import Config
from hostd.upgrade import record as rec
from hostd.upgrade.guard import MAX_ATTEMPTS, end_trial, guard_verdict
from hostd.upgrade.layout import CURRENT, PREVIOUS, Busy, Layout
from hostd.upgrade.switch import finish, roll_back

log = logging.getLogger("hostd.upgrade")

EXIT_RESTART = 75
HEALTH_TIMEOUT = 5.0


@dataclass(frozen=True)
class Boot:
    exit_code: int | None = None
    """Set when this start rolled back: exit at once so the supervisor starts `current`."""
    trial: rec.Record | None = None
    """This version is on trial: run `watch`."""
    report: tuple[str, str] | None = None
    """(command id, error) the old version reports after a rollback."""


def on_start(config: Config, layout: Layout, version: str = SEMVER) -> Boot:
    state_dir = config.state_dir
    record = rec.load(state_dir)
    _clean_staging(layout, state_dir, record)
    if record.phase == rec.TRIAL:
        verdict = guard_verdict(layout)
        if version == record.to and verdict is None:
            return _count_attempt(config, layout, record)
        if version == record.previous:
            reason = verdict or f"{version} was started again during the trial of {record.to}"
            roll_back(layout, state_dir, record, reason, config.upgrade.cooldown)
        else:
            record.phase, record.reason = rec.FAILED, f"superseded by {version}"
            rec.save(state_dir, record)
            end_trial(layout)
    if record.phase == rec.ROLLED_BACK and not record.reported and version == record.previous:
        if record.to not in (layout.linked(CURRENT), layout.linked(PREVIOUS)):
            layout.remove_version(record.to)
        return Boot(report=(record.command_id, f"rolled back: {record.reason}"))
    return Boot()


def _clean_staging(layout: Layout, state_dir: str, record: rec.Record) -> None:
    try:
        with layout.locked():
            removed = layout.remove_incomplete()
            if record.phase == rec.INSTALLING:
                record.phase = rec.FAILED
                record.reason = "interrupted: hostd stopped while installing"
                rec.save(state_dir, record)
    except Busy:
        return
    except OSError as exc:
        log.warning("upgrade: cannot check %s for unfinished installs: %s", layout.root, exc)
        return
    if removed:
        log.warning("upgrade: removed unfinished install(s): %s", ", ".join(removed))


def _count_attempt(config: Config, layout: Layout, record: rec.Record) -> Boot:
    record.attempts += 1
    reason = ""
    if record.attempts > MAX_ATTEMPTS:
        reason = f"{record.to} did not come up in {MAX_ATTEMPTS} starts"
    elif time.time() * 1000 > record.deadline:
        reason = f"{record.to} was not healthy before the trial deadline"
    if reason:
        roll_back(layout, config.state_dir, record, reason, config.upgrade.cooldown)
        return Boot(exit_code=EXIT_RESTART)
    rec.save(config.state_dir, record)
    log.info("upgrade: %s on trial, start %d of %d", record.to, record.attempts, MAX_ATTEMPTS)
    return Boot(trial=record)


def mark_reported(state_dir: str) -> None:
    record = rec.load(state_dir)
    record.reported = True
    rec.save(state_dir, record)


async def watch(
    config: Config,
    layout: Layout,
    record: rec.Record,
    registered: asyncio.Event,
    request_exit: Callable[[int], None],
) -> None:
    """End the trial when registered and healthy for `healthy_after`; roll back at the deadline."""
    remaining = max(0.0, record.deadline / 1000 - time.time())
    try:
        async with asyncio.timeout(remaining):
            await registered.wait()
            await asyncio.sleep(config.upgrade.healthy_after)
            await _until_healthy(config)
    except TimeoutError:
        reason = f"{record.to} was not healthy before the trial deadline"
        await asyncio.to_thread(
            roll_back, layout, config.state_dir, record, reason, config.upgrade.cooldown
        )
        request_exit(EXIT_RESTART)
        return
    removed = await asyncio.to_thread(_finish, config, layout, record)
    log.info("upgrade to %s done; removed old version(s): %s", record.to, removed or "none")


def _finish(config: Config, layout: Layout, record: rec.Record) -> list[str]:
    try:
        with layout.locked():
            return finish(layout, config.state_dir, record)
    except Busy:
        record.phase = rec.OK
        rec.save(config.state_dir, record)
        end_trial(layout)
        return []


async def _until_healthy(config: Config) -> None:
    host = config.api.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host if ':' not in host else f'[{host}]'}:{config.api.port}/api/health"
    timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.debug("upgrade trial: health check failed: %s", exc)
            await asyncio.sleep(1.0)
