"""The HTTP server under the app: a connection cap, header and idle timeouts, JSON protocol errors.

At the cap a new connection closes the connection that has waited longest without a request in
progress (a slow or idle client), so a fresh `/api/health` always gets an answer while requests
already being handled are never cut. The cap stays below the open-file limit so accepting never
runs out of file descriptors. Malformed requests (a request line or header over aiohttp's limits)
are answered with hostd's JSON 400 and logged as one line, without the request's content.

aiohttp has no public hook for these: the runner builds its server, the server its per-connection
handlers; the subclasses below reuse aiohttp's own construction arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("hostd.api")

BACKLOG = 128
FD_RESERVE = 64 + BACKLOG  # one accept burst can take BACKLOG descriptors before any is closed
LOG_INTERVAL = 60.0
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    idle_timeout: float

    def effective_max(self) -> int:
        """The configured cap, lowered to leave FD_RESERVE descriptors for everything else."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - FD_RESERVE))


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard limit (the usual soft 1024 is a shell default)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class OncePerInterval:
    """Log a recurring condition at most once per interval, with how often it happened."""

    def __init__(self, message: str, interval: float = LOG_INTERVAL) -> None:
        self.message = message
        self.interval = interval
        self.count = 0
        self.last = -interval

    def hit(self, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.interval:
            log.warning(
                self.message + " (%d time(s) since the last report; reported at most every %ds)",
                *args,
                self.count,
                self.interval,
            )
            self.count = 0
            self.last = now


class GuardedHandler(RequestHandler):
    """One connection: registered with the server's guard, closed when headers are too slow."""

    guard: ConnectionGuard
    requests_started = 0
    busy = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """hostd's JSON error; the log line names the error's kind, never the request's text."""
        log.warning(
            "%s from %s: %s",
            "bad request" if 400 <= status < 500 else f"request failed ({status})",
            request.remote,
            type(exc).__name__ if exc else "no detail",
            extra={"status": status},
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        if isinstance(exc, LineTooLong):
            text = "request line or header too long"
        else:
            text = "bad request" if 400 <= status < 500 else "internal error"
        response = web.Response(
            status=status, text=json.dumps({"error": text}), content_type="application/json"
        )
        response.force_close()
        return response


class ConnectionGuard:
    """The open connections, oldest first; enforces the cap and the header timeout."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[GuardedHandler, None] = {}
        self.at_cap = OncePerInterval("connection limit %d reached: closing idle connections")

    def opened(self, conn: GuardedHandler) -> None:
        self.open[conn] = None
        loop = asyncio.get_running_loop()
        loop.call_later(self.limits.header_timeout, self._headers_due, conn)
        cap = self.limits.effective_max()
        if len(self.open) > cap:
            self.at_cap.hit(cap)
            self._close(self._oldest_idle(conn) or conn)

    def shed_idle(self) -> None:
        """Close the oldest idle connection, freeing a descriptor for the next accept."""
        victim = self._oldest_idle(None)
        if victim is not None:
            self._close(victim)

    def _close(self, conn: GuardedHandler) -> None:
        self.open.pop(conn, None)
        conn.force_close()

    def closed(self, conn: GuardedHandler) -> None:
        self.open.pop(conn, None)

    def _oldest_idle(self, newest: GuardedHandler | None) -> GuardedHandler | None:
        return next((c for c in self.open if c is not newest and not c.busy), None)

    def _headers_due(self, conn: GuardedHandler) -> None:
        if conn in self.open and conn.requests_started == 0:
            conn.force_close()

    def track(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            conn = request.protocol
            if isinstance(conn, GuardedHandler):
                conn.requests_started += 1
                conn.busy += 1
            try:
                return await handler(request)
            finally:
                if isinstance(conn, GuardedHandler):
                    conn.busy -= 1

        return tracked


class GuardedServer(web.Server):
    def __init__(self, server: web.Server, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.handler_kwargs: dict[str, Any] = {
            **server._kwargs,
            "keepalive_timeout": guard.limits.idle_timeout,
        }
        super().__init__(
            guard.track(server.request_handler),
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **self.handler_kwargs,
        )

    def __call__(self) -> RequestHandler:
        conn = GuardedHandler(self, loop=asyncio.get_running_loop(), **self.handler_kwargs)
        conn.guard = self.guard
        return conn


class GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = ConnectionGuard(limits)

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.guard)


def handle_resource_exhaustion(loop: asyncio.AbstractEventLoop, guard: ConnectionGuard) -> None:
    """A failed accept (out of descriptors) sheds an idle connection and is logged once per
    interval; asyncio itself would log a traceback for every attempt."""
    exhausted = OncePerInterval("out of resources accepting connections: %s")
    default = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            exhausted.hit(exc.strerror or type(exc).__name__)
            guard.shed_idle()
        elif default is not None:
            default(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
