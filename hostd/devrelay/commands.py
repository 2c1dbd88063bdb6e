"""The command queue: list, create, status updates, and their effect on workspaces."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hostd.devrelay.context import STORE, now_ms
from hostd.devrelay.model import COMMAND_STATUSES, WORKSPACE_STATUSES
from hostd.devrelay.store import TERMINAL_COMMAND_STATUSES, Record, Store
from hostd.devrelay.validate import (
    ValidationError,
    error,
    json_object,
    opt_str,
    opt_type,
    query_int,
    req_str,
)

MAX_TTL_MS = 7 * 24 * 3600 * 1000


async def list_commands(request: web.Request) -> web.Response:
    store = request.app[STORE]
    store.expire_commands(now_ms())
    status = request.query.get("status") or None
    if status is not None and status not in COMMAND_STATUSES:
        raise ValidationError(f"status must be one of: {', '.join(COMMAND_STATUSES)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    target = request.query.get("target") or None
    return web.json_response(store.list_commands(target, status, limit))


async def get_command(request: web.Request) -> web.Response:
    store = request.app[STORE]
    store.expire_commands(now_ms())
    command = store.get_command(request.match_info["id"])
    if command is None:
        return error("command not found", 404)
    return web.json_response(command)


async def create_command(request: web.Request) -> web.Response:
    """Queue any command, e.g. a `workspace.reconcile` the real relay's reconciler would send."""
    body = json_object(request)
    type_ = req_str(body, "type", max_len=120)
    target = req_str(body, "target", max_len=240)
    params = opt_type(body, "params", dict, "an object") or {}
    ttl_ms = opt_type(body, "ttlMs", int, "an integer")
    if ttl_ms is not None and not 1 <= ttl_ms <= MAX_TTL_MS:
        raise ValidationError(f"ttlMs must be between 1 and {MAX_TTL_MS}")
    command = request.app[STORE].create_command(
        type_,
        target,
        params,
        now_ms(),
        source=opt_str(body, "source", max_len=80) or "dashboard",
        correlation_id=opt_str(body, "correlationId", max_len=160),
        ttl_ms=ttl_ms,
    )
    return web.json_response(command, status=201)


async def patch_command(request: web.Request) -> web.Response:
    body = json_object(request)
    status = opt_str(body, "status", max_len=40)
    if status is None:
        return error("status required")
    if status not in COMMAND_STATUSES:
        raise ValidationError(f"status must be one of: {', '.join(COMMAND_STATUSES)}")
    result = opt_type(body, "result", dict, "an object")
    message = opt_type(body, "error", str, "a string")
    store, now = request.app[STORE], now_ms()
    store.expire_commands(now)
    current = store.get_command(request.match_info["id"])
    if current is None:
        return error("command not found", 404)
    if current["status"] in TERMINAL_COMMAND_STATUSES:
        return error(f"command is already {current['status']}", 409)
    command = store.update_command(current["id"], status, now, result=result, error=message)
    assert command is not None
    apply_workspace_effects(store, command, now)
    return web.json_response(command)


def _reported_status(result: Any) -> tuple[str, str] | None:
    """(workspaceId, status) when the result carries both, with valid values."""
    if not isinstance(result, dict):
        return None
    workspace_id, status = result.get("workspaceId"), result.get("status")
    if isinstance(workspace_id, str) and workspace_id and status in WORKSPACE_STATUSES:
        return workspace_id, status
    return None


def apply_workspace_effects(store: Store, command: Record, now: int) -> None:
    """What a workspace command's outcome does to the workspace record."""
    kind, status, result = command["type"], command["status"], command.get("result")
    reported = _reported_status(result) if status == "succeeded" else None
    if kind == "workspace.merge":
        if reported:
            store.update_workspace_status(
                reported[0],
                reported[1],
                {"mergeResult": result, "mergeCommandId": command["id"], "mergedAt": now},
                now,
            )
        elif status == "failed" and command.get("correlationId"):
            workspace = store.get_workspace(command["correlationId"])
            if workspace and workspace["status"] == "merge_planned":
                store.update_workspace_status(
                    workspace["id"],
                    "review_requested",
                    {
                        "mergeCommandId": command["id"],
                        "mergeError": command.get("error") or "merge failed",
                    },
                    now,
                )
    elif kind == "workspace.reconcile" and reported:
        workspace = store.get_workspace(reported[0])
        if workspace and workspace["status"] in ("active", "ready"):
            store.update_workspace_status(
                reported[0],
                reported[1],
                {
                    "reconcileResult": result,
                    "reconcileCommandId": command["id"],
                    "reconciledAt": now,
                },
                now,
            )
    elif kind == "workspace.cleanup" and status == "succeeded":
        workspace_id = command.get("correlationId")
        if not workspace_id and isinstance(result, dict):
            workspace_id = result.get("workspaceId")
        if isinstance(workspace_id, str) and store.get_workspace(workspace_id):
            store.update_workspace_status(
                workspace_id,
                "cleaned",
                {"cleanupResult": result, "cleanupCommandId": command["id"], "cleanedAt": now},
                now,
            )
