"""The daemon's start-up and shutdown order.

Start: journal, API, `READY=1`, then registration/heartbeat and the command loop.
Stop (SIGTERM, SIGINT, SIGHUP or an exit request): `STOPPING=1`, stop polling, drain running
commands while still heartbeating, stop the heartbeat, close the API. A second signal or SIGQUIT
exits at once with 128 + the signal number; the git worker processes end with hostd either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Coroutine, Mapping
from typing import Any

from aiohttp import web

from hostd import SEMVER
from hostd.api import create_app
from hostd.api.handlers import CAPABILITIES
from hostd.api.server import (
    BACKLOG,
    ConnectionLimits,
    GuardedRunner,
    handle_resource_exhaustion,
    raise_open_file_limit,
)
from hostd.commands import build_registry
from hostd.commands.upgrade import UPGRADE
from hostd.config import Config
from hostd.gates.sweep import sweep as sweep_gates
from hostd.gitpool import GitPool
from hostd.health import LinkStatus, NoRelay
from hostd.lifeline import signal_when_parent_exits
from hostd.metrics import Metrics
from hostd.refresher import UpstreamRefresher
from hostd.relay.client import RelayClient
from hostd.relay.identity import Identity
from hostd.relay.journal import FAILED, Journal, JournalError
from hostd.relay.link import Backoff, RelayLink
from hostd.relay.locks import RepositoryLocks
from hostd.relay.poller import CommandLoop
from hostd.relay.supervisor import supervise
from hostd.sdnotify import Notifier
from hostd.upgrade import trial
from hostd.upgrade.managed import managed_layout

log = logging.getLogger("hostd")

JOURNAL_FILE = "journal.sqlite3"
JOURNAL_KEEP_MS = 7 * 24 * 3600 * 1000
COMMAND_WORKERS = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PARENT_GONE = signal.SIGUSR1
"""What the kernel sends when the process named in HOSTD_PARENT_PID (`hostd demo`) exits."""


class RelayStatus:
    """The LinkStatus `/api/health` shows when a relay is configured."""

    def __init__(self, link: RelayLink, commands: CommandLoop, journal: Journal) -> None:
        self.link = link
        self.commands = commands
        self.journal = journal

    def health(self) -> dict[str, Any]:
        return {
            "degraded": self.link.degraded or self.journal.failing,
            "relay": self.link.relay_health(),
            "registration": self.link.registration_health(),
            "commandLoop": self.commands.health(),
            "journal": self.journal.health(),
        }


class Daemon:
    def __init__(
        self,
        config: Config,
        env: Mapping[str, str] | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.notifier = Notifier(env)
        self.registry = build_registry(env, config, config_path)
        self.capabilities = {**CAPABILITIES, **self.registry.capabilities()}
        self.stop_requested = asyncio.Event()
        self.exit_code = 0
        self.client: RelayClient | None = None
        self.link: RelayLink | None = None
        self.journal: Journal | None = None
        self.commands: CommandLoop | None = None
        self.command_pool: GitPool | None = None
        status: LinkStatus = NoRelay()
        relay = config.relay
        if relay.url:
            self.client = RelayClient(relay.url, relay.token, relay.request_timeout)
            self.link = RelayLink(
                self.client,
                Identity(config, self.capabilities),
                relay.heartbeat_interval,
                register_backoff=Backoff(
                    relay.register_backoff, relay.register_backoff_max, relay.backoff_jitter
                ),
                reconnect_backoff=Backoff(
                    relay.reconnect_backoff, relay.reconnect_backoff_max, relay.backoff_jitter
                ),
                metrics=self.metrics,
                on_status=self.notifier.status,
            )
            self.journal = Journal(os.path.join(config.state_dir, JOURNAL_FILE))
            self.command_pool = GitPool(
                COMMAND_WORKERS,
                writes=True,
                memory_limit=config.workspaces.worker_memory_mb * 2**20,
            )
            self.commands = CommandLoop(
                config,
                self.client,
                self.journal,
                self.registry,
                self.link,
                self.command_pool,
                metrics=self.metrics,
                request_exit=self.request_exit,
            )
            status = RelayStatus(self.link, self.commands, self.journal)
        self.app = create_app(config, self.metrics, status, self.capabilities)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # Before any command can run: gates and checkouts a crashed hostd left behind.
        await asyncio.to_thread(sweep_gates, self.config.state_dir)
        if self.journal is not None:
            await self.journal.open()
            pruned = await self.journal.prune(JOURNAL_KEEP_MS)
            if pruned:
                log.info("journal: dropped %d reported command(s) older than 7 days", pruned)
        api = self.config.api
        limits = ConnectionLimits(api.max_connections, api.header_timeout, api.idle_timeout)
        raise_open_file_limit()
        self._runner = GuardedRunner(self.app, limits, access_log=None, handle_signals=False)
        handle_resource_exhaustion(asyncio.get_running_loop(), self._runner.guard)
        await self._runner.setup()
        site = web.TCPSite(self._runner, api.host, api.port, backlog=BACKLOG)
        await site.start()
        log.info(
            "hostd %s serving %s on http://%s (base_dir %s)",
            SEMVER,
            self.config.id,
            self.config.api.listen,
            self.config.base_dir,
        )
        unreachable = self.config.unreachable_api_warning()
        if unreachable:
            log.warning("%s", unreachable)
        self.notifier.notify("READY=1", f"STATUS=serving on {self.config.api.listen}")
        self._spawn(self.notifier.run_watchdog(), "hostd-watchdog")
        if self.config.workspaces.fetch_interval > 0:
            locks = self.commands.repo_locks if self.commands is not None else RepositoryLocks()
            refresher = UpstreamRefresher(self.config, locks)
            self._spawn(refresher.run(), "hostd-upstream-refresher")
        if self.link is not None and self.commands is not None:
            self._spawn(
                supervise("relay link", self.link.run, self.link.crashed), "hostd-relay-link"
            )
            self.commands.start()
        else:
            log.info("no relay.url configured: not registering, not polling for commands")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_log_crash)
        self._tasks.append(task)

    async def stop(self) -> list[str]:
        """Shut down in order; returns the ids of commands abandoned at the drain timeout."""
        self.notifier.notify("STOPPING=1")
        abandoned: list[str] = []
        if self.commands is not None:
            await self.commands.stop_polling()
            running = self.commands.health()["inFlight"]
            if running:
                self.notifier.status(f"stopping: draining {running} command(s)")
            abandoned = await self.commands.drain(self.config.commands.drain_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.client is not None:
            await self.client.close()
        if self.journal is not None:
            await self.journal.close()
        if self.command_pool is not None:
            self.command_pool.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.notifier.close()
        log.info("hostd stopped")
        self.release_signal_handlers()
        return abandoned

    async def report_rollback(self, command_id: str, error: str) -> None:
        """The old version, started again after a rollback, reports the upgrade `failed`."""
        log.error("upgrade command %s: %s", command_id, error)
        if self.journal is not None and command_id:
            entry = await self.journal.get(command_id)
            if entry is None:
                await self.journal.add(command_id, UPGRADE, {})
            if entry is None or entry.status != FAILED:
                await self.journal.record_outcome(command_id, FAILED, {"error": error})
        await asyncio.to_thread(trial.mark_reported, self.config.state_dir)

    def watch_trial(self, boot: trial.Boot) -> None:
        layout = managed_layout(self.config)
        if boot.trial is None or layout is None:
            return
        registered = self.link.connected if self.link is not None else asyncio.Event()
        watch = trial.watch(self.config, layout, boot.trial, registered, self.request_exit)
        self._spawn(watch, "hostd-upgrade-trial")

    def request_exit(self, code: int) -> None:
        """Shut down as on SIGTERM and exit with `code`."""
        self.exit_code = code
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGQUIT, _exit_now, signal.SIGQUIT)
        loop.add_signal_handler(PARENT_GONE, self._on_parent_gone)
        if not signal_when_parent_exits(PARENT_GONE):
            self._on_parent_gone()

    def _on_parent_gone(self) -> None:
        # Sent once per thread of the dying parent, so it never counts as a second signal.
        if not self.stop_requested.is_set():
            log.warning("the process that started hostd is gone; shutting down")
            self.stop_requested.set()

    def release_signal_handlers(self) -> None:
        """Stopped: any further signal exits at once, also while the interpreter winds down
        (the event loop's handlers go with the loop, which would leave SIGINT raising
        KeyboardInterrupt in exit-time thread joins)."""
        loop = asyncio.get_running_loop()
        for sig in (*STOP_SIGNALS, signal.SIGQUIT):
            loop.remove_signal_handler(sig)
            signal.signal(sig, lambda signum, frame: _exit_now(signal.Signals(signum)))
        loop.remove_signal_handler(PARENT_GONE)
        signal.signal(PARENT_GONE, signal.SIG_IGN)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        if self.stop_requested.is_set():
            _exit_now(sig)
        log.info("received %s, shutting down (send it again to exit at once)", sig.name)
        self.stop_requested.set()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended unexpectedly", task.get_name(), exc_info=task.exception())


def _exit_now(sig: signal.Signals) -> None:
    log.warning(
        "received %s, exiting at once; running commands are recovered at next start", sig.name
    )
    sys.stderr.flush()
    os._exit(128 + sig)


async def _upgrade_boot(config: Config) -> trial.Boot:
    """Trial-boot bookkeeping of a managed install, before anything else starts."""
    layout = managed_layout(config)
    if layout is None:
        return trial.Boot()
    try:
        return await asyncio.to_thread(trial.on_start, config, layout)
    except OSError as exc:
        log.error("upgrade: start-up bookkeeping in %s failed: %s", layout.root, exc)
        return trial.Boot()


async def serve(config: Config, config_path: str | None = None) -> int:
    boot = await _upgrade_boot(config)
    if boot.exit_code is not None:
        return boot.exit_code
    daemon = Daemon(config, config_path=config_path)
    daemon.install_signal_handlers()
    try:
        await daemon.start()
        if boot.report is not None:
            await daemon.report_rollback(*boot.report)
    except (OSError, sqlite3.Error, JournalError) as exc:
        log.error("cannot start: %s", exc)
        await daemon.stop()
        return 1
    daemon.watch_trial(boot)
    try:
        await daemon.stop_requested.wait()
    finally:
        abandoned = await daemon.stop()
    if abandoned:
        # Threads of abandoned commands may still be busy; interpreter exit would wait for them.
        sys.stderr.flush()
        os._exit(daemon.exit_code)
    return daemon.exit_code
