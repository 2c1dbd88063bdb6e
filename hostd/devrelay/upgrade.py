"""The `upgrade` orchestrator action and its settlement on register and heartbeat."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from hostd import SEMVER
from hostd.devrelay.context import SETTINGS, STORE, now_ms
from hostd.devrelay.store import TERMINAL_COMMAND_STATUSES, Record
from hostd.devrelay.validate import ValidationError, error, json_object, opt_str, opt_str_list

SEMVER_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?")
UPGRADE_PROVIDERS = ("auto", "all", "codex", "claude", "orchestrator")
ACTIONS = ("upgrade",)
_CORE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")


def _core(version: str) -> tuple[int, int, int] | None:
    match = _CORE.match(version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def compare_semver_core(a: str, b: str) -> int:
    """Compare major.minor.patch only; 0 when either side has no such core."""
    ca, cb = _core(a), _core(b)
    if ca is None or cb is None:
        return 0
    return (ca > cb) - (ca < cb)


def settle_upgrade(app: web.Application, orch: Record) -> Record:
    """Settle a pending upgrade by the exact version string the host now reports."""
    upgrade = orch.get("upgrade")
    if not upgrade or upgrade.get("status") != "pending":
        return orch
    store, now = app[STORE], now_ms()
    reported = orch.get("version")
    command = store.get_command(upgrade["commandId"]) if upgrade.get("commandId") else None
    live = command is not None and command["status"] not in TERMINAL_COMMAND_STATUSES
    if reported and reported == upgrade["desiredVersion"]:
        result: dict[str, Any] = {"version": reported}
        if upgrade.get("fromVersion"):
            result["fromVersion"] = upgrade["fromVersion"]
        if live:
            store.update_command(command["id"], "succeeded", now, result=result)
        store.set_upgrade(orch["id"], {**upgrade, "status": "succeeded", "settledAt": now})
    elif now - upgrade["requestedAt"] > app[SETTINGS].upgrade_deadline_ms:
        message = (
            f"upgrade timed out; orchestrator still reports {reported or 'unknown'}"
            f" (wanted {upgrade['desiredVersion']})"
        )
        if live:
            store.update_command(command["id"], "failed", now, error=message)
        store.set_upgrade(
            orch["id"], {**upgrade, "status": "failed", "settledAt": now, "error": message}
        )
    else:
        return orch
    return store.get_orchestrator(orch["id"]) or orch


async def post_action(request: web.Request) -> web.Response:
    body = json_object(request)
    store = request.app[STORE]
    orch = store.get_orchestrator(request.match_info["id"])
    if orch is None:
        return error("orchestrator not found", 404)
    action = opt_str(body, "action", max_len=40)
    if action is None:
        return error("action required")
    if action not in ACTIONS:
        raise ValidationError(f"action must be one of: {', '.join(ACTIONS)}")
    target_version = opt_str(body, "targetVersion", max_len=80) or SEMVER
    if not SEMVER_RE.fullmatch(target_version):
        return error("targetVersion must be a semver like 0.10.20")
    force = body.get("force") is True
    requested = opt_str_list(body, "providers")
    providers = [p for p in (requested or ["orchestrator"]) if p in UPGRADE_PROVIDERS]
    if not providers:
        return error(f"providers must be any of: {', '.join(UPGRADE_PROVIDERS)}")
    current = orch.get("version")
    if not force and current and compare_semver_core(target_version, current) < 0:
        return error(
            f"refusing downgrade {current} → {target_version}; pass force to override", 409
        )
    settings, requested_at = request.app[SETTINGS], now_ms()
    command = store.create_command(
        "orchestrator.upgrade",
        orch["agentId"],
        {
            "targetVersion": target_version,
            "providers": providers,
            "force": force,
            "orchestratorId": orch["id"],
            "requestedBy": "dashboard",
            "requestedAt": requested_at,
        },
        requested_at,
        ttl_ms=settings.upgrade_deadline_ms + 5 * 60_000,
    )
    state: dict[str, Any] = {
        "desiredVersion": target_version,
        "status": "pending",
        "commandId": command["id"],
        "providers": providers,
        "requestedBy": "dashboard",
        "requestedAt": requested_at,
    }
    if current:
        state["fromVersion"] = current
    store.set_upgrade(orch["id"], state)
    return web.json_response(
        {"ok": True, "action": action, "command": command, "targetVersion": target_version},
        status=202,
    )
