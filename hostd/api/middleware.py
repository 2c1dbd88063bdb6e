"""Request middlewares, outermost first: access log and metrics, errors and CORS, auth, deadline."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from hostd.config import Config, format_duration
from hostd.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("hostd.api")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-Agent-Relay-Token",
}
PROTECTED_PREFIX = "/api/workspace/"


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def route_label(request: web.Request) -> str:
    """The route template (never the concrete path, which may hold user data)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def errors_and_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            response = error(404, "not found")
        else:
            response = error(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error on %s", route_label(request))
        response = error(500, "internal error")
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def access_log(metrics: Metrics) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = route_label(request)
            metrics.requests.labels(route, request.method, str(status)).inc()
            metrics.latency.labels(route).observe(elapsed)
            log.info(
                "%s %s %d %.1fms",
                request.method,
                request.path,
                status,
                elapsed * 1000,
                extra={"route": route, "status": status, "durationMs": round(elapsed * 1000, 1)},
            )

    return middleware


def _token_bytes(value: str) -> bytes:
    # Header values that are not UTF-8 arrive with lone surrogates, which plain encode() rejects.
    return value.encode("utf-8", "surrogatepass")


def token_matches(request: web.Request, token: str) -> bool:
    expected = _token_bytes(token)
    for given in (request.headers.get("X-Agent-Relay-Token"), request.query.get("token")):
        if given is not None and hmac.compare_digest(_token_bytes(given), expected):
            return True
    return False


def auth(config: Config) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = config.token
        if (
            token
            and request.path.startswith(PROTECTED_PREFIX)
            and not token_matches(request, token)
        ):
            return error(401, "unauthorized")
        return await handler(request)

    return middleware


def deadline(config: Config) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    timeout = config.api.request_timeout
    message = f"timed out after {format_duration(timeout)}"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await asyncio.wait_for(handler(request), timeout)
        except TimeoutError:
            return error(504, message)

    return middleware
