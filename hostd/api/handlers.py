"""Route handlers: check parameters, run the git queries in worker processes, answer JSON."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import pygit2
from aiohttp import web

from hostd import PROTOCOL_VERSION, SEMVER, queries
from hostd.api.middleware import error
from hostd.api.openapi import openapi_document
from hostd.config import Config
from hostd.git.errors import PathError
from hostd.git.paths import check_request_path
from hostd.gitpool import GitPool, WorkerFailed
from hostd.health import LinkStatus
from hostd.metrics import CONTENT_TYPE_LATEST, Metrics
from hostd.recall import Recall

CAPABILITIES: dict[str, bool] = {"hostApi": True}

config_key = web.AppKey("config", Config)
pool_key = web.AppKey("pool", GitPool)
recall_key = web.AppKey("recall", Recall)
metrics_key = web.AppKey("metrics", Metrics)
link_key = web.AppKey("link", LinkStatus)
started_key = web.AppKey("started", float)
capabilities_key = web.AppKey("capabilities", dict)


def package_info() -> dict[str, str]:
    return {"name": "hostd", "version": SEMVER}


def _param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value if value else None


async def _workspace_query(
    request: web.Request, fn: Callable[..., Any], *extra: Any
) -> web.Response:
    app = request.app
    base_dir = app[config_key].base_dir
    try:
        path = check_request_path(request.query.get("path"), base_dir)
    except PathError as exc:
        return error(400, str(exc))
    pool, recall = app[pool_key], app[recall_key]
    query = (fn.__name__, path, *extra)
    text = recall.get(query, pool.quiet_since)
    if text is not None:
        app[metrics_key].recalled.inc()
    else:
        try:
            (text, ticket), link = await pool.run_traced(
                queries.as_json, fn, path, base_dir, *extra, key=path
            )
        except WorkerFailed as exc:
            return error(503, str(exc))
        if ticket is not None:
            recall.put(query, text, link, ticket)
    return web.Response(body=text, content_type="application/json", charset="utf-8")


async def probe(request: web.Request) -> web.Response:
    return await _workspace_query(request, queries.probe_body)


async def state(request: web.Request) -> web.Response:
    return await _workspace_query(
        request, queries.state_body, _param(request, "baseRef"), _param(request, "baseSha")
    )


async def diff(request: web.Request) -> web.Response:
    return await _workspace_query(
        request,
        queries.diff_body,
        _param(request, "baseRef"),
        _param(request, "baseSha"),
        request.query.get("patch") != "0",
        request.app[config_key].workspaces.diff_max_file_mb * 2**20,
    )


async def merge_preview(request: web.Request) -> web.Response:
    return await _workspace_query(
        request,
        queries.preview_body,
        _param(request, "baseRef"),
        _param(request, "baseSha"),
        _param(request, "strategy"),
        queries.gh_available(),
    )


async def health(request: web.Request) -> web.Response:
    cfg = request.app[config_key]
    body: dict[str, Any] = {
        "status": "ok",
        "ok": True,
        "id": cfg.id,
        "hostname": cfg.hostname,
        "version": SEMVER,
    }
    body.update(request.app[link_key].health())
    workers = request.app[pool_key].health()
    body["gitWorkers"] = workers
    body["degraded"] = body["degraded"] or workers["degraded"]
    body["uptimeS"] = round(time.monotonic() - request.app[started_key], 3)
    return web.json_response(body)


def version_body(capabilities: dict[str, bool] = CAPABILITIES) -> dict[str, Any]:
    return {
        "package": package_info(),
        "version": SEMVER,
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": capabilities,
        "python": platform.python_version(),
        "pygit2": pygit2.__version__,
        "libgit2": pygit2.LIBGIT2_VERSION,
    }


async def version(request: web.Request) -> web.Response:
    return web.json_response(version_body(request.app[capabilities_key]))


async def metrics(request: web.Request) -> web.Response:
    payload = request.app[metrics_key].render()
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


ROUTES: list[tuple[str, Callable[[web.Request], Any]]] = [
    ("/api/workspace/probe", probe),
    ("/api/workspace/state", state),
    ("/api/workspace/diff", diff),
    ("/api/workspace/merge-preview", merge_preview),
    ("/api/health", health),
    ("/api/version", version),
    ("/api/openapi.json", openapi),
    ("/metrics", metrics),
]
