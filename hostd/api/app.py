"""Assemble the aiohttp application: routes, middlewares, thread pool, event-loop lag probe."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from hostd.api import handlers, middleware
from hostd.config import Config
from hostd.health import LinkStatus, NoRelay
from hostd.metrics import Metrics

LAG_PROBE_INTERVAL = 1.0
# Git work holds the GIL in its Python parts: few workers and a short switch interval keep the
# event loop's share of the GIL large, so /api/health stays fast while big diffs run.
GIT_WORKERS = 2
GIL_SWITCH_INTERVAL = 0.001


async def _measure_loop_lag(metrics: Metrics) -> None:
    while True:
        expected = time.monotonic() + LAG_PROBE_INTERVAL
        await asyncio.sleep(LAG_PROBE_INTERVAL)
        metrics.loop_lag.set(max(0.0, time.monotonic() - expected))


def create_app(
    config: Config, metrics: Metrics | None = None, link: LinkStatus | None = None
) -> web.Application:
    metrics = metrics or Metrics()
    app = web.Application(
        middlewares=[
            middleware.errors_and_cors,
            middleware.access_log(metrics),
            middleware.auth(config),
            middleware.deadline(config),
        ],
        client_max_size=64 * 1024,
    )
    app[handlers.config_key] = config
    app[handlers.metrics_key] = metrics
    app[handlers.link_key] = link or NoRelay()
    app[handlers.started_key] = time.monotonic()
    for path, handler in handlers.ROUTES:
        app.router.add_get(path, handler, allow_head=False)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        executor = ThreadPoolExecutor(GIT_WORKERS, thread_name_prefix="hostd-git")
        app[handlers.executor_key] = executor
        lag = asyncio.create_task(_measure_loop_lag(metrics))
        yield
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
        executor.shutdown(wait=False, cancel_futures=True)

    app.cleanup_ctx.append(lifecycle)
    return app
