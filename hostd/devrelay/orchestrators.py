"""Host registration, heartbeat and listing; which hosts are online and own a path."""

from __future__ import annotations

import re
import secrets
from typing import Any

from aiohttp import web

from hostd.devrelay.context import SETTINGS, STORE, now_ms
from hostd.devrelay.model import path_within_base
from hostd.devrelay.store import Record
from hostd.devrelay.upgrade import settle_upgrade
from hostd.devrelay.validate import (
    ValidationError,
    error,
    json_object,
    opt_str,
    opt_str_list,
    opt_type,
    req_str,
)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_RESERVED = frozenset(
    {"id", "agentId", "status", "registeredAt", "lastHeartbeatAt", "upgrade", "runtimeToken"}
)


def _runtime_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Check the types of the fields hostd sends; every field but the reserved ones is kept."""
    for name in ("hostname", "version"):
        opt_str(body, name, max_len=240)
    base_dir = opt_str(body, "baseDir", max_len=4096)
    if base_dir is not None and not base_dir.startswith("/"):
        raise ValidationError("baseDir must be an absolute path")
    api_url = opt_str(body, "apiUrl", max_len=2048)
    if api_url is not None and not api_url.startswith(("http://", "https://")):
        raise ValidationError("apiUrl must be an http(s) URL")
    opt_type(body, "protocolVersion", int, "an integer")
    for name in ("package", "capabilities", "providerStatus", "meta", "contracts"):
        opt_type(body, name, dict, "an object")
    for name in ("providers", "providerCatalog"):
        opt_type(body, name, list, "an array")
    opt_str_list(body, "envKeys")
    return {key: value for key, value in body.items() if key not in _RESERVED}


def is_online(app: web.Application, orch: Record, now: int | None = None) -> bool:
    age = (now if now is not None else now_ms()) - orch["lastHeartbeatAt"]
    return age <= app[SETTINGS].stale_ms


def present(app: web.Application, orch: Record) -> Record:
    return {**orch, "status": "online" if is_online(app, orch) else "offline"}


def listed(app: web.Application) -> list[Record]:
    return [present(app, orch) for orch in app[STORE].list_orchestrators()]


def owners_of(app: web.Application, path: str | None) -> list[Record]:
    """Hosts whose baseDir contains `path`, in registration order, with their status."""
    return [orch for orch in listed(app) if path_within_base(path, orch.get("baseDir"))]


async def register(request: web.Request) -> web.Response:
    body = json_object(request)
    oid = req_str(body, "id", max_len=160)
    if not _ID.fullmatch(oid):
        raise ValidationError("id may contain only letters, digits, '.', '_', ':' and '-'")
    store = request.app[STORE]
    orch = settle_upgrade(
        request.app, store.register_orchestrator(oid, _runtime_fields(body), now_ms())
    )
    reply: dict[str, Any] = {"ok": True, "orchestrator": present(request.app, orch)}
    if request.app[SETTINGS].runtime_tokens:
        token = f"rt-{secrets.token_hex(16)}"
        store.set_runtime_token(oid, token)
        reply["runtimeToken"] = {"token": token, "orchestratorId": oid}
    return web.json_response(reply)


async def heartbeat(request: web.Request) -> web.Response:
    body = json_object(request, allow_empty=True)
    fields = _runtime_fields(body)
    orch = request.app[STORE].heartbeat_orchestrator(request.match_info["id"], fields, now_ms())
    if orch is None:
        return error("orchestrator not found", 404)
    settle_upgrade(request.app, orch)
    return web.json_response({"ok": True})


async def list_all(request: web.Request) -> web.Response:
    return web.json_response(listed(request.app))


async def get_one(request: web.Request) -> web.Response:
    orch = request.app[STORE].get_orchestrator(request.match_info["id"])
    if orch is None:
        return error("orchestrator not found", 404)
    return web.json_response(present(request.app, orch))
