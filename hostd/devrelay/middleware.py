"""The request pipeline: log, injected faults, token auth, body cap, JSON errors."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from hostd.devrelay.context import FAULTS, REQUEST_LOG, STORE, TOKEN, now_ms
from hostd.devrelay.validate import BODY, BodyTooLarge, ValidationError, error, read_capped

TOKEN_HEADER = "X-Agent-Relay-Token"
DEV_PREFIX = "/api/_dev/"

log = logging.getLogger(__name__)


def _auth_kind(request: web.Request, token: str | None) -> str:
    """How the request authenticates: none, configured, runtime or invalid. A `token` query
    parameter stands in for the header, so a browser can open the dashboard-style URLs."""
    given = request.headers.get(TOKEN_HEADER) or request.query.get("token")
    if given is None:
        return "none"
    if token is not None and hmac.compare_digest(given.encode(), token.encode()):
        return "configured"
    if request.app[STORE].runtime_token_known(given):
        return "runtime"
    return "invalid"


@web.middleware
async def relay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    dev = request.path.startswith(DEV_PREFIX)
    too_large = False
    try:
        request[BODY] = await read_capped(request)
    except BodyTooLarge:
        request[BODY], too_large = b"", True
    auth = _auth_kind(request, request.app[TOKEN])
    entry = None
    if not dev:
        entry = request.app[REQUEST_LOG].add(
            request.method, request.path, request.query_string, request[BODY], auth, now_ms()
        )
        if too_large:
            entry["bodyTooLarge"] = True
    response = await _answer(request, handler, dev=dev, auth=auth, too_large=too_large)
    if entry is not None:
        entry["status"] = response.status
    return response


async def _answer(
    request: web.Request, handler: Handler, *, dev: bool, auth: str, too_large: bool
) -> web.StreamResponse:
    faults = request.app[FAULTS]
    if not dev:
        if not await faults.hold_while_hanging(request.method, request.path):
            return error("relay shutting down", 503)
        if faults.failing(request.method, request.path):
            return error("injected fault", faults.fail_status)
        if faults.rejects(request.headers.get(TOKEN_HEADER)):
            return error("unauthorized", 401)
    if request.app[TOKEN] is not None and auth not in ("configured", "runtime"):
        return error("unauthorized", 401)
    if too_large:
        return error("body too large", 413)
    try:
        return await handler(request)
    except ValidationError as exc:
        return error(str(exc), 400)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error("not found", 404)
        if exc.status == 405:
            return error("method not allowed", 405)
        raise
    except Exception as exc:
        log.exception("development relay: %s %s failed", request.method, request.path)
        return error(f"internal error: {exc}", 500)
