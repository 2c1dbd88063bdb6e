"""Routes that reach a workspace's owning host: git-state/diff/merge-preview proxies, orphans."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from hostd.devrelay.context import HTTP, SETTINGS, STORE, TOKEN, now_ms
from hostd.devrelay.middleware import TOKEN_HEADER
from hostd.devrelay.model import TERMINAL_WORKSPACE_STATUSES, path_within_base, resolve
from hostd.devrelay.orchestrators import listed
from hostd.devrelay.store import Record
from hostd.devrelay.validate import error, json_object, opt_str

# What JavaScript's encodeURIComponent leaves unescaped besides letters, digits and "-_.".
_URI_COMPONENT_SAFE = "!~*'()"


def _headers(app: web.Application) -> dict[str, str]:
    token = app[TOKEN]
    return {TOKEN_HEADER: token} if token else {}


def _host_url(orch: Record, path: str, query: str) -> URL:
    return URL(f"{orch['apiUrl'].rstrip('/')}{path}?{query}", encoded=True)


def _online_with_api(app: web.Application) -> list[Record]:
    return [orch for orch in listed(app) if orch["status"] == "online" and orch.get("apiUrl")]


def _unavailable(reason: str) -> web.Response:
    return web.json_response({"available": False, "reason": reason})


async def _proxy(request: web.Request, host_path: str, extra: dict[str, str]) -> web.Response:
    app = request.app
    workspace = app[STORE].get_workspace(request.match_info["id"])
    if workspace is None:
        return error("workspace not found", 404)
    if workspace["mode"] != "isolated" or not workspace.get("worktreePath"):
        return _unavailable("no isolated worktree")
    orch = next(
        (
            o
            for o in _online_with_api(app)
            if path_within_base(workspace.get("sourceCwd"), o.get("baseDir"))
        ),
        None,
    )
    if orch is None:
        return _unavailable("owning orchestrator offline")
    query = {"path": workspace["worktreePath"]}
    for name in ("baseRef", "baseSha"):
        if workspace.get(name):
            query[name] = workspace[name]
    query.update(extra)
    timeout = app[SETTINGS].host_timeout_s
    try:
        async with app[HTTP].get(
            _host_url(orch, host_path, urlencode(query)),
            headers=_headers(app),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as res:
            body = await res.read()
            content_type = res.headers.get("Content-Type") or "application/json"
    except TimeoutError:
        return _unavailable(f"orchestrator unreachable: timed out after {timeout:g}s")
    except aiohttp.ClientError as exc:
        return _unavailable(f"orchestrator unreachable: {exc}")
    return web.Response(body=body, status=res.status, headers={"Content-Type": content_type})


async def git_state(request: web.Request) -> web.Response:
    return await _proxy(request, "/api/workspace/state", {})


async def merge_preview(request: web.Request) -> web.Response:
    strategy = request.query.get("strategy")
    return await _proxy(
        request, "/api/workspace/merge-preview", {"strategy": strategy} if strategy else {}
    )


async def diff(request: web.Request) -> web.Response:
    patch = request.query.get("patch")
    return await _proxy(request, "/api/workspace/diff", {"patch": "0"} if patch == "0" else {})


async def _probe(app: web.Application, orch: Record, repo_root: str) -> dict[str, Any] | None:
    query = f"path={quote(repo_root, safe=_URI_COMPONENT_SAFE)}"
    try:
        async with app[HTTP].get(
            _host_url(orch, "/api/workspace/probe", query),
            headers=_headers(app),
            timeout=aiohttp.ClientTimeout(total=app[SETTINGS].host_timeout_s),
        ) as res:
            if not res.ok:
                return None
            probe = await res.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None
    return probe if isinstance(probe, dict) else None


async def orphans(request: web.Request) -> web.Response:
    app = request.app
    hosts = _online_with_api(app)
    if not hosts:
        return web.json_response({"orphans": [], "reason": "no online orchestrators"})
    workspaces = app[STORE].list_workspaces()
    repo_roots = list(dict.fromkeys(ws["repoRoot"] for ws in workspaces if ws.get("repoRoot")))
    found: list[dict[str, Any]] = []
    for repo_root in repo_roots:
        orch = next((o for o in hosts if path_within_base(repo_root, o.get("baseDir"))), None)
        probe = await _probe(app, orch, repo_root) if orch else None
        if probe is None:
            continue
        rows = {
            resolve(ws["worktreePath"]): ws
            for ws in workspaces
            if ws.get("repoRoot") == repo_root and ws.get("worktreePath")
        }
        worktrees = probe.get("worktrees")
        for worktree in worktrees if isinstance(worktrees, list) else []:
            path = worktree.get("path") if isinstance(worktree, dict) else None
            branch = worktree.get("branch") if isinstance(worktree, dict) else None
            if not isinstance(path, str) or not path or resolve(path) == resolve(repo_root):
                continue
            if not isinstance(branch, str) or not branch.startswith("agent/"):
                continue
            row = rows.get(resolve(path))
            if row and row["status"] not in TERMINAL_WORKSPACE_STATUSES:
                continue
            orphan = {"worktreePath": path, "repoRoot": repo_root, "branch": branch}
            if isinstance(worktree.get("headSha"), str):
                orphan["headSha"] = worktree["headSha"]
            found.append({**orphan, "hadTerminalRow": row is not None})
    return web.json_response({"orphans": found})


async def reclaim_orphan(request: web.Request) -> web.Response:
    body = json_object(request)
    worktree_path = opt_str(body, "worktreePath", max_len=1000)
    repo_root = opt_str(body, "repoRoot", max_len=1000)
    branch = opt_str(body, "branch", max_len=240)
    if not worktree_path or not repo_root:
        return error("worktreePath and repoRoot required")
    store = request.app[STORE]
    live = next(
        (
            ws
            for ws in store.list_workspaces()
            if ws.get("worktreePath")
            and resolve(ws["worktreePath"]) == resolve(worktree_path)
            and ws["status"] not in TERMINAL_WORKSPACE_STATUSES
        ),
        None,
    )
    if live:
        return error(
            f"path backs live workspace {live['id']};"
            " clean it through the workspace, not orphan reclaim",
            409,
        )
    orch = next(
        (
            o
            for o in listed(request.app)
            if o["status"] == "online" and path_within_base(repo_root, o.get("baseDir"))
        ),
        None,
    )
    if orch is None:
        return error("no online orchestrator owns this path", 409)
    params: dict[str, Any] = {
        "action": "cleanup",
        "worktreePath": worktree_path,
        "repoRoot": repo_root,
    }
    if branch:
        params["branch"] = branch
    params.update(deleteBranch=True, reclaim=True, requestedBy="dashboard", requestedAt=now_ms())
    command = store.create_command("workspace.cleanup", orch["agentId"], params, now_ms())
    return web.json_response({"command": command}, status=202)
