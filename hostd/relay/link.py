"""Registration and heartbeat: one task that keeps hostd known to the relay.

The task never ends on its own and never raises for a relay failure; it is cancelled at shutdown.
Should it fail anyway, its supervisor calls `crashed` and runs it again.
`connected` is set while the relay accepts heartbeats; the command loop polls only then.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_fixed,
)

from hostd.metrics import Metrics
from hostd.relay.client import RelayClient, RelayError, RelayHTTPError, RelayTimeout
from hostd.relay.identity import Identity
from hostd.relay.quiet import REMIND_EVERY, describe_duration

log = logging.getLogger("hostd.relay")


@dataclass(frozen=True)
class Backoff:
    """Exponential delays: base, 2×base, 4×base … capped, each ± jitter."""

    base: float
    cap: float
    jitter: float

    def delay(self, attempt: int) -> float:
        raw = min(self.cap, self.base * 2 ** min(max(attempt, 1) - 1, 32))
        return max(0.0, raw + random.uniform(-self.jitter, self.jitter))


def _now_ms() -> int:
    return int(time.time() * 1000)


class RelayLink:
    def __init__(
        self,
        client: RelayClient,
        identity: Identity,
        heartbeat_interval: float,
        *,
        register_backoff: Backoff = Backoff(5.0, 120.0, 1.0),
        reconnect_backoff: Backoff = Backoff(30.0, 3600.0, 1.0),
        timeout_retry_delay: float = 0.25,
        degraded_after: int = 5,
        metrics: Metrics | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.identity = identity
        self.heartbeat_interval = heartbeat_interval
        self.register_backoff = register_backoff
        self.reconnect_backoff = reconnect_backoff
        self.timeout_retry_delay = timeout_retry_delay
        self.degraded_after = degraded_after
        self.metrics = metrics
        self.on_status = on_status or (lambda text: None)
        self.connected = asyncio.Event()

        self.registered = False
        self.register_failures = 0
        self.register_degraded = False
        self._next_retry_at: float | None = None
        self._register_trouble_since: float | None = None
        self._register_reminded_at = 0.0

        self.heartbeat_failures = 0
        self.heartbeat_degraded = False
        self.last_heartbeat_ok_at: int | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self._link_down_since: float | None = None

    @property
    def degraded(self) -> bool:
        return self.heartbeat_degraded or self.register_degraded

    def relay_health(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "connected": self.connected.is_set(),
            "degraded": self.heartbeat_degraded,
            "consecutiveHeartbeatFailures": self.heartbeat_failures,
            "linkRestarts": self.restarts,
        }
        if self.last_heartbeat_ok_at is not None:
            body["lastHeartbeatOkAt"] = self.last_heartbeat_ok_at
        if self.last_error is not None:
            body["lastError"] = self.last_error
        return body

    def registration_health(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "registered": self.registered,
            "degraded": self.register_degraded,
            "consecutiveFailures": self.register_failures,
        }
        if not self.registered and self._next_retry_at is not None:
            body["nextRetryInMs"] = max(0, round((self._next_retry_at - time.monotonic()) * 1000))
        return body

    async def run(self) -> None:
        await self._register(self.register_backoff, immediate=True)
        next_beat = time.monotonic() + self.heartbeat_interval
        while True:
            await asyncio.sleep(max(0.0, next_beat - time.monotonic()))
            next_beat = time.monotonic() + self.heartbeat_interval
            try:
                await self._heartbeat()
            except RelayError as exc:
                forgotten = isinstance(exc, RelayHTTPError) and exc.status in (401, 404)
                if forgotten:
                    self.client.runtime_token = None
                self._heartbeat_failed(exc, forgotten)
                await self._register(self.reconnect_backoff, immediate=forgotten)
                next_beat = time.monotonic() + self.heartbeat_interval
                continue
            self.last_heartbeat_ok_at = _now_ms()

    async def _heartbeat(self) -> None:
        """One heartbeat; a timeout gets two quick re-tries before it counts as a failure."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_fixed(self.timeout_retry_delay),
            retry=retry_if_exception_type(RelayTimeout),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self.client.heartbeat(self.identity.config.id, self.identity.heartbeat_body())

    def _heartbeat_failed(self, exc: RelayError, forgotten: bool) -> None:
        self.connected.clear()
        self.heartbeat_failures += 1
        self.heartbeat_degraded = True
        self.last_error = str(exc)
        if self.metrics is not None:
            self.metrics.heartbeat_failures.inc()
        if self._link_down_since is not None:
            return
        self._link_down_since = time.monotonic()
        if forgotten:
            log.warning("relay no longer knows this host (%s); registering again now", exc)
        else:
            log.warning(
                "heartbeat to %s failed: %s; polling paused, registering again with backoff",
                self.client.base_url,
                exc,
            )
        self.on_status(f"degraded: heartbeat failing: {exc}")

    async def _register(self, backoff: Backoff, immediate: bool) -> None:
        """Register until the relay takes it; attempts are spaced by `backoff`."""
        self.registered = False
        first_attempt = 1 if immediate else 2
        if not immediate:
            delay = backoff.delay(1)
            self._next_retry_at = time.monotonic() + delay
            await asyncio.sleep(delay)

        def wait(state: RetryCallState) -> float:
            return backoff.delay(state.attempt_number + first_attempt - 1)

        retrying = AsyncRetrying(
            wait=wait,
            retry=retry_if_exception_type(RelayError),
            before_sleep=self._register_failed,
        )
        async for attempt in retrying:
            with attempt:
                await self.client.register(self.identity.register_body())
        self._registered()

    def crashed(self, exc: BaseException) -> None:
        """The link task failed outside the relay rules; it is started again from registration."""
        self.connected.clear()
        self.registered = False
        self.restarts += 1
        self.heartbeat_degraded = True
        self.last_error = f"relay link task failed: {type(exc).__name__}: {exc}"[:500]
        if self._link_down_since is None:
            self._link_down_since = time.monotonic()
        self.on_status(f"degraded: {self.last_error}")

    def _register_failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        self._next_retry_at = time.monotonic() + delay
        self.register_failures += 1
        self.last_error = str(exc)
        now = time.monotonic()
        if self._register_trouble_since is None:
            self._register_trouble_since = now
            self._register_reminded_at = now
            log.warning(
                "registration with %s failed: %s; retrying in %s",
                self.client.base_url,
                exc,
                describe_duration(delay),
            )
        elif self.register_failures == self.degraded_after:
            self.register_degraded = True
            log.error(
                "relay registration degraded after %d consecutive failures (last: %s); "
                "hostd keeps serving and keeps retrying",
                self.register_failures,
                exc,
            )
            self.on_status(f"degraded: cannot register with {self.client.base_url}: {exc}")
        elif now - self._register_reminded_at >= REMIND_EVERY:
            self._register_reminded_at = now
            log.warning(
                "still cannot register with %s after %d attempts over %s: %s",
                self.client.base_url,
                self.register_failures,
                describe_duration(now - self._register_trouble_since),
                exc,
            )
        else:
            log.debug("registration attempt %d failed: %s", self.register_failures, exc)

    def _registered(self) -> None:
        now = time.monotonic()
        token = " (runtime token adopted)" if self.client.runtime_token else ""
        if self._register_trouble_since is not None:
            log.info(
                "registered with %s as %s after %d failed attempt(s); recovered after %s%s",
                self.client.base_url,
                self.identity.config.id,
                self.register_failures,
                describe_duration(now - self._register_trouble_since),
                token,
            )
        else:
            log.info(
                "registered with %s as %s%s", self.client.base_url, self.identity.config.id, token
            )
        if self._link_down_since is not None:
            log.info("relay link restored after %s", describe_duration(now - self._link_down_since))
        self.registered = True
        self.register_failures = 0
        self.register_degraded = False
        self._register_trouble_since = None
        self._next_retry_at = None
        self._link_down_since = None
        self.heartbeat_degraded = False
        self.heartbeat_failures = 0
        self.last_error = None
        self.connected.set()
        self.on_status(f"registered with {self.client.base_url}")
