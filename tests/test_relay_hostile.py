"""A relay that answers like an attacker or a broken deployment: hostd keeps its link, runs every
command id once, never follows a redirect and never sends a token where it does not belong.
The relay is a small aiohttp app written here: the development relay cannot misbehave this way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.relay_harness import Hostd, counter_lines, wait_until

COUNTER = "hostd.test.counter"
Handler = Callable[[web.Request], web.StreamResponse]


@dataclass
class Call:
    method: str
    raw_path: str
    token: str | None
    status: int = 0
    body: Any = None


@dataclass
class FakeRelay:
    """Records every request; each route answers through a replaceable function."""

    calls: list[Call] = field(default_factory=list)
    register: Handler = lambda request: web.json_response({"ok": True})
    heartbeat: Handler = lambda request: web.json_response({"ok": True})
    poll: Handler = lambda request: web.json_response([])
    patch: Handler = lambda request: web.json_response({"ok": True})
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/api/orchestrators", self._via("register"))
        app.router.add_post("/api/orchestrators/{id}/heartbeat", self._via("heartbeat"))
        app.router.add_get("/api/commands", self._via("poll"))
        app.router.add_patch("/api/commands/{id}", self._via("patch"))
        return app

    def _via(self, route: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return getattr(self, route)(request)

        return handle

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        call = Call(request.method, request.raw_path, request.headers.get("X-Agent-Relay-Token"))
        call.body = body
        self.calls.append(call)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            call.status = exc.status
            raise
        call.status = response.status
        return response

    def matching(self, method: str, prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.raw_path.startswith(prefix)]

    def beats(self) -> list[Call]:
        return [
            c for c in self.matching("POST", "/api/orchestrators/") if "heartbeat" in c.raw_path
        ]

    def patched(self, status: str) -> list[Call]:
        return [
            c for c in self.matching("PATCH", "/api/") if (c.body or {}).get("status") == status
        ]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRelay]:
    relay = FakeRelay()
    runner, relay.url = await _serve(relay.app())
    yield relay
    await runner.cleanup()


def _counter(command_id: Any, count: Path, **params: Any) -> dict[str, Any]:
    return {"id": command_id, "type": COUNTER, "params": {"file": str(count), **params}}


async def test_one_id_twice_in_a_poll_and_in_later_polls_runs_once(
    fake: FakeRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    count = tmp_path / "count"
    twice = _counter("dup-1", count, seconds=0.3)
    polls: list[int] = []

    def poll(request: web.Request) -> web.Response:
        polls.append(1)
        return web.json_response([twice, twice] if len(polls) <= 8 else [])

    fake.poll = poll
    await hostd(fake.url).start()
    await wait_until(lambda: fake.patched("succeeded") and len(polls) > 8, 15, "outcome, polls")
    assert counter_lines(count) == ["dup-1"]
    assert len(fake.patched("accepted")) == 1
    assert fake.patched("succeeded")[0].body == {
        "status": "succeeded",
        "result": {"runs": 1},
    }


BAD_IDS: list[Any] = [
    7,
    None,
    "",
    ".",
    "..",
    "bell\x07",
    "surr-\ud800",
    "x" * 201,
    "a/b",
    "a?b",
    "a#b",
    "a%2Fb",
    "a b",
    "line\nbreak",
]


async def test_malformed_ids_are_skipped_once_and_never_block_the_others(
    fake: FakeRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    count = tmp_path / "count"
    good = ["ok-1", "cmd-ünï:1+2@x"]
    items = [_counter(bad, count) for bad in BAD_IDS]
    items.insert(3, _counter(good[0], count))
    items.append(_counter(good[1], count))
    items.append({"id": "odd-type", "type": "surr-\ud800"})
    items.append({**_counter("odd-target", count), "target": "surr-\udfff"})
    polls: list[int] = []

    def poll(request: web.Request) -> web.Response:
        polls.append(1)
        return web.json_response(items)

    fake.poll = poll
    host = await hostd(fake.url).start()
    await wait_until(lambda: len(fake.patched("succeeded")) >= 2 and len(polls) > 5, 15, "polls")

    assert sorted(counter_lines(count)) == sorted(good)
    paths = {c.raw_path for c in fake.matching("PATCH", "/")}
    assert paths == {
        "/api/commands/ok-1",
        "/api/commands/cmd-%C3%BCn%C3%AF%3A1%2B2%40x",
        "/api/commands/odd-type",
    }
    [odd] = [c.body for c in fake.calls if c.raw_path == "/api/commands/odd-type"][:1]
    assert odd["error"] == "unsupported command type: surr-\ud800"
    assert len(host.log_matches("relay sent a malformed command: invalid id")) == len(BAD_IDS)
    assert not host.log_matches("Traceback|Logging error|cycle failed")
    health = await host.health()
    assert health is not None and health["commandLoop"]["stalled"] is False


def _nested(depth: int) -> web.Response:
    return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")


def _offering(token: Any) -> web.Response:
    return web.json_response({"ok": True, "runtimeToken": {"token": token}})


async def test_hostile_register_answers_are_failed_calls_and_heartbeats_resume(
    fake: FakeRelay, hostd: Callable[[str], Hostd]
) -> None:
    hostile = [
        _nested(100_000),
        web.json_response({"runtimeToken": json.loads("[" * 50 + "]" * 50), "pad": 1}),
        _offering("stolen\r\nX-Injected: 1"),
        _offering("t" * 100_000),
        _offering("tab\there"),
        _offering(["not", "a", "string"]),
        web.json_response([1, 2, 3]),
        web.Response(body=b"\xff\xfe", content_type="application/json"),
    ]
    answered: list[int] = []

    def register(request: web.Request) -> web.Response:
        answered.append(1)
        return hostile.pop(0) if hostile else _offering("rt-good")

    fake.register = register
    fake.heartbeat = lambda request: (
        web.json_response({"error": "who?"}, status=404)
        if request.headers.get("X-Agent-Relay-Token") != "rt-good"
        else web.json_response({"ok": True})
    )
    fake.poll = lambda request: _nested(100_000)
    host = await hostd(fake.url).configure(relay={"token": "bootstrap"}).start()

    def good_beats() -> list[Call]:
        return [c for c in fake.beats() if c.token == "rt-good" and c.status == 200]

    await wait_until(lambda: len(good_beats()) >= 3, 20, "heartbeats with the good token")
    assert len(answered) >= 9
    assert {c.token for c in fake.calls} <= {"bootstrap", "rt-good"}
    health = await host.wait_health(lambda h: h["relay"]["connected"], 5, "connected")
    assert health["relay"]["linkRestarts"] == 0
    assert "lastError" not in health["relay"]
    assert host.log_matches("POST /api/orchestrators: answer is nested too deep")
    assert host.log_matches("GET /api/commands: answer is nested too deep")
    assert len(host.log_matches("runtime token that is not a plain token")) == 4
    assert not host.log_matches("stolen|ttttt|ended unexpectedly|restarting it|Traceback")


async def test_runtime_token_refused_with_any_4xx_falls_back_to_the_bootstrap_token(
    fake: FakeRelay, hostd: Callable[[str], Hostd]
) -> None:
    refused: set[str] = set()
    issued = ["rt-1", "rt-2"]

    def register(request: web.Request) -> web.Response:
        if request.headers.get("X-Agent-Relay-Token") in refused:
            return web.json_response({"error": "token too large"}, status=400)
        return _offering(issued.pop(0) if len(issued) > 1 else issued[0])

    def heartbeat(request: web.Request) -> web.Response:
        if request.headers.get("X-Agent-Relay-Token") in refused:
            return web.json_response({"error": "unavailable"}, status=503)
        return web.json_response({"ok": True})

    fake.register, fake.heartbeat = register, heartbeat
    host = await hostd(fake.url).configure(relay={"token": "bootstrap"}).start()
    await wait_until(lambda: len([c for c in fake.beats() if c.token == "rt-1"]) >= 2, 10, "rt-1")
    refused.add("rt-1")

    def rt2_beats() -> list[Call]:
        return [c for c in fake.beats() if c.token == "rt-2" and c.status == 200]

    await wait_until(lambda: len(rt2_beats()) >= 2, 15, "heartbeats with the new token")
    registers = fake.matching("POST", "/api/orchestrators")
    registers = [c for c in registers if c.raw_path == "/api/orchestrators"]
    assert [(c.token, c.status) for c in registers] == [
        ("bootstrap", 200),
        ("rt-1", 400),
        ("bootstrap", 200),
    ]
    assert host.log_matches("relay refused the runtime token .* HTTP 400")


async def test_redirects_are_never_followed_and_the_token_goes_nowhere_else(
    fake: FakeRelay, hostd: Callable[[str], Hostd]
) -> None:
    elsewhere = FakeRelay()
    runner, elsewhere.url = await _serve(elsewhere.app())
    try:
        registers: list[int] = []

        def register(request: web.Request) -> web.Response:
            registers.append(1)
            if len(registers) == 1:
                raise web.HTTPFound(elsewhere.url + "/api/orchestrators")
            if len(registers) == 2:
                raise web.HTTPTemporaryRedirect(elsewhere.url + "/api/orchestrators")
            return web.json_response({"ok": True})

        def poll(request: web.Request) -> web.Response:
            raise web.HTTPPermanentRedirect(elsewhere.url + "/api/commands")

        fake.register, fake.poll = register, poll
        host = await hostd(fake.url).configure(relay={"token": "secret-token"}).start()
        await wait_until(lambda: len(fake.matching("GET", "/api/commands")) >= 3, 15, "polls")
        assert elsewhere.calls == []
        assert len(registers) == 3
        health = await host.health()
        assert health is not None and health["registration"]["registered"] is True
        assert host.log_matches(r"HTTP 302: redirect to .* not followed")
        assert host.log_matches(r"GET /api/commands: HTTP 308: redirect to .* not followed")
    finally:
        await runner.cleanup()
