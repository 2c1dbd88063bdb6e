"""The development relay over real loopback HTTP, against a stand-in host where hosts matter."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from hostd import SEMVER
from hostd.devrelay import RelaySettings, Store, create_app, start
from hostd.devrelay.model import path_within_base
from tests.relay_harness import wait_until

TOKEN = "relay-secret"
HEADER = "X-Agent-Relay-Token"
NO_BODY = object()
BASE = "/srv/hosts/h1"
REPO = f"{BASE}/repo"
WORKTREE = f"{BASE}/.agent-relay/workspaces/task one"


class Relay:
    """A relay under test, reached over HTTP through aiohttp's test client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        raw: bytes | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, Any]:
        headers = {} if token is None else {HEADER: token}
        kwargs: dict[str, Any] = {}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not NO_BODY:
            kwargs["json"] = body
        async with self.client.request(method, path, headers=headers, **kwargs) as res:
            text = await res.text()
            return res.status, json.loads(text) if text else None

    async def ok(self, method: str, path: str, body: Any = NO_BODY, status: int = 200) -> Any:
        got, reply = await self.call(method, path, body)
        assert got == status, (method, path, got, reply)
        return reply

    async def register(self, oid: str = "h1", **fields: Any) -> Any:
        body = {
            "id": oid,
            "hostname": f"{oid}.lan",
            "baseDir": BASE,
            "apiUrl": "http://127.0.0.1:9",
            "version": "0.5.0",
            "protocolVersion": 1,
            "package": {"name": "hostd", "version": "0.5.0"},
            "capabilities": {"relayCommandBus": True, "selfUpgrade": True},
            "providers": [],
            "providerStatus": {},
            "providerCatalog": [],
            "envKeys": [],
            "meta": {"pid": 42, "supervisor": "process"},
            **fields,
        }
        return await self.ok("POST", "/api/orchestrators", body)

    async def workspace(self, **fields: Any) -> dict[str, Any]:
        body = {
            "repoRoot": REPO,
            "worktreePath": WORKTREE,
            "branch": "agent/task-one",
            "baseRef": "main",
            "baseSha": "a" * 40,
            **fields,
        }
        return await self.ok("POST", "/api/workspaces", body, status=201)

    async def command(self, type_: str = "workspace.merge", **fields: Any) -> dict[str, Any]:
        body = {"type": type_, "target": "orchestrator-h1", "params": {}, **fields}
        return await self.ok("POST", "/api/commands", body, status=201)

    async def patch(self, cid: str, body: Any) -> tuple[int, Any]:
        return await self.call("PATCH", f"/api/commands/{cid}", body)


MakeRelay = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def make_relay(aiohttp_client: Any) -> AsyncIterator[MakeRelay]:
    stores: list[Store] = []

    async def make(token: str | None = TOKEN, **settings: Any) -> Relay:
        store = Store(":memory:")
        stores.append(store)
        return Relay(await aiohttp_client(create_app(store, token, RelaySettings(**settings))))

    yield make
    for store in stores:
        store.close()


@pytest.fixture
async def relay(make_relay: MakeRelay) -> Relay:
    return await make_relay()


