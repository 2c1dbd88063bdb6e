"""Workspace records and the dashboard actions on them (merge and cleanup queue commands)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from hostd.devrelay.context import STORE, now_ms
from hostd.devrelay.model import WORKSPACE_MODES, WORKSPACE_STATUSES
from hostd.devrelay.orchestrators import owners_of
from hostd.devrelay.store import Record
from hostd.devrelay.validate import (
    ValidationError,
    error,
    json_object,
    opt_enum,
    opt_str,
    opt_type,
)

ACTIONS = (
    "status",
    "ready",
    "conflict-found",
    "request-review",
    "merge-plan",
    "merge",
    "abandon",
    "cleanup",
)
STATUS_BY_ACTION = {
    "ready": "ready",
    "conflict-found": "conflict",
    "request-review": "review_requested",
    "merge-plan": "merge_planned",
    "merge": "merge_planned",
    "abandon": "abandoned",
    "cleanup": "cleanup_requested",
}
MERGE_STRATEGIES = ("pr", "rebase-ff", "auto")
_PATH_FIELDS = ("sourceCwd", "repoRoot", "worktreePath")
_GIT_FIELDS = ("branch", "baseRef", "baseSha")


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if value is not None}


async def list_workspaces(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    workspaces = request.app[STORE].list_workspaces()
    if status is not None:
        workspaces = [ws for ws in workspaces if ws["status"] == status]
    return web.json_response(workspaces)


async def create_workspace(request: web.Request) -> web.Response:
    body = json_object(request)
    record: dict[str, Any] = {
        "id": opt_str(body, "id", max_len=160) or f"ws-{uuid.uuid4().hex[:12]}",
        "mode": opt_enum(body, "mode", WORKSPACE_MODES, "isolated"),
        "status": opt_enum(body, "status", WORKSPACE_STATUSES, "active"),
        "metadata": opt_type(body, "metadata", dict, "an object") or {},
    }
    for name in _PATH_FIELDS:
        value = opt_str(body, name, max_len=4096)
        if value is not None and not value.startswith("/"):
            raise ValidationError(f"{name} must be an absolute path")
        record[name] = value
    for name in _GIT_FIELDS:
        record[name] = opt_str(body, name, max_len=240)
    record["sourceCwd"] = record["sourceCwd"] or record["repoRoot"]
    store = request.app[STORE]
    if store.get_workspace(record["id"]) is not None:
        return error(f"workspace {record['id']} already exists", 409)
    return web.json_response(store.create_workspace(record, now_ms()), status=201)


async def get_workspace(request: web.Request) -> web.Response:
    workspace = request.app[STORE].get_workspace(request.match_info["id"])
    if workspace is None:
        return error("workspace not found", 404)
    return web.json_response(workspace)


async def delete_workspace(request: web.Request) -> web.Response:
    store = request.app[STORE]
    workspace = store.get_workspace(request.match_info["id"])
    if workspace is None or not store.delete_workspace(workspace["id"]):
        return error("workspace not found", 404)
    return web.json_response({"deleted": True, "workspace": workspace})


def _merge_options(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "strategy": opt_enum(body, "strategy", MERGE_STRATEGIES, "auto"),
        "deleteBranch": body.get("deleteBranch") is not False,
        "prTitle": opt_str(body, "prTitle", max_len=240),
        "prBody": opt_str(body, "prBody", max_len=8000),
    }


def _command_plan(
    app: web.Application, workspace: Record, action: str, body: dict[str, Any]
) -> tuple[Record, str, dict[str, Any]] | web.Response:
    """(owner, command type, params) for merge/cleanup, or the 409 refusing it."""
    owners = owners_of(app, workspace.get("sourceCwd"))
    online = next((orch for orch in owners if orch["status"] == "online"), None)
    base = {
        "workspaceId": workspace["id"],
        "repoRoot": workspace.get("repoRoot"),
        "worktreePath": workspace.get("worktreePath"),
        "branch": workspace.get("branch"),
        "requestedBy": opt_str(body, "agentId", max_len=240) or "dashboard",
        "requestedAt": now_ms(),
    }
    if action == "merge":
        if online is None:
            return error("no online orchestrator available for workspace merge", 409)
        params = {
            "action": "merge",
            **base,
            "baseRef": workspace.get("baseRef"),
            "baseSha": workspace.get("baseSha"),
            **_merge_options(body),
        }
        return online, "workspace.merge", _compact(params)
    owner = online or (owners[0] if owners else None)
    if owner is None:
        return error(
            "no orchestrator owns this workspace path;"
            " use DELETE /api/workspaces/:id to purge the record",
            409,
        )
    params = {
        "action": "cleanup",
        **base,
        "deleteBranch": True,
        "queued": owner["status"] != "online",
    }
    return owner, "workspace.cleanup", _compact(params)


async def post_action(request: web.Request) -> web.Response:
    body = json_object(request)
    store = request.app[STORE]
    workspace = store.get_workspace(request.match_info["id"])
    if workspace is None:
        return error("workspace not found", 404)
    action = opt_enum(body, "action", ACTIONS)
    if action is None:
        return error("action required")
    agent_id = opt_str(body, "agentId", max_len=240)
    detail = opt_str(body, "detail", max_len=4000)
    metadata = opt_type(body, "metadata", dict, "an object") or {}
    requires_command = action in ("merge", "cleanup")
    if requires_command and (workspace["mode"] != "isolated" or not workspace.get("worktreePath")):
        return error(f"workspace {workspace['id']} has no worktree to {action}", 422)
    if action == "status":
        return web.json_response(workspace)
    plan = _command_plan(request.app, workspace, action, body) if requires_command else None
    if isinstance(plan, web.Response):
        return plan
    now = now_ms()
    updated = store.update_workspace_status(
        workspace["id"],
        STATUS_BY_ACTION[action],
        _compact({**metadata, "agentId": agent_id, "detail": detail}),
        now,
    )
    if updated is None:
        return error("workspace not found", 404)
    command = None
    if plan is not None:
        owner, type_, params = plan
        command = store.create_command(
            type_, owner["agentId"], params, now, correlation_id=workspace["id"]
        )
    return web.json_response(
        _compact({"workspace": updated, "command": command}), status=202 if plan else 200
    )
