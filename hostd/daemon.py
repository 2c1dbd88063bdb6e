"""The daemon's start-up and shutdown order: API first, then (when configured) the relay link."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from hostd import SEMVER
from hostd.api import create_app
from hostd.config import Config
from hostd.metrics import Metrics

log = logging.getLogger("hostd")


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.app = create_app(config, self.metrics)
        self._runner: web.AppRunner | None = None
        self.stop_requested = asyncio.Event()

    async def start(self) -> None:
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

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("hostd stopped")

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("received %s, shutting down", sig.name)
        self.stop_requested.set()


async def serve(config: Config) -> int:
    daemon = Daemon(config)
    daemon.install_signal_handlers()
    await daemon.start()
    try:
        await daemon.stop_requested.wait()
    finally:
        await daemon.stop()
    return 0
