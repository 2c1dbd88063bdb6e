"""The daemon's start-up and shutdown order.

Start: journal, API, `READY=1`, then registration/heartbeat and the command loop.
Stop (SIGTERM/SIGINT or an exit request): `STOPPING=1`, stop polling, drain running commands while
still heartbeating, stop the heartbeat, close the API. A second signal or SIGQUIT exits at once
with 128 + the signal number.
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
from hostd.commands import build_registry
from hostd.config import Config
from hostd.gates.sweep import sweep as sweep_gates
from hostd.gitpool import GitPool
from hostd.health import LinkStatus, NoRelay
from hostd.metrics import Metrics
from hostd.relay.client import RelayClient
from hostd.relay.identity import Identity
from hostd.relay.journal import Journal
from hostd.relay.link import Backoff, RelayLink
from hostd.relay.poller import CommandLoop
from hostd.sdnotify import Notifier

log = logging.getLogger("hostd")

JOURNAL_FILE = "journal.sqlite3"
JOURNAL_KEEP_MS = 7 * 24 * 3600 * 1000
COMMAND_WORKERS = 2


class RelayStatus:
    """The LinkStatus `/api/health` shows when a relay is configured."""

    def __init__(self, link: RelayLink, commands: CommandLoop) -> None:
        self.link = link
        self.commands = commands

    def health(self) -> dict[str, Any]:
        return {
            "degraded": self.link.degraded,
            "relay": self.link.relay_health(),
            "registration": self.link.registration_health(),
            "commandLoop": self.commands.health(),
        }


class Daemon:
    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.notifier = Notifier(env)
        self.registry = build_registry(env)
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
            status = RelayStatus(self.link, self.commands)
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
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.api.host, self.config.api.port)
        await site.start()
        log.info(
            "hostd %s serving %s on http://%s (base_dir %s)",
            SEMVER,
            self.config.id,
            self.config.api.listen,
            self.config.base_dir,
        )
        self.notifier.notify("READY=1", f"STATUS=serving on {self.config.api.listen}")
        self._spawn(self.notifier.run_watchdog(), "hostd-watchdog")
        if self.link is not None and self.commands is not None:
            self._spawn(self.link.run(), "hostd-relay-link")
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
        return abandoned

    def request_exit(self, code: int) -> None:
        """Shut down as on SIGTERM and exit with `code`."""
        self.exit_code = code
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGQUIT, _exit_now, signal.SIGQUIT)

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


async def serve(config: Config) -> int:
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    try:
        await daemon.start()
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot start: %s", exc)
        await daemon.stop()
        return 1
    try:
        await daemon.stop_requested.wait()
    finally:
        abandoned = await daemon.stop()
    if abandoned:
        # Threads of abandoned commands may still be busy; interpreter exit would wait for them.
        sys.stderr.flush()
        os._exit(daemon.exit_code)
    return daemon.exit_code
