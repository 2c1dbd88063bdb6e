"""The OpenAPI 3 document of the host API (a test keeps it in step with the routes)."""

from __future__ import annotations

from functools import cache
from typing import Any

from hostd import SEMVER

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_BOOL = {"type": "boolean"}
_TRUE = {"type": "boolean", "enum": [True]}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _query(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_PATH = _query("path", "Folder to inspect; default base_dir. Must lie inside base_dir.")
_BASE_REF = _query("baseRef", "Base branch or ref to compare against.")
_BASE_SHA = _query("baseSha", "Base commit, used when baseRef does not resolve.")
_ERROR = _obj({"error": _STR}, ("error",))

_WORKTREE = _obj(
    {
        "path": _STR,
        "headSha": _STR,
        "branch": _STR,
        "bare": _TRUE,
        "detached": _TRUE,
        "locked": _TRUE,
        "prunable": _TRUE,
        "reason": _STR,
    },
    ("path",),
)
_PROBE = _obj(
    {
        "path": _STR,
        "isGitRepo": _BOOL,
        "repoRoot": _STR,
        "branch": _STR,
        "headSha": _STR,
        "dirty": _BOOL,
        "detached": _BOOL,
        "worktrees": _array(_WORKTREE),
        "error": _STR,
    },
    ("path", "isGitRepo"),
)
_UNMERGED = {"unmergedAhead": _INT, "unmergedShas": _array(_STR)}
_STATE = _obj(
    {
        "error": _STR,
        "dirty": _BOOL,
        "dirtyCount": _INT,
        "branch": _STR,
        "lastCommit": _obj({"sha": _STR, "message": _STR, "at": _INT}, ("sha", "message", "at")),
        "baseRef": _STR,
        "behind": _INT,
        "ahead": _INT,
        **_UNMERGED,
        "landed": _TRUE,
        "landedSha": _STR,
        "strandedBranches": _array(_obj({"branch": _STR, **_UNMERGED}, ("branch",))),
        "strandedUnmergedCommits": _INT,
    }
)
_DIFF_FILE = _obj(
    {
        "path": _STR,
        "binary": _BOOL,
        "additions": _INT,
        "deletions": _INT,
        "oldPath": _STR,
        "newPath": _STR,
    },
    ("path", "binary"),
)
_DIFF = _obj(
    {
        "files": _array(_DIFF_FILE),
        "baseRef": _STR,
        "ahead": _INT,
        "dirtyCount": _INT,
        "patch": _STR,
        "truncated": _TRUE,
        "error": _STR,
    },
    ("files",),
)
_PREVIEW = _obj(
    {
        "strategy": {"type": "string", "enum": ["pr", "rebase-ff"]},
        "hasRemote": _BOOL,
        "ghAvailable": _BOOL,
        "baseRef": _STR,
        "error": _STR,
        "ahead": _INT,
        "behind": _INT,
        "unmergedAhead": _INT,
        "landed": _TRUE,
        "landedSha": _STR,
        "headSha": _STR,
        "dirtyCount": _INT,
        "reason": _STR,
        "noop": _TRUE,
        "conflict": _BOOL,
        "cleanFastForward": _BOOL,
        "conflictFiles": _array(_STR),
        "gates": _array(_STR),
    },
    ("strategy", "hasRemote", "ghAvailable"),
)
_HEALTH = _obj(
    {
        "status": {"type": "string", "enum": ["ok"]},
        "ok": _TRUE,
        "id": _STR,
        "hostname": _STR,
        "version": _STR,
        "degraded": _BOOL,
        "relay": _obj(
            {
                "connected": _BOOL,
                "degraded": _BOOL,
                "consecutiveHeartbeatFailures": _INT,
                "lastHeartbeatOkAt": _INT,
                "lastError": _STR,
            }
        ),
        "registration": _obj(
            {
                "registered": _BOOL,
                "degraded": _BOOL,
                "consecutiveFailures": _INT,
                "nextRetryInMs": _INT,
            }
        ),
        "commandLoop": _obj(
            {
                "inFlight": _INT,
                "stalled": _BOOL,
                "running": _array(_obj({"id": _STR, "type": _STR, "forMs": _INT})),
            }
        ),
        "gitWorkers": _obj(
            {
                "degraded": _BOOL,
                "workers": _INT,
                "busy": _INT,
                "extra": _INT,
                "error": _STR,
            },
            ("degraded", "workers", "busy", "extra"),
        ),
        "uptimeS": {"type": "number"},
    },
    (
        "status",
        "ok",
        "id",
        "hostname",
        "version",
        "degraded",
        "relay",
        "registration",
        "commandLoop",
        "gitWorkers",
        "uptimeS",
    ),
)
_VERSION = _obj(
    {
        "package": _obj({"name": _STR, "version": _STR}),
        "version": _STR,
        "protocolVersion": _INT,
        "capabilities": {"type": "object", "additionalProperties": _BOOL},
        "python": _STR,
        "pygit2": _STR,
        "libgit2": _STR,
    },
    ("package", "version", "protocolVersion", "capabilities"),
)


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _workspace_op(summary: str, params: list[dict[str, Any]], body: dict[str, Any]):
    return {
        "get": {
            "summary": summary,
            "security": [{"relayToken": []}, {"relayTokenQuery": []}],
            "parameters": params,
            "responses": {
                "200": _json("Result; git problems are reported in `error`.", body),
                "400": _json("Bad path parameter.", _ERROR),
                "401": _json("Missing or wrong token.", _ERROR),
                "503": _json("No git worker could do the work.", _ERROR),
                "504": _json("The request deadline passed.", _ERROR),
            },
        }
    }


def _open_op(summary: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [], "responses": {"200": response}}}


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "hostd host API", "version": SEMVER},
        "components": {
            "securitySchemes": {
                "relayToken": {"type": "apiKey", "in": "header", "name": "X-Agent-Relay-Token"},
                "relayTokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            }
        },
        "paths": {
            "/api/workspace/probe": _workspace_op(
                "Is the path in a repository; its HEAD, dirtiness and worktrees.", [_PATH], _PROBE
            ),
            "/api/workspace/state": _workspace_op(
                "Git state of a worktree against a base.", [_PATH, _BASE_REF, _BASE_SHA], _STATE
            ),
            "/api/workspace/diff": _workspace_op(
                "Per-file numstat and a capped unified patch.",
                [_PATH, _BASE_REF, _BASE_SHA, _query("patch", "`0` leaves the patch out.")],
                _DIFF,
            ),
            "/api/workspace/merge-preview": _workspace_op(
                "Would a merge be a clean fast-forward, would it conflict, which strategy.",
                [
                    _PATH,
                    _BASE_REF,
                    _BASE_SHA,
                    _query("strategy", "pr, rebase-ff; anything else means auto."),
                ],
                _PREVIEW,
            ),
            "/api/health": _open_op("Liveness and relay link state.", _json("Health.", _HEALTH)),
            "/api/version": _open_op("Versions and capabilities.", _json("Version.", _VERSION)),
            "/api/openapi.json": _open_op(
                "This document.", _json("OpenAPI document.", {"type": "object"})
            ),
            "/metrics": _open_op(
                "Prometheus metrics.",
                {
                    "description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            ),
        },
    }
