"""Assemble the aiohttp application: routes, middlewares, git worker pool, event-loop lag probe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web

from hostd.api import handlers, middleware
from hostd.config import Config
from hostd.git.statuswatch import watch_budget
from hostd.gitpool import GitPool
from hostd.health import LinkStatus, NoRelay
from hostd.metrics import Metrics
from hostd.recall import Recall

LAG_PROBE_INTERVAL = 1.0
GIT_WORKERS = max(2, min(4, os.cpu_count() or 2))


async def _measure_loop_lag(metrics: Metrics) -> None:
    while True:
        expected = time.monotonic() + LAG_PROBE_INTERVAL
        await asyncio.sleep(LAG_PROBE_INTERVAL)
        metrics.loop_lag.set(max(0.0, time.monotonic() - expected))


def create_app(
    config: Config,
    metrics: Metrics | None = None,
    link: LinkStatus | None = None,
    capabilities: dict[str, bool] | None = None,
) -> web.Application:
    metrics = metrics or Metrics()
    app = web.Application(
        middlewares=[
            middleware.access_log(metrics),
            middleware.errors_and_cors,
            middleware.auth(config),
            middleware.deadline(config),
        ],
        client_max_size=64 * 1024,
    )
    app[handlers.config_key] = config
    app[handlers.metrics_key] = metrics
    app[handlers.recall_key] = Recall()
    app[handlers.link_key] = link or NoRelay()
    app[handlers.started_key] = time.monotonic()
    app[handlers.capabilities_key] = capabilities or handlers.CAPABILITIES
    for path, handler in handlers.ROUTES:
        app.router.add_get(path, handler, allow_head=False)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        workspaces = config.workspaces
        pool = GitPool(
            GIT_WORKERS,
            keep_status=workspaces.keep_status,
            memory_limit=workspaces.worker_memory_mb * 2**20,
            watch_budget=watch_budget(workspaces.max_watches),
        )
        pool.start()
        app[handlers.pool_key] = pool
        lag = asyncio.create_task(_measure_loop_lag(metrics))
        yield
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
        pool.shutdown()

    app.cleanup_ctx.append(lifecycle)
    return app