class StandInHost:
    """A tiny host API returning canned JSON; it records what the relay asked."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.worktrees: list[dict[str, Any]] = []
        self.canned: dict[str, tuple[int, Any]] = {}
        self.hang: set[str] = set()
        self._release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/workspace/{name}", self._handle)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, _app: web.Application) -> None:
        self._release.set()

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append(
            {
                "name": name,
                "query": request.rel_url.raw_query_string,
                "token": request.headers.get(HEADER),
            }
        )
        if name in self.hang:
            await self._release.wait()
        if name in self.canned:
            status, body = self.canned[name]
            return web.json_response(body, status=status)
        if name == "probe":
            reply = {"path": request.query["path"], "isGitRepo": True, "worktrees": self.worktrees}
            return web.json_response(reply)
        return web.json_response({"route": name, "query": dict(request.query)})


@pytest.fixture
async def host(aiohttp_server: Any) -> tuple[StandInHost, str]:
    stand_in = StandInHost()
    server = await aiohttp_server(stand_in.app())
    return stand_in, str(server.make_url("")).rstrip("/")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# registration and heartbeat


async def test_register_stores_every_field_and_heartbeat_updates(relay: Relay) -> None:
    reply = await relay.register(extra={"kept": True})
    orch = reply["orchestrator"]
    assert reply["ok"] is True and "runtimeToken" not in reply
    assert orch["agentId"] == "orchestrator-h1" and orch["status"] == "online"
    assert orch["meta"] == {"pid": 42, "supervisor": "process"}
    assert orch["extra"] == {"kept": True} and orch["capabilities"]["selfUpgrade"] is True

    before = orch["lastHeartbeatAt"]
    body = {"version": "0.5.1", "package": {"name": "hostd", "version": "0.5.1"}}
    assert await relay.ok("POST", "/api/orchestrators/h1/heartbeat", body) == {"ok": True}
    orch = await relay.ok("GET", "/api/orchestrators/h1")
    assert orch["version"] == "0.5.1" and orch["package"]["version"] == "0.5.1"
    assert orch["lastHeartbeatAt"] >= before and orch["baseDir"] == BASE
    assert [o["id"] for o in await relay.ok("GET", "/api/orchestrators")] == ["h1"]


async def test_unknown_orchestrator_is_404(relay: Relay) -> None:
    status, body = await relay.call("POST", "/api/orchestrators/ghost/heartbeat", {})
    assert (status, body) == (404, {"error": "orchestrator not found"})
    status, body = await relay.call("GET", "/api/orchestrators/ghost")
    assert (status, body) == (404, {"error": "orchestrator not found"})


async def test_host_goes_offline_when_heartbeats_stop(make_relay: MakeRelay) -> None:
    relay = await make_relay(stale_ms=150)
    await relay.register()

    async def offline() -> bool:
        return (await relay.ok("GET", "/api/orchestrators/h1"))["status"] == "offline"

    await wait_until(offline, 5.0)
    await relay.ok("POST", "/api/orchestrators/h1/heartbeat", {})
    assert (await relay.ok("GET", "/api/orchestrators/h1"))["status"] == "online"


# auth


async def test_token_required_when_configured(relay: Relay) -> None:
    for token in (None, "wrong", ""):
        status, body = await relay.call("GET", "/api/commands", token=token)
        assert (status, body) == (401, {"error": "unauthorized"})
    assert await relay.ok("GET", "/api/commands") == []


async def test_no_token_configured_accepts_everyone(make_relay: MakeRelay) -> None:
    relay = await make_relay(token=None)
    assert (await relay.call("GET", "/api/commands", token=None))[0] == 200
    assert (await relay.call("GET", "/api/commands", token="anything"))[0] == 200


async def test_runtime_token_is_issued_accepted_and_rotated(make_relay: MakeRelay) -> None:
    relay = await make_relay(runtime_tokens=True)
    first = (await relay.register())["runtimeToken"]["token"]
    assert (await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}, token=first))[0] == 200
    second = (await relay.register())["runtimeToken"]["token"]
    assert second != first
    status, _ = await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}, token=first)
    assert status == 401
    assert (await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}, token=second))[0] == 200


# hostile input


HOSTILE = [
    ("POST", "/api/orchestrators", b"{not json", "invalid JSON body"),
    ("POST", "/api/orchestrators", b"", "body required"),
    ("POST", "/api/orchestrators", b"[1, 2]", "body required"),
    ("POST", "/api/orchestrators", {"hostname": "x"}, "id required"),
    ("POST", "/api/orchestrators", {"id": 7}, "id must be a string"),
    ("POST", "/api/orchestrators", {"id": "a/b"}, "id may contain only"),
    ("POST", "/api/orchestrators", {"id": "h", "protocolVersion": "1"}, "must be an integer"),
    ("POST", "/api/orchestrators", {"id": "h", "protocolVersion": True}, "must be an integer"),
    ("POST", "/api/orchestrators", {"id": "h", "capabilities": []}, "must be an object"),
    ("POST", "/api/orchestrators", {"id": "h", "providers": {}}, "providers must be an array"),
    ("POST", "/api/orchestrators", {"id": "h", "apiUrl": "ftp://x"}, "apiUrl must be an http"),
    ("POST", "/api/orchestrators", {"id": "h", "baseDir": "rel"}, "baseDir must be an absolute"),
    ("POST", "/api/orchestrators/h1/heartbeat", b"\xff\xfe", "invalid JSON body"),
    ("POST", "/api/orchestrators/h1/heartbeat", {"version": 5}, "version must be a string"),
    ("POST", "/api/orchestrators/h1/actions", {}, "action required"),
    ("POST", "/api/orchestrators/h1/actions", {"action": "restart"}, "action must be one of"),
    ("POST", "/api/orchestrators/h1/actions", {"action": "upgrade", "targetVersion": 1}, "string"),
    ("PATCH", "/api/commands/{cid}", b"nope", "invalid JSON body"),
    ("PATCH", "/api/commands/{cid}", {}, "status required"),
    ("PATCH", "/api/commands/{cid}", {"status": "done"}, "status must be one of"),
    ("PATCH", "/api/commands/{cid}", {"status": 1}, "status must be a string"),
    ("PATCH", "/api/commands/{cid}", {"status": "running", "result": "x"}, "result must be an"),
    ("PATCH", "/api/commands/{cid}", {"status": "failed", "error": {}}, "error must be a string"),
    ("GET", "/api/commands?limit=abc", NO_BODY, "limit must be an integer"),
    ("GET", "/api/commands?limit=0", NO_BODY, "limit must be between"),
    ("GET", "/api/commands?status=bogus", NO_BODY, "status must be one of"),
    ("POST", "/api/commands", {"target": "x"}, "type required"),
    ("POST", "/api/commands", {"type": "t", "target": "x", "ttlMs": "5"}, "ttlMs must be an"),
    ("POST", "/api/commands", {"type": "t", "target": "x", "params": []}, "params must be an"),
    ("POST", "/api/workspaces", {"mode": "solo"}, "mode must be one of"),
    ("POST", "/api/workspaces", {"status": "done"}, "status must be one of"),
    ("POST", "/api/workspaces", {"repoRoot": "repo"}, "repoRoot must be an absolute path"),
    ("POST", "/api/workspaces", {"branch": ["x"]}, "branch must be a string"),
    ("POST", "/api/workspaces/ws1/actions", {}, "action required"),
    ("POST", "/api/workspaces/ws1/actions", {"action": "explode"}, "action must be one of"),
    ("POST", "/api/workspaces/ws1/actions", {"action": "ready", "metadata": 3}, "metadata must"),
    ("POST", "/api/workspaces/ws1/actions", {"action": "merge", "strategy": "yolo"}, "strategy"),
    ("POST", "/api/workspaces/ws1/actions", {"action": "merge", "prTitle": "x" * 241}, "at most"),
    ("POST", "/api/workspaces/orphans/reclaim", {"repoRoot": REPO}, "worktreePath and repoRoot"),
    ("POST", "/api/workspaces/orphans/reclaim", {"worktreePath": 1, "repoRoot": REPO}, "string"),
    ("POST", "/api/_dev/faults", {"explode": True}, "unknown fault switch: explode"),
    ("POST", "/api/_dev/faults", {"fail": "heartbeat"}, "fail must be"),
    ("POST", "/api/_dev/faults", {"hang": ["heartbeat"]}, "bad route pattern"),
    ("POST", "/api/_dev/faults", {"failStatus": 200}, "failStatus must be"),
    ("POST", "/api/_dev/faults", {"rejectTokens": "t"}, "rejectTokens must be"),
    ("POST", "/api/_dev/faults", {"forgetHosts": 1}, "forgetHosts must be a boolean"),
    ("GET", "/api/_dev/requests?since=x", NO_BODY, "since must be an integer"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), HOSTILE)
async def test_hostile_input_is_400_with_a_clear_error(
    relay: Relay, method: str, path: str, body: Any, message: str
) -> None:
    await relay.register(version="0.0.1")
    await relay.register("h2", baseDir="/srv/hosts/h2")
    await relay.workspace(id="ws1")
    command = await relay.command()
    path = path.replace("{cid}", command["id"])
    if isinstance(body, bytes):
        status, reply = await relay.call(method, path, raw=body)
    else:
        status, reply = await relay.call(method, path, body)
    assert status == 400, reply
    assert message in reply["error"]
    assert list(reply) == ["error"]
    assert (await relay.ok("GET", f"/api/commands/{command['id']}"))["status"] == "pending"
    assert (await relay.ok("GET", "/api/workspaces/ws1"))["status"] == "active"


async def test_unknown_route_and_method_are_json_errors(relay: Relay) -> None:
    assert await relay.call("GET", "/api/nothing") == (404, {"error": "not found"})
    assert await relay.call("PUT", "/api/commands") == (405, {"error": "method not allowed"})


# command queue


async def test_command_listing_filters_and_order(relay: Relay) -> None:
    first = await relay.command()
    second = await relay.command("workspace.cleanup")
    other = await relay.command(target="orchestrator-h2")
    await relay.patch(second["id"], {"status": "accepted"})

    def ids(commands: list[dict[str, Any]]) -> list[str]:
        return [c["id"] for c in commands]

    everything = await relay.ok("GET", "/api/commands")
    assert ids(everything) == [first["id"], second["id"], other["id"]]
    query = "/api/commands?target=orchestrator-h1&status=pending&limit=50"
    assert ids(await relay.ok("GET", query)) == [first["id"]]
    assert ids(await relay.ok("GET", "/api/commands?target=orchestrator-h1")) == ids(everything[:2])
    assert ids(await relay.ok("GET", "/api/commands?status=accepted")) == [second["id"]]
    assert ids(await relay.ok("GET", "/api/commands?limit=1")) == [first["id"]]
    assert first["params"] == {} and first["status"] == "pending" and "result" not in first


async def test_patch_sequence_and_terminal_commands(relay: Relay) -> None:
    cid = (await relay.command())["id"]
    status, body = await relay.patch(cid, {"status": "accepted"})
    assert status == 200 and body["status"] == "accepted"
    await relay.patch(cid, {"status": "running", "result": {"phase": "fetching"}})
    status, body = await relay.patch(cid, {"status": "running"})
    assert body["result"] == {"phase": "fetching"}
    result = {"workspaceId": "nope", "status": "merged", "mergedSha": "b" * 40}
    status, body = await relay.patch(cid, {"status": "succeeded", "result": result})
    assert (status, body["status"], body["result"]) == (200, "succeeded", result)
    assert "error" not in body

    for later in ("running", "failed", "succeeded"):
        status, body = await relay.patch(cid, {"status": later})
        assert (status, body) == (409, {"error": "command is already succeeded"})
    status, body = await relay.patch("cmd-missing", {"status": "accepted"})
    assert (status, body) == (404, {"error": "command not found"})


async def test_patch_body_is_capped_at_64_kib(relay: Relay) -> None:
    cid = (await relay.command())["id"]
    big = json.dumps({"status": "running", "result": {"output": "x" * (64 * 1024)}}).encode()
    status, body = await relay.call("PATCH", f"/api/commands/{cid}", raw=big)
    assert (status, body) == (413, {"error": "body too large"})
    assert (await relay.ok("GET", f"/api/commands/{cid}"))["status"] == "pending"

    fits = {"status": "running", "result": {"output": "x" * (60 * 1024), "truncated": True}}
    status, body = await relay.patch(cid, fits)
    assert status == 200 and body["result"]["truncated"] is True


async def test_pending_commands_time_out_after_ttl(relay: Relay) -> None:
    expiring = await relay.command(ttlMs=60)
    taken = await relay.command(ttlMs=60)
    assert expiring["ttlMs"] == 60 and expiring["expiresAt"] == expiring["createdAt"] + 60
    await relay.patch(taken["id"], {"status": "accepted"})

    async def timed_out() -> bool:
        got = await relay.ok("GET", f"/api/commands/{expiring['id']}")
        return got["status"] == "timed_out"

    await wait_until(timed_out, 5.0)
    assert await relay.ok("GET", "/api/commands?status=pending") == []
    status, body = await relay.patch(expiring["id"], {"status": "accepted"})
    assert (status, body) == (409, {"error": "command is already timed_out"})
    assert (await relay.ok("GET", f"/api/commands/{taken['id']}"))["status"] == "accepted"


# workspaces and their actions


async def test_workspace_records(relay: Relay) -> None:
    ws = await relay.workspace(id="ws1", metadata={"agent": "codex"})
    assert ws["mode"] == "isolated" and ws["status"] == "active"
    assert ws["sourceCwd"] == REPO and ws["metadata"] == {"agent": "codex"}
    generated = await relay.workspace(mode="shared", status="ready", worktreePath=None)
    assert generated["id"].startswith("ws-") and "worktreePath" not in generated
    status, body = await relay.call("POST", "/api/workspaces", {"id": "ws1"})
    assert (status, body) == (409, {"error": "workspace ws1 already exists"})
    listed = await relay.ok("GET", "/api/workspaces")
    assert [w["id"] for w in listed] == ["ws1", generated["id"]]
    assert await relay.ok("GET", "/api/workspaces/ws1") == ws

    deleted = await relay.ok("DELETE", "/api/workspaces/ws1")
    assert deleted == {"deleted": True, "workspace": ws}
    for method in ("GET", "DELETE"):
        status, body = await relay.call(method, "/api/workspaces/ws1")
        assert (status, body) == (404, {"error": "workspace not found"})


async def test_status_actions(relay: Relay) -> None:
    ws = await relay.workspace(id="ws1")
    assert await relay.ok("POST", "/api/workspaces/ws1/actions", {"action": "status"}) == ws
    expected = {
        "ready": "ready",
        "conflict-found": "conflict",
        "request-review": "review_requested",
        "merge-plan": "merge_planned",
        "abandon": "abandoned",
    }
    for action, status in expected.items():
        body = {"action": action, "agentId": "agent-7", "detail": f"did {action}"}
        reply = await relay.ok("POST", "/api/workspaces/ws1/actions", body)
        assert "command" not in reply
        assert reply["workspace"]["status"] == status
        assert reply["workspace"]["metadata"]["detail"] == f"did {action}"
    status, body = await relay.call("POST", "/api/workspaces/ghost/actions", {"action": "ready"})
    assert (status, body) == (404, {"error": "workspace not found"})


async def test_merge_action_queues_command_for_the_owning_online_host(relay: Relay) -> None:
    await relay.register("elsewhere", baseDir="/srv/hosts/other")
    await relay.register("h1")
    await relay.workspace(id="ws1")
    body = {"action": "merge", "strategy": "rebase-ff", "prTitle": "Land it", "agentId": "a-7"}
    before = int(time.time() * 1000)
    reply = await relay.ok("POST", "/api/workspaces/ws1/actions", body, status=202)
    command = reply["command"]
    assert reply["workspace"]["status"] == "merge_planned"
    assert command["type"] == "workspace.merge" and command["target"] == "orchestrator-h1"
    assert command["correlationId"] == "ws1" and command["status"] == "pending"
    params = command["params"]
    assert before <= params.pop("requestedAt") <= int(time.time() * 1000)
    assert list(params.items()) == [
        ("action", "merge"),
        ("workspaceId", "ws1"),
        ("repoRoot", REPO),
        ("worktreePath", WORKTREE),
        ("branch", "agent/task-one"),
        ("requestedBy", "a-7"),
        ("baseRef", "main"),
        ("baseSha", "a" * 40),
        ("strategy", "rebase-ff"),
        ("deleteBranch", True),
        ("prTitle", "Land it"),
    ]
    queued = await relay.ok("GET", "/api/commands?target=orchestrator-h1&status=pending")
    assert [c["id"] for c in queued] == [command["id"]]


@pytest.mark.parametrize(("sent", "expected"), [(False, False), ("false", True), (None, True)])
async def test_merge_delete_branch_is_false_only_when_literally_false(
    relay: Relay, sent: Any, expected: bool
) -> None:
    await relay.register()
    await relay.workspace(id="ws1")
    body = {"action": "merge", "deleteBranch": sent}
    reply = await relay.ok("POST", "/api/workspaces/ws1/actions", body, status=202)
    assert reply["command"]["params"]["deleteBranch"] is expected
    assert reply["command"]["params"]["strategy"] == "auto"
    assert "prTitle" not in reply["command"]["params"]


async def test_merge_refusals(make_relay: MakeRelay) -> None:
    relay = await make_relay(stale_ms=20)
    await relay.workspace(id="ws1")
    status, body = await relay.call("POST", "/api/workspaces/ws1/actions", {"action": "merge"})
    assert (status, body) == (
        409,
        {"error": "no online orchestrator available for workspace merge"},
    )
    await relay.register()

    async def offline() -> bool:
        return (await relay.ok("GET", "/api/orchestrators/h1"))["status"] == "offline"

    await wait_until(offline, 5.0)
    status, body = await relay.call("POST", "/api/workspaces/ws1/actions", {"action": "merge"})
    assert status == 409
    assert (await relay.ok("GET", "/api/workspaces/ws1"))["status"] == "active"
    assert await relay.ok("GET", "/api/commands") == []

    await relay.workspace(id="shared", mode="shared")
    await relay.workspace(id="bare", worktreePath=None)
    for wid in ("shared", "bare"):
        for action in ("merge", "cleanup"):
            status, body = await relay.call(
                "POST", f"/api/workspaces/{wid}/actions", {"action": action}
            )
            assert (status, body) == (
                422,
                {"error": f"workspace {wid} has no worktree to {action}"},
            )


async def test_cleanup_action_queues_even_for_an_offline_owner(make_relay: MakeRelay) -> None:
    relay = await make_relay(stale_ms=300)
    await relay.workspace(id="ws1")
    await relay.workspace(id="ws2", worktreePath=f"{BASE}/wt2")
    await relay.workspace(id="stray", repoRoot="/elsewhere/repo")
    await relay.register()
    reply = await relay.ok("POST", "/api/workspaces/ws1/actions", {"action": "cleanup"}, 202)
    assert reply["workspace"]["status"] == "cleanup_requested"
    params = reply["command"]["params"]
    params.pop("requestedAt")
    assert reply["command"]["type"] == "workspace.cleanup"
    assert reply["command"]["target"] == "orchestrator-h1"
    assert params == {
        "action": "cleanup",
        "workspaceId": "ws1",
        "repoRoot": REPO,
        "worktreePath": WORKTREE,
        "branch": "agent/task-one",
        "requestedBy": "dashboard",
        "deleteBranch": True,
        "queued": False,
    }

    async def offline() -> bool:
        return (await relay.ok("GET", "/api/orchestrators/h1"))["status"] == "offline"

    await wait_until(offline, 5.0)
    reply = await relay.ok("POST", "/api/workspaces/ws2/actions", {"action": "cleanup"}, 202)
    assert reply["command"]["target"] == "orchestrator-h1"
    assert reply["command"]["params"]["queued"] is True

    status, body = await relay.call("POST", "/api/workspaces/stray/actions", {"action": "cleanup"})
    assert status == 409
    assert body["error"].startswith("no orchestrator owns this workspace path; use DELETE")


# what command outcomes do to workspaces


async def _merge_command(relay: Relay, wid: str = "ws1") -> str:
    reply = await relay.ok("POST", f"/api/workspaces/{wid}/actions", {"action": "merge"}, 202)
    return reply["command"]["id"]


async def test_merge_succeeded_moves_the_workspace(relay: Relay) -> None:
    await relay.register()
    await relay.workspace(id="ws1")
    cid = await _merge_command(relay)
    await relay.patch(cid, {"status": "accepted"})
    await relay.patch(cid, {"status": "running"})
    assert (await relay.ok("GET", "/api/workspaces/ws1"))["status"] == "merge_planned"
    result = {"workspaceId": "ws1", "status": "merged", "merged": True, "mergedSha": "c" * 40}
    await relay.patch(cid, {"status": "succeeded", "result": result})
    ws = await relay.ok("GET", "/api/workspaces/ws1")
    assert ws["status"] == "merged"
    assert ws["metadata"]["mergeResult"] == result and ws["metadata"]["mergeCommandId"] == cid


@pytest.mark.parametrize(
    "result",
    [
        {"status": "merged"},
        {"workspaceId": "ws1"},
        {"workspaceId": "ws1", "status": "landed"},
        {"workspaceId": 1, "status": "merged"},
        None,
    ],
)
async def test_merge_result_without_valid_status_changes_nothing(
    relay: Relay, result: dict[str, Any] | None
) -> None:
    await relay.register()
    await relay.workspace(id="ws1")
    cid = await _merge_command(relay)
    body: dict[str, Any] = {"status": "succeeded"}
    if result is not None:
        body["result"] = result
    assert (await relay.patch(cid, body))[0] == 200
    assert (await relay.ok("GET", "/api/workspaces/ws1"))["status"] == "merge_planned"


async def test_merge_failed_returns_workspace_to_review(relay: Relay) -> None:
    await relay.register()
    await relay.workspace(id="ws1")
    await relay.workspace(id="ws2", worktreePath=f"{BASE}/wt2")
    cid = await _merge_command(relay)
    error = "merge would conflict with main"
    await relay.patch(cid, {"status": "failed", "error": error, "result": {"status": "conflict"}})
    ws = await relay.ok("GET", "/api/workspaces/ws1")
    assert ws["status"] == "review_requested"
    assert ws["metadata"]["mergeError"] == error and ws["metadata"]["mergeCommandId"] == cid

    other = await _merge_command(relay, "ws2")
    await relay.ok("POST", "/api/workspaces/ws2/actions", {"action": "abandon"})
    await relay.patch(other, {"status": "failed"})
    assert (await relay.ok("GET", "/api/workspaces/ws2"))["status"] == "abandoned"


async def test_failed_merge_without_error_says_merge_failed(relay: Relay) -> None:
    await relay.register()
    await relay.workspace(id="ws1")
    await relay.patch(await _merge_command(relay), {"status": "failed"})
    ws = await relay.ok("GET", "/api/workspaces/ws1")
    assert (ws["status"], ws["metadata"]["mergeError"]) == ("review_requested", "merge failed")


@pytest.mark.parametrize(
    ("start_status", "applied"),
    [("active", True), ("ready", True), ("merge_planned", False), ("abandoned", False)],
)
async def test_reconcile_applies_only_to_live_workspaces(
    relay: Relay, start_status: str, applied: bool
) -> None:
    await relay.workspace(id="ws1", status=start_status)
    command = await relay.command("workspace.reconcile", params={"workspaceId": "ws1"})
    result = {"workspaceId": "ws1", "status": "cleaned", "removed": False}
    await relay.patch(command["id"], {"status": "succeeded", "result": result})
    ws = await relay.ok("GET", "/api/workspaces/ws1")
    assert ws["status"] == ("cleaned" if applied else start_status)
    assert ("reconcileResult" in ws["metadata"]) is applied


async def test_cleanup_succeeded_marks_cleaned(relay: Relay) -> None:
    await relay.register()
    await relay.workspace(id="ws1")
    await relay.workspace(id="ws2", worktreePath=f"{BASE}/wt2")
    reply = await relay.ok("POST", "/api/workspaces/ws1/actions", {"action": "cleanup"}, 202)
    await relay.ok("POST", "/api/workspaces/ws2/actions", {"action": "cleanup"}, 202)
    cid = reply["command"]["id"]
    await relay.patch(
        cid, {"status": "succeeded", "result": {"status": "cleaned", "removed": True}}
    )
    ws = await relay.ok("GET", "/api/workspaces/ws1")
    assert ws["status"] == "cleaned" and ws["metadata"]["cleanupCommandId"] == cid
    assert (await relay.ok("GET", "/api/workspaces/ws2"))["status"] == "cleanup_requested"


# upgrade


async def _upgrade(relay: Relay, body: dict[str, Any], oid: str = "h1") -> tuple[int, Any]:
    return await relay.call("POST", f"/api/orchestrators/{oid}/actions", body)


async def test_upgrade_action_queues_command_and_records_state(relay: Relay) -> None:
    await relay.register()
    before = int(time.time() * 1000)
    status, reply = await _upgrade(relay, {"action": "upgrade", "targetVersion": "0.6.0-rc.1"})
    assert status == 202 and reply["ok"] is True
    assert (reply["action"], reply["targetVersion"]) == ("upgrade", "0.6.0-rc.1")
    command = reply["command"]
    assert command["type"] == "orchestrator.upgrade" and command["target"] == "orchestrator-h1"
    assert command["ttlMs"] == 10 * 60_000
    requested_at = command["params"]["requestedAt"]
    assert before <= requested_at <= int(time.time() * 1000)
    assert list(command["params"].items()) == [
        ("targetVersion", "0.6.0-rc.1"),
        ("providers", ["orchestrator"]),
        ("force", False),
        ("orchestratorId", "h1"),
        ("requestedBy", "dashboard"),
        ("requestedAt", requested_at),
    ]
    orch = await relay.ok("GET", "/api/orchestrators/h1")
    assert orch["upgrade"] == {
        "desiredVersion": "0.6.0-rc.1",
        "status": "pending",
        "commandId": command["id"],
        "providers": ["orchestrator"],
        "requestedBy": "dashboard",
        "requestedAt": requested_at,
        "fromVersion": "0.5.0",
    }


async def test_upgrade_validation(relay: Relay) -> None:
    await relay.register()
    for bad in ("1.2", "v1.2.3", "1.2.3-", "1.2.3+build", "1.2.3\n4", "١.٢.٣"):
        status, body = await _upgrade(relay, {"action": "upgrade", "targetVersion": bad})
        assert (status, body) == (400, {"error": "targetVersion must be a semver like 0.10.20"})

    status, body = await _upgrade(relay, {"action": "upgrade", "targetVersion": "0.4.9"})
    assert (status, body) == (
        409,
        {"error": "refusing downgrade 0.5.0 → 0.4.9; pass force to override"},
    )
    body = {"action": "upgrade", "targetVersion": "0.4.9", "force": "true"}
    assert (await _upgrade(relay, body))[0] == 409
    status, reply = await _upgrade(relay, {**body, "force": True})
    assert status == 202 and reply["command"]["params"]["force"] is True

    body = {"action": "upgrade", "targetVersion": "0.5.0", "providers": ["bogus"]}
    status, reply = await _upgrade(relay, body)
    assert (status, reply) == (
        400,
        {"error": "providers must be any of: auto, all, codex, claude, orchestrator"},
    )
    body["providers"] = ["bogus", "orchestrator", "codex"]
    status, reply = await _upgrade(relay, body)
    assert reply["command"]["params"]["providers"] == ["orchestrator", "codex"]

    status, reply = await _upgrade(relay, {"action": "upgrade"}, oid="ghost")
    assert (status, reply) == (404, {"error": "orchestrator not found"})


async def test_upgrade_defaults_to_the_relays_own_version(relay: Relay) -> None:
    await relay.register(version="0.0.1")
    status, reply = await _upgrade(relay, {"action": "upgrade"})
    assert status == 202 and reply["targetVersion"] == SEMVER


async def test_upgrade_settles_by_exact_version_string(relay: Relay) -> None:
    await relay.register()
    _, reply = await _upgrade(relay, {"action": "upgrade", "targetVersion": "0.6.0-rc.1"})
    cid = reply["command"]["id"]
    await relay.patch(cid, {"status": "accepted"})
    await relay.patch(cid, {"status": "running", "result": {"phase": "installing"}})
    await relay.ok("POST", "/api/orchestrators/h1/heartbeat", {"version": "0.6.0rc1"})
    assert (await relay.ok("GET", f"/api/commands/{cid}"))["status"] == "running"

    await relay.ok("POST", "/api/orchestrators/h1/heartbeat", {"version": "0.6.0-rc.1"})
    command = await relay.ok("GET", f"/api/commands/{cid}")
    assert command["status"] == "succeeded"
    assert command["result"] == {"version": "0.6.0-rc.1", "fromVersion": "0.5.0"}
    upgrade = (await relay.ok("GET", "/api/orchestrators/h1"))["upgrade"]
    assert upgrade["status"] == "succeeded" and isinstance(upgrade["settledAt"], int)


async def test_upgrade_settles_on_register(relay: Relay) -> None:
    await relay.register()
    _, reply = await _upgrade(relay, {"action": "upgrade", "targetVersion": "0.6.0"})
    registered = await relay.register(version="0.6.0")
    assert registered["orchestrator"]["upgrade"]["status"] == "succeeded"
    command = await relay.ok("GET", f"/api/commands/{reply['command']['id']}")
    assert command["status"] == "succeeded"


async def test_upgrade_times_out(make_relay: MakeRelay) -> None:
    relay = await make_relay(upgrade_deadline_ms=300)
    await relay.register()
    await relay.register("h2", baseDir="/srv/hosts/h2")
    _, reply = await _upgrade(relay, {"action": "upgrade", "targetVersion": "0.6.0"})
    _, rolled_back = await _upgrade(relay, {"action": "upgrade", "targetVersion": "0.6.0"}, "h2")
    cid, rid = reply["command"]["id"], rolled_back["command"]["id"]
    await relay.ok("POST", "/api/orchestrators/h1/heartbeat", {"version": "0.5.0"})
    assert (await relay.ok("GET", f"/api/commands/{cid}"))["status"] == "pending"
    await relay.patch(rid, {"status": "failed", "error": "rolled back: health check failed"})

    async def settled() -> bool:
        for oid in ("h1", "h2"):
            await relay.ok("POST", f"/api/orchestrators/{oid}/heartbeat", {"version": "0.5.0"})
        hosts = [await relay.ok("GET", f"/api/orchestrators/{o}") for o in ("h1", "h2")]
        return all(host["upgrade"]["status"] != "pending" for host in hosts)

    await wait_until(settled, 5.0)
    message = "upgrade timed out; orchestrator still reports 0.5.0 (wanted 0.6.0)"
    command = await relay.ok("GET", f"/api/commands/{cid}")
    assert (command["status"], command["error"]) == ("failed", message)
    upgrade = (await relay.ok("GET", "/api/orchestrators/h1"))["upgrade"]
    assert (upgrade["status"], upgrade["error"]) == ("failed", message)

    assert (await relay.ok("GET", f"/api/commands/{rid}"))["error"].startswith("rolled back")
    assert (await relay.ok("GET", "/api/orchestrators/h2"))["upgrade"]["status"] == "failed"


# orphans and proxies against a stand-in host


async def test_orphans_found_by_probing_the_owning_host(
    relay: Relay, host: tuple[StandInHost, str]
) -> None:
    stand_in, url = host
    repo = f"{BASE}/my repo"
    await relay.register(apiUrl=url)
    await relay.workspace(id="live", repoRoot=repo, worktreePath=f"{BASE}/wt/b")
    await relay.workspace(id="done", repoRoot=repo, worktreePath=f"{BASE}/wt/c", status="merged")
    stand_in.worktrees = [
        {"path": repo + "/", "branch": "agent/checked-out-in-main", "headSha": "0" * 40},
        {"path": f"{BASE}/wt/a", "branch": "agent/a", "headSha": "1" * 40},
        {"path": f"{BASE}/wt/b/", "branch": "agent/b", "headSha": "2" * 40},
        {"path": f"{BASE}/wt/c", "branch": "agent/c"},
        {"path": f"{BASE}/wt/d", "branch": "feature/d", "headSha": "4" * 40},
        {"path": f"{BASE}/wt/e", "detached": True},
        "garbage",
    ]
    reply = await relay.ok("GET", "/api/workspaces/orphans")
    assert reply == {
        "orphans": [
            {
                "worktreePath": f"{BASE}/wt/a",
                "repoRoot": repo,
                "branch": "agent/a",
                "headSha": "1" * 40,
                "hadTerminalRow": False,
            },
            {
                "worktreePath": f"{BASE}/wt/c",
                "repoRoot": repo,
                "branch": "agent/c",
                "hadTerminalRow": True,
            },
        ]
    }
    assert stand_in.requests == [
        {"name": "probe", "query": "path=%2Fsrv%2Fhosts%2Fh1%2Fmy%20repo", "token": TOKEN}
    ]


async def test_orphans_without_hosts_or_with_failing_probe(
    relay: Relay, host: tuple[StandInHost, str]
) -> None:
    stand_in, url = host
    await relay.workspace(id="ws1")
    assert await relay.ok("GET", "/api/workspaces/orphans") == {
        "orphans": [],
        "reason": "no online orchestrators",
    }
    await relay.register(apiUrl=url)
    stand_in.worktrees = [{"path": f"{BASE}/wt/a", "branch": "agent/a"}]
    stand_in.canned["probe"] = (500, {"error": "boom"})
    assert await relay.ok("GET", "/api/workspaces/orphans") == {"orphans": []}
    stand_in.canned["probe"] = (200, ["not", "an", "object"])
    assert await relay.ok("GET", "/api/workspaces/orphans") == {"orphans": []}


async def test_orphan_reclaim(relay: Relay) -> None:
    await relay.workspace(id="live", worktreePath=f"{BASE}/wt/live")
    body = {"worktreePath": f"{BASE}/wt/a", "repoRoot": REPO, "branch": "agent/a"}
    status, reply = await relay.call("POST", "/api/workspaces/orphans/reclaim", body)
    assert (status, reply) == (409, {"error": "no online orchestrator owns this path"})

    await relay.register()
    reply = await relay.ok("POST", "/api/workspaces/orphans/reclaim", body, status=202)
    command = reply["command"]
    assert command["type"] == "workspace.cleanup" and command["target"] == "orchestrator-h1"
    assert "correlationId" not in command
    params = command["params"]
    assert isinstance(params.pop("requestedAt"), int)
    assert params == {
        "action": "cleanup",
        "worktreePath": f"{BASE}/wt/a",
        "repoRoot": REPO,
        "branch": "agent/a",
        "deleteBranch": True,
        "reclaim": True,
        "requestedBy": "dashboard",
    }
    await relay.patch(command["id"], {"status": "succeeded", "result": {"status": "cleaned"}})
    assert (await relay.ok("GET", "/api/workspaces/live"))["status"] == "active"

    body = {"worktreePath": f"{BASE}/wt/./live", "repoRoot": REPO}
    status, reply = await relay.call("POST", "/api/workspaces/orphans/reclaim", body)
    assert status == 409 and reply["error"].startswith("path backs live workspace live;")


async def test_proxy_routes_pass_query_token_status_and_body(
    relay: Relay, host: tuple[StandInHost, str]
) -> None:
    stand_in, url = host
    await relay.register(apiUrl=url + "/")
    await relay.workspace(id="ws1")
    path = "path=%2Fsrv%2Fhosts%2Fh1%2F.agent-relay%2Fworkspaces%2Ftask+one"
    base = f"{path}&baseRef=main&baseSha={'a' * 40}"
    cases = [
        ("git-state", "state", base),
        ("merge-preview", "merge-preview", base),
        ("merge-preview?strategy=pr", "merge-preview", f"{base}&strategy=pr"),
        ("diff", "diff", base),
        ("diff?patch=0", "diff", f"{base}&patch=0"),
        ("diff?patch=1", "diff", base),
    ]
    for route, name, query in cases:
        reply = await relay.ok("GET", f"/api/workspaces/ws1/{route}")
        assert reply["route"] == name
        assert stand_in.requests[-1] == {"name": name, "query": query, "token": TOKEN}

    stand_in.canned["state"] = (400, {"error": "path must be within base_dir: /x"})
    status, body = await relay.call("GET", "/api/workspaces/ws1/git-state")
    assert (status, body) == (400, {"error": "path must be within base_dir: /x"})

    await relay.workspace(id="nobase", baseRef=None, baseSha=None, worktreePath=f"{BASE}/w")
    await relay.ok("GET", "/api/workspaces/nobase/diff")
    assert stand_in.requests[-1]["query"] == "path=%2Fsrv%2Fhosts%2Fh1%2Fw"


async def test_proxy_unavailable_answers(
    make_relay: MakeRelay, host: tuple[StandInHost, str]
) -> None:
    stand_in, url = host
    relay = await make_relay(host_timeout_s=0.3)
    await relay.workspace(id="ws1")
    await relay.workspace(id="shared", mode="shared", worktreePath=None)
    await relay.workspace(id="dead", repoRoot="/srv/dead/repo", worktreePath="/srv/dead/wt")

    async def reason(wid: str, route: str = "git-state") -> str:
        reply = await relay.ok("GET", f"/api/workspaces/{wid}/{route}")
        assert reply["available"] is False
        return reply["reason"]

    assert await reason("shared") == "no isolated worktree"
    assert await reason("ws1", "diff") == "owning orchestrator offline"
    await relay.register(apiUrl=url)
    await relay.register("dead", baseDir="/srv/dead", apiUrl=f"http://127.0.0.1:{closed_port()}")
    assert (await reason("dead", "merge-preview")).startswith("orchestrator unreachable: ")

    stand_in.hang.add("state")
    assert await reason("ws1") == "orchestrator unreachable: timed out after 0.3s"
    status, body = await relay.call("GET", "/api/workspaces/ghost/git-state")
    assert (status, body) == (404, {"error": "workspace not found"})


# fault switches


async def test_fail_switch_on_chosen_routes_and_everything(relay: Relay) -> None:
    await relay.register()
    faults = {"fail": ["POST /api/orchestrators/*/heartbeat"], "failStatus": 503}
    state = await relay.ok("POST", "/api/_dev/faults", faults)
    assert state == {**faults, "hang": [], "rejectTokens": []}
    assert await relay.ok("GET", "/api/_dev/faults") == state
    status, body = await relay.call("POST", "/api/orchestrators/h1/heartbeat", {})
    assert (status, body) == (503, {"error": "injected fault"})
    assert (await relay.call("GET", "/api/orchestrators/h1/heartbeat"))[0] == 405
    assert (await relay.call("GET", "/api/commands"))[0] == 200

    await relay.ok("POST", "/api/_dev/faults", {"fail": "*", "failStatus": 500})
    for method, path in (("GET", "/api/commands"), ("POST", "/api/orchestrators")):
        assert await relay.call(method, path, {}) == (500, {"error": "injected fault"})
    await relay.ok("POST", "/api/_dev/faults", {"fail": ["/api/commands*"]})
    assert (await relay.call("GET", "/api/commands?status=pending"))[0] == 500
    assert (await relay.call("GET", "/api/orchestrators"))[0] == 200

    cleared = await relay.ok("DELETE", "/api/_dev/faults")
    assert cleared == {"fail": [], "failStatus": 500, "hang": [], "rejectTokens": []}
    assert (await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}))[0] == 200


async def test_hang_switch_holds_requests_until_cleared(relay: Relay) -> None:
    cid = (await relay.command())["id"]
    await relay.ok("POST", "/api/_dev/faults", {"hang": ["PATCH /api/commands/*"]})
    patch = asyncio.create_task(relay.patch(cid, {"status": "accepted"}))

    async def arrived() -> bool:
        log = await relay.ok("GET", "/api/_dev/requests?method=PATCH")
        return bool(log["requests"])

    await wait_until(arrived, 5.0)
    assert (await relay.call("GET", "/api/commands"))[0] == 200
    assert not patch.done()
    assert (await relay.ok("GET", f"/api/commands/{cid}"))["status"] == "pending"
    await relay.ok("POST", "/api/_dev/faults", {"clear": True})
    status, body = await asyncio.wait_for(patch, 5)
    assert (status, body["status"]) == (200, "accepted")


async def test_hung_requests_are_released_on_shutdown() -> None:
    runner, url = await start("127.0.0.1", 0, token=TOKEN)
    async with aiohttp.ClientSession(headers={HEADER: TOKEN}) as session:
        async with session.post(f"{url}/api/_dev/faults", json={"hang": "*"}) as res:
            assert res.status == 200

        async def hung_request() -> int:
            async with session.get(f"{url}/api/commands") as res:
                return res.status

        request = asyncio.create_task(hung_request())

        async def arrived() -> bool:
            async with session.get(f"{url}/api/_dev/requests") as res:
                return bool((await res.json())["requests"])

        await wait_until(arrived, 5.0)
        started = time.monotonic()
        await runner.cleanup()
        assert await asyncio.wait_for(request, 5) == 503
        assert time.monotonic() - started < 4


async def test_forget_hosts_makes_heartbeats_404(relay: Relay) -> None:
    await relay.register()
    await relay.register("h2")
    reply = await relay.ok("POST", "/api/_dev/faults", {"forgetHosts": True})
    assert reply["forgotten"] == 2
    status, body = await relay.call("POST", "/api/orchestrators/h1/heartbeat", {})
    assert (status, body) == (404, {"error": "orchestrator not found"})
    await relay.register()
    assert (await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}))[0] == 200
    assert "forgotten" not in await relay.ok("GET", "/api/_dev/faults")


async def test_reject_token_switch(make_relay: MakeRelay) -> None:
    relay = await make_relay(runtime_tokens=True)
    runtime = (await relay.register())["runtimeToken"]["token"]
    await relay.ok("POST", "/api/_dev/faults", {"rejectTokens": [runtime]})
    status, body = await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}, token=runtime)
    assert (status, body) == (401, {"error": "unauthorized"})
    assert (await relay.call("POST", "/api/orchestrators/h1/heartbeat", {}))[0] == 200

    await relay.ok("POST", "/api/_dev/faults", {"rejectTokens": [TOKEN]})
    assert (await relay.call("GET", "/api/commands"))[0] == 401
    assert (await relay.call("GET", "/api/_dev/faults"))[0] == 200
    await relay.ok("POST", "/api/_dev/faults", {"rejectTokens": []})
    assert (await relay.call("GET", "/api/commands"))[0] == 200


async def test_reject_token_without_configured_token(make_relay: MakeRelay) -> None:
    relay = await make_relay(token=None)
    await relay.ok("POST", "/api/_dev/faults", {"rejectTokens": ["stolen"]})
    assert (await relay.call("GET", "/api/commands", token="stolen"))[0] == 401
    assert (await relay.call("GET", "/api/commands", token=None))[0] == 200


async def test_dev_routes_still_need_the_token(relay: Relay) -> None:
    assert (await relay.call("GET", "/api/_dev/faults", token=None))[0] == 401
    assert (await relay.call("GET", "/api/_dev/requests", token="wrong"))[0] == 401


# request log


async def test_request_log_records_what_hostd_sent(relay: Relay) -> None:
    await relay.register()
    cid = (await relay.command())["id"]
    for status in ("accepted", "running", "succeeded"):
        await relay.patch(cid, {"status": status})
    await relay.call("GET", "/api/commands?target=orchestrator-h1&status=pending", token=None)

    log = await relay.ok("GET", "/api/_dev/requests")
    entries = log["requests"]
    assert log["lastSeq"] == entries[-1]["seq"] == len(entries) == 6
    assert [e["path"] for e in entries] == [
        "/api/orchestrators",
        "/api/commands",
        *[f"/api/commands/{cid}"] * 3,
        "/api/commands",
    ]
    first = entries[0]
    assert first["method"] == "POST" and first["json"]["id"] == "h1"
    assert first["auth"] == "configured" and first["status"] == 200
    assert isinstance(first["time"], int) and first["bodySize"] == len(first["body"])
    last = entries[-1]
    assert (last["query"], last["auth"], last["status"]) == (
        "target=orchestrator-h1&status=pending",
        "none",
        401,
    )
    patches = await relay.ok("GET", "/api/_dev/requests?method=patch&path=/api/commands/*")
    assert [e["json"]["status"] for e in patches["requests"]] == [
        "accepted",
        "running",
        "succeeded",
    ]
    since = await relay.ok("GET", f"/api/_dev/requests?since={entries[3]['seq']}")
    assert [e["seq"] for e in since["requests"]] == [5, 6]

    assert await relay.ok("DELETE", "/api/_dev/requests") == {"cleared": 6}
    assert (await relay.ok("GET", "/api/_dev/requests"))["requests"] == []


async def test_request_log_is_bounded_and_truncates_bodies(make_relay: MakeRelay) -> None:
    relay = await make_relay(request_log_size=3)
    for _ in range(5):
        await relay.call("GET", "/api/commands")
    await relay.call("POST", "/api/commands", raw=b"x" * 5000)
    await relay.call("POST", "/api/commands", raw=b"{broken")
    entries = (await relay.ok("GET", "/api/_dev/requests"))["requests"]
    assert [e["seq"] for e in entries] == [5, 6, 7]
    truncated, broken = entries[1], entries[2]
    assert truncated["bodySize"] == 5000 and len(truncated["body"]) == 4096
    assert truncated["bodyTruncated"] is True and "json" not in truncated
    assert broken["body"] == "{broken" and "json" not in broken and broken["status"] == 400


# serving


async def test_start_serves_and_keeps_a_file_database(tmp_path: Path) -> None:
    db = str(tmp_path / "relay.db")
    for round_ in range(2):
        runner, url = await start("127.0.0.1", 0, db_path=db, token=TOKEN)
        try:
            async with aiohttp.ClientSession(headers={HEADER: TOKEN}) as session:
                if round_ == 0:
                    body = {"id": "h1", "baseDir": BASE, "version": "0.5.0"}
                    async with session.post(f"{url}/api/orchestrators", json=body) as res:
                        assert res.status == 200
                async with session.get(f"{url}/api/orchestrators/h1") as res:
                    assert res.status == 200 and (await res.json())["version"] == "0.5.0"
        finally:
            await runner.cleanup()


async def test_run_serves_from_a_separate_process() -> None:
    port = closed_port()
    code = f"from hostd.devrelay import run; run('127.0.0.1', {port}, ':memory:', 'tok')"
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stderr is not None
        try:
            async with aiohttp.ClientSession() as session:

                async def answers() -> int | None:
                    assert proc.poll() is None, proc.stderr.read()
                    try:
                        url = f"http://127.0.0.1:{port}/api/commands"
                        async with session.get(url, headers={HEADER: "tok"}) as res:
                            return res.status
                    except aiohttp.ClientConnectionError:
                        return None

                assert await wait_until(answers, timeout=10) == 200
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert b"not a production relay" in proc.stderr.read()


# path containment


@given(
    st.lists(st.sampled_from(["a", "b", "c d", ".x"]), min_size=1, max_size=4),
    st.lists(st.sampled_from(["repo", "wt", "é"]), max_size=3),
)
def test_path_within_base(base_parts: list[str], rest: list[str]) -> None:
    base = "/" + "/".join(base_parts)
    assert path_within_base(base, base)
    assert path_within_base("/".join([base, *rest]), base + "/")
    assert not path_within_base(base + "x", base)
    assert not path_within_base(base + "/../" + "z", base)
    assert not path_within_base(None, base) and not path_within_base(base, "")
