"""Keep a task alive for as long as hostd runs: when its coroutine fails (or returns), it is
logged and started again after a growing delay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hostd.relay.link import Backoff

log = logging.getLogger("hostd")

RESTART_BACKOFF = Backoff(1.0, 60.0, 0.2)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    on_crash: Callable[[BaseException], None] = lambda exc: None,
    backoff: Backoff = RESTART_BACKOFF,
) -> None:
    """Run `run()` again whenever it ends; only cancellation stops it."""
    crashes = 0
    while True:
        try:
            await run()
            failure: BaseException = RuntimeError(f"{name} returned")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = exc
        crashes += 1
        delay = backoff.delay(crashes)
        log.error(
            "%s failed (%d time(s)); restarting it in %.1fs",
            name,
            crashes,
            delay,
            exc_info=failure if crashes == 1 else None,
        )
        on_crash(failure)
        await asyncio.sleep(delay)
