"""The OpenAPI 3 document of the host API (a test keeps it in step with the routes)."""

from __future__ import annotations

from functools import cache
from typing import Any

from hostd import SEMVER

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_BOOL = {"type": "boolean"}
_TRUE = {"type": "boolean", "enum": [True]}


FIELD_DOCS = {
    "path": "The path as checked: absolute, normalised.",
    "isGitRepo": "The path lies in the working tree of a repository inside base_dir.",
    "repoRoot": "Real path of the top of the working tree holding `path` (a linked worktree's "
    "own root).",
    "branch": "Short name of the checked-out branch; absent when HEAD is detached.",
    "headSha": "Full commit id of HEAD; absent on an unborn branch.",
    "dirty": "`dirtyCount > 0`.",
    "detached": "HEAD is detached.",
    "worktrees": "Every worktree of the repository: the main one first, then linked ones by path.",
    "bare": "Only when true.",
    "locked": "Only when true.",
    "prunable": "Only when true: git would prune this worktree.",
    "reason": "Why a worktree is locked or prunable; in merge-preview, why nothing is predicted.",
    "error": "A git problem (not a repository, unborn HEAD, no merge base, ...): the request "
    "itself succeeded.",
    "dirtyCount": "Lines `git status --porcelain` prints: staged, unstaged, unmerged and "
    "untracked entries (an untracked folder once, a staged rename once).",
    "lastCommit": "HEAD's commit: id, subject line, commit time in milliseconds.",
    "baseRef": "The base as resolved (merge-preview: the local branch name when it is one).",
    "behind": "Commits in `HEAD..base`.",
    "ahead": "Commits in `base..HEAD`.",
    "unmergedAhead": "Of the `ahead` commits, those whose change has not reached the landing base "
    "(what `git cherry <landing> HEAD` marks `+`); only when `ahead > 0`.",
    "unmergedShas": "The first 20 unmerged commits, oldest first, 8 hex characters each.",
    "landed": "Only `true`: the branch is ahead but all its changes are on the landing base.",
    "landedSha": "The base commit the work was found on.",
    "strandedBranches": "Up to 10 sibling branches (`<stem>` or `<stem>-<n>`) holding unmerged "
    "commits that HEAD does not contain.",
    "strandedUnmergedCommits": "The sum of the stranded branches' `unmergedAhead`.",
    "files": "One entry per changed file, renames detected.",
    "binary": "Git treats the file as binary (content or attributes).",
    "additions": "Added lines; absent for binaries.",
    "deletions": "Deleted lines; absent for binaries.",
    "oldPath": "The old path of a rename, unquoted.",
    "newPath": "The file's path (the new one for a rename), unquoted.",
    "patch": "Unified diff with 3 lines of context, cut at 200 000 characters; absent when empty.",
    "truncated": "Only `true`: the patch was cut.",
    "strategy": "`pr` or `rebase-ff`, never `auto`: auto picks `pr` when the repository has an "
    "`origin` remote, `gh` is on PATH and the base is a local branch.",
    "hasRemote": "The repository has a remote named `origin`.",
    "ghAvailable": "A `gh` executable is on PATH.",
    "noop": "Only `true`: nothing to land (no commits, or all already landed).",
    "conflict": "Landing would stop on a conflict; absent for unrelated histories.",
    "cleanFastForward": "No conflict and `behind == 0`.",
    "conflictFiles": "Conflicting paths, at most 50.",
    "status": "Always `ok` while the process serves.",
    "ok": "Always `true` while the process serves.",
    "id": "The host id (`orchestrator-<id>` at the relay).",
    "hostname": "The host name reported to the relay.",
    "version": "hostd's version (semver).",
    "degraded": "The relay link or the registration is degraded.",
    "relay": "Heartbeat state of the relay link.",
    "registration": "Registration state with the relay.",
    "commandLoop": "Commands running now and whether the poll loop is stalled.",
    "uptimeS": "Seconds since the API started.",
    "connected": "The last heartbeat (or registration) reached the relay.",
    "consecutiveHeartbeatFailures": "Heartbeats failed in a row.",
    "lastHeartbeatOkAt": "When a heartbeat last succeeded, milliseconds since the epoch.",
    "lastError": "The last relay call's error.",
    "registered": "The relay accepted the registration.",
    "consecutiveFailures": "Registration attempts failed in a row.",
    "nextRetryInMs": "When the next registration attempt is due.",
    "inFlight": "Commands running now.",
    "stalled": "The poll task died, or one cycle has run longer than max(60 s, 5 x "
    "relay.request_timeout).",
    "running": "The running commands.",
    "protocolVersion": "Version of the relay protocol hostd speaks.",
    "capabilities": "What this hostd can do (`hostApi` and one entry per command type).",
}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    props = {
        name: {"description": FIELD_DOCS[name], **schema} if name in FIELD_DOCS else schema
        for name, schema in props.items()
    }
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _doc(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


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
        "path": _doc(_STR, "Absolute real path, as git records it."),
        "headSha": _doc(_STR, "HEAD's commit id; forty zeros on an unborn branch."),
        "branch": _STR,
        "bare": _TRUE,
        "detached": _doc(_TRUE, "Only when true."),
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
        "lastCommit": _obj(
            {
                "sha": _doc(_STR, "Full commit id."),
                "message": _doc(_STR, "The subject line."),
                "at": _doc(_INT, "Commit time, milliseconds since the epoch."),
            },
            ("sha", "message", "at"),
        ),
        "baseRef": _STR,
        "behind": _INT,
        "ahead": _INT,
        **_UNMERGED,
        "landed": _TRUE,
        "landedSha": _STR,
        "strandedBranches": _array(
            _obj({"branch": _doc(_STR, "The stranded branch."), **_UNMERGED}, ("branch",))
        ),
        "strandedUnmergedCommits": _INT,
    }
)
_DIFF_FILE = _obj(
    {
        "path": _doc(
            _STR,
            "Exactly as `git diff --numstat` prints it (`old => new` for renames, C-quoted "
            "for unusual names).",
        ),
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
        "dirtyCount": _doc(
            _INT,
            "As in state; with a base, without one and with one that does not resolve "
            "(absent only when the path is not a repository).",
        ),
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
                "linkRestarts": _doc(_INT, "Times the relay link task failed and was restarted."),
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
                "running": _array(
                    _obj(
                        {
                            "id": _doc(_STR, "The command id."),
                            "type": _doc(_STR, "The command type."),
                            "forMs": _doc(_INT, "Milliseconds since it started."),
                        }
                    )
                ),
            }
        ),
        "journal": _obj(
            {
                "ok": _doc(_BOOL, "False while the command journal cannot write."),
                "failures": _doc(_INT, "Journal operations that failed since start."),
                "lastError": _doc(_STR, "The last journal failure."),
            },
            ("ok", "failures"),
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
