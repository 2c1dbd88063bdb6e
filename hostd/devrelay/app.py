"""The development relay application: routes, start-up and the blocking CLI entry."""

from __future__ import annotations

import asyncio
import errno
import signal
import sys
from collections.abc import AsyncIterator

from aiohttp import ClientSession, web

from hostd.devrelay import commands, dev, hosts, orchestrators, upgrade, workspaces
from hostd.devrelay.context import (
    FAULTS,
    HTTP,
    REQUEST_LOG,
    SETTINGS,
    STORE,
    TOKEN,
    RelaySettings,
)
from hostd.devrelay.faults import Faults
from hostd.devrelay.middleware import relay_middleware
from hostd.devrelay.requestlog import RequestLog
from hostd.devrelay.store import Store

ROUTES = [
    ("POST", "/api/orchestrators", orchestrators.register),
    ("GET", "/api/orchestrators", orchestrators.list_all),
    ("GET", "/api/orchestrators/{id}", orchestrators.get_one),
    ("POST", "/api/orchestrators/{id}/heartbeat", orchestrators.heartbeat),
    ("POST", "/api/orchestrators/{id}/actions", upgrade.post_action),
    ("GET", "/api/commands", commands.list_commands),
    ("POST", "/api/commands", commands.create_command),
    ("GET", "/api/commands/{id}", commands.get_command),
    ("PATCH", "/api/commands/{id}", commands.patch_command),
    ("GET", "/api/workspaces", workspaces.list_workspaces),
    ("POST", "/api/workspaces", workspaces.create_workspace),
    # Static segments before {id}, so "orphans" is not taken for a workspace id.
    ("GET", "/api/workspaces/orphans", hosts.orphans),
    ("POST", "/api/workspaces/orphans/reclaim", hosts.reclaim_orphan),
    ("GET", "/api/workspaces/{id}", workspaces.get_workspace),
    ("DELETE", "/api/workspaces/{id}", workspaces.delete_workspace),
    ("POST", "/api/workspaces/{id}/actions", workspaces.post_action),
    ("GET", "/api/workspaces/{id}/git-state", hosts.git_state),
    ("GET", "/api/workspaces/{id}/merge-preview", hosts.merge_preview),
    ("GET", "/api/workspaces/{id}/diff", hosts.diff),
    ("GET", "/api/_dev/faults", dev.get_faults),
    ("POST", "/api/_dev/faults", dev.post_faults),
    ("DELETE", "/api/_dev/faults", dev.delete_faults),
    ("GET", "/api/_dev/requests", dev.get_requests),
    ("DELETE", "/api/_dev/requests", dev.delete_requests),
]


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with ClientSession() as session:
        app[HTTP] = session
        yield


async def _release_hung_requests(app: web.Application) -> None:
    app[FAULTS].release_all()


def create_app(
    store: Store, token: str | None, settings: RelaySettings | None = None
) -> web.Application:
    """The relay app over `store`; requests need `token` (X-Agent-Relay-Token) unless None."""
    settings = settings or RelaySettings()
    app = web.Application(middlewares=[relay_middleware])
    app[STORE] = store
    app[TOKEN] = token
    app[SETTINGS] = settings
    app[FAULTS] = Faults()
    app[REQUEST_LOG] = RequestLog(settings.request_log_size)
    app.cleanup_ctx.append(_http_client)
    app.on_shutdown.append(_release_hung_requests)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


def _owning_store(
    db_path: str, token: str | None, settings: RelaySettings | None
) -> web.Application:
    store = Store(db_path)

    async def close_store(_app: web.Application) -> None:
        store.close()

    app = create_app(store, token, settings)
    app.on_cleanup.append(close_store)
    return app


async def start(
    host: str,
    port: int,
    db_path: str = ":memory:",
    token: str | None = None,
    *,
    settings: RelaySettings | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve on host:port (0 picks a free port); stop with `await runner.cleanup()`."""
    runner = web.AppRunner(_owning_store(db_path, token, settings), shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{url_host}:{bound_port}"


def listen_error(what: str, host: str, port: int, exc: OSError) -> str:
    """One line for a listen address that cannot be bound."""
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
    return f"{what}: cannot listen on {host}:{port}: {reason}"


def run(
    host: str,
    port: int,
    db_path: str = ":memory:",
    token: str | None = None,
    *,
    settings: RelaySettings | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM (the `hostd dev-relay` command); the exit code."""
    return asyncio.run(_serve(host, port, db_path, token, settings))


async def _serve(
    host: str, port: int, db_path: str, token: str | None, settings: RelaySettings | None
) -> int:
    try:
        runner, url = await start(host, port, db_path, token, settings=settings)
    except OSError as exc:
        print(listen_error("hostd dev-relay", host, port, exc), file=sys.stderr)
        return 1
    auth = "token required (X-Agent-Relay-Token)" if token else "no token: every request accepted"
    print(
        f"hostd development relay on {url} ({auth}; database {db_path})\n"
        "A development and test tool, not a production relay.",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0
