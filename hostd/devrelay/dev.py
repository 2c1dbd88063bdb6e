"""Routes under /api/_dev: fault switches and the request log."""

from __future__ import annotations

from aiohttp import web

from hostd.devrelay.context import FAULTS, REQUEST_LOG, STORE
from hostd.devrelay.faults import FaultError
from hostd.devrelay.validate import ValidationError, json_object, query_int

_CLEARED = {"fail": [], "failStatus": 500, "hang": [], "rejectTokens": []}
_FAULT_KEYS = frozenset({"fail", "failStatus", "hang", "rejectTokens", "forgetHosts", "clear"})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].snapshot())


async def post_faults(request: web.Request) -> web.Response:
    """Change the switches named in the body; `clear` resets the rest, `forgetHosts` is one-shot."""
    body = json_object(request)
    unknown = sorted(set(body) - _FAULT_KEYS)
    if unknown:
        raise ValidationError(f"unknown fault switch: {', '.join(unknown)}")
    for flag in ("clear", "forgetHosts"):
        if flag in body and not isinstance(body[flag], bool):
            raise ValidationError(f"{flag} must be a boolean")
    faults = request.app[FAULTS]
    changes = {key: value for key, value in body.items() if key not in ("clear", "forgetHosts")}
    if body.get("clear"):
        changes = {**_CLEARED, **changes}
    try:
        faults.update(changes)
    except FaultError as exc:
        raise ValidationError(str(exc)) from None
    reply = faults.snapshot()
    if body.get("forgetHosts"):
        reply["forgotten"] = request.app[STORE].forget_orchestrators()
    return web.json_response(reply)


async def delete_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.json_response(request.app[FAULTS].snapshot())


async def get_requests(request: web.Request) -> web.Response:
    log = request.app[REQUEST_LOG]
    since = query_int(request, "since", 0, 0, 2**62)
    entries = log.entries(
        since, request.query.get("method") or None, request.query.get("path") or None
    )
    return web.json_response({"requests": entries, "lastSeq": log.last_seq})


async def delete_requests(request: web.Request) -> web.Response:
    return web.json_response({"cleared": request.app[REQUEST_LOG].clear()})
