"""The command loop: status sequence, retries, locks, and a hostile relay; hostd as a process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hostd.relay.locks import Slots
from hostd.relay.report import final_result, status_of, terminal_body
from tests.gitrepo import init_repo
from tests.relay_harness import DevRelay, Hostd, counter_lines, wait_until

COUNTER = "hostd.test.counter"
TERMINAL = ("succeeded", "failed")


def statuses(patches: list[dict[str, Any]]) -> list[str]:
    return [p["json"]["status"] for p in patches]


async def test_commands_report_accepted_running_then_outcome_once(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    ok = await relay.enqueue(host.id, COUNTER, {"file": str(count)})
    failing = await relay.enqueue(host.id, COUNTER, {"file": str(count), "error": "boom"})
    big = await relay.enqueue(host.id, COUNTER, {"file": str(count), "output": 300_000})
    unknown = await relay.enqueue(host.id, "bogus.type", {})
    no_file = await relay.enqueue(host.id, COUNTER, {"workspaceId": "ws-1"})

    done = await relay.finished(ok)
    assert done["status"] == "succeeded"
    assert done["result"] == {"runs": 1}
    assert "error" not in done
    assert statuses(await relay.patches(ok)) == ["accepted", "running", "running", "succeeded"]

    done = await relay.finished(failing)
    assert (done["status"], done["error"], done["result"]) == (
        "failed",
        "boom",
        {"runs": 1, "error": "boom"},
    )

    done = await relay.finished(big)
    assert done["status"] == "succeeded"
    assert done["result"]["truncated"] is True
    assert done["result"]["runs"] == 1
    assert 1000 < len(done["result"]["output"]) < 60 * 1024
    final = (await relay.patches(big))[-1]
    assert final["status"] == 200
    assert final["bodySize"] < 60 * 1024

    done = await relay.finished(unknown)
    assert (done["status"], done["error"]) == ("failed", "unsupported command type: bogus.type")
    assert statuses(await relay.patches(unknown)) == ["failed"]

    done = await relay.finished(no_file)
    assert done["status"] == "failed"
    assert done["result"] == {"workspaceId": "ws-1", "error": "params.file: expected a file path"}

    assert sorted(counter_lines(count)) == sorted([ok, failing, big])
    async with host.session.get(host.url + "/metrics") as res:
        metrics = await res.text()
    assert f'hostd_commands_total{{outcome="succeeded",type="{COUNTER}"}} 2.0' in metrics
    assert f'hostd_commands_total{{outcome="failed",type="{COUNTER}"}} 2.0' in metrics
    assert 'hostd_commands_total{outcome="failed",type="unsupported"} 1.0' in metrics


async def test_failed_status_reports_are_retried_and_nothing_runs_twice(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    first = await relay.enqueue(host.id, COUNTER, {"file": str(count), "seconds": 1.0})

    async def started() -> bool:
        patches = await relay.patches(first)
        return statuses(patches).count("running") == 2

    await wait_until(started, 10, "first command running")
    await relay.faults(fail=["PATCH /api/commands/*"], failStatus=500)

    async def refused_outcomes(command_id: str, status: str, minimum: int) -> bool:
        patches = await relay.patches(command_id)
        refused = [p for p in patches if p["json"]["status"] == status and p["status"] == 500]
        return len(refused) >= minimum

    await wait_until(lambda: refused_outcomes(first, "succeeded", 4), 10, "outcome retried")
    health = await host.health()
    assert health is not None and health["commandLoop"]["inFlight"] == 0

    second = await relay.enqueue(host.id, COUNTER, {"file": str(count)})
    await wait_until(lambda: refused_outcomes(second, "accepted", 6), 10, "accept retried")
    assert count.read_text().splitlines() == [first]
    await relay.faults(fail=[])

    done = await relay.finished(first)
    assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    done = await relay.finished(second)
    assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    assert sorted(counter_lines(count)) == sorted([first, second])
    assert statuses(await relay.patches(first)).count("running") == 2
    assert len(await host.wait_log("reporting command status .* resolved after")) == 1
    assert len(host.log_matches("WARNING .* reporting command status to the relay failed")) == 1


async def test_one_repository_at_a_time_in_order_and_at_most_max_concurrent(
    relay: DevRelay, hostd: Callable[[str], Hostd], base_dir: Path, tmp_path: Path
) -> None:
    repo = init_repo(base_dir / "repo")
    linked = repo.worktree(base_dir / "linked", "agent/x")
    other = init_repo(base_dir / "other")
    third = init_repo(base_dir / "third")
    host = await hostd(relay.url).configure(commands={"max_concurrent": 2}).start()
    count = tmp_path / "count"

    def params(path: Path, seconds: float) -> dict[str, Any]:
        return {"file": str(count), "seconds": seconds, "path": str(path)}

    a = await relay.enqueue(host.id, COUNTER, params(repo.path, 0.6))
    b = await relay.enqueue(host.id, COUNTER, params(linked.path / "sub", 0.1))
    c = await relay.enqueue(host.id, COUNTER, params(other.path, 0.6))
    d = await relay.enqueue(host.id, COUNTER, params(third.path, 0.1))
    (linked.path / "sub").mkdir()
    for command_id in (a, b, c, d):
        assert (await relay.finished(command_id))["status"] == "succeeded"

    async def started_at(command_id: str) -> int:
        patches = await relay.patches(command_id)
        return next(p["time"] for p in patches if p["json"] == {"status": "running"})

    ta, tb, tc, td = [await started_at(x) for x in (a, b, c, d)]
    assert tb >= ta + 550, "same repository (linked worktree) ran concurrently"
    assert tc < ta + 400, "different repositories did not run concurrently"
    assert td >= min(ta, tc) + 550, "more than max_concurrent commands ran at once"
    assert (repo.path / ".git" / "hostd.lock").exists()
    assert not (linked.path / "hostd.lock").exists()
    assert sorted(counter_lines(count)) == sorted([a, b, c, d])


class HostileRelay:
    """Answers polls from a script of bad replies, then with 1 000 unsupported commands plus one
    command it keeps offering whatever hostd reports."""

    def __init__(self, count: Path) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.polls = 0
        self.bulk = {f"bulk-{i}" for i in range(1000)}
        self.sticky = {"id": "sticky", "type": COUNTER, "params": {"file": str(count)}}
        self.script: list[web.Response] = [
            web.Response(text="<html>oops</html>", content_type="text/html"),
            web.json_response({"commands": []}),
            web.json_response([1, "x", None]),
            web.json_response([{"type": COUNTER, "params": {}}]),
            web.json_response(
                [
                    {"id": "m-type", "params": {}},
                    {"id": "m-params", "type": COUNTER, "params": [1, 2]},
                    {"id": 7, "type": "bogus"},
                ]
            ),
            web.Response(
                body=json.dumps([{"id": "huge", "type": COUNTER, "params": {"pad": "x" * 10**7}}]),
                content_type="application/json",
            ),
        ]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/orchestrators", self.ok)
        app.router.add_post("/api/orchestrators/{id}/heartbeat", self.ok)
        app.router.add_get("/api/commands", self.poll)
        app.router.add_patch("/api/commands/{id}", self.patch)
        return app

    async def ok(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def poll(self, request: web.Request) -> web.Response:
        self.polls += 1
        if self.script:
            return self.script.pop(0)
        pending = [{"id": i, "type": "bogus", "target": "x"} for i in sorted(self.bulk)]
        for item in pending:
            item["target"] = request.query["target"]
        return web.json_response([self.sticky, *pending])

    async def patch(self, request: web.Request) -> web.Response:
        body = await request.json()
        command_id = request.match_info["id"]
        self.patches.append((command_id, body))
        if body["status"] in ("failed", "succeeded"):
            self.bulk.discard(command_id)
        return web.json_response({"ok": True})

    def outcomes(self, command_id: str) -> list[dict[str, Any]]:
        return [b for i, b in self.patches if i == command_id and b["status"] in TERMINAL]


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[tuple[HostileRelay, str]]:
    fake = HostileRelay(tmp_path / "count")
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_hostile_relay_answers_are_logged_and_answered_where_possible(
    hostile: tuple[HostileRelay, str], hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    fake, url = hostile
    host = await hostd(url).configure(relay={"poll_interval": "100ms"}).start()
    await wait_until(lambda: not fake.bulk, 30, "all 1000 unsupported commands answered")
    await wait_until(lambda: len(fake.outcomes("sticky")) >= 3, 10, "sticky command re-reported")

    for bulk_id in ("bulk-0", "bulk-500", "bulk-999"):
        assert fake.outcomes(bulk_id) == [
            {
                "status": "failed",
                "result": {"error": "unsupported command type: bogus"},
                "error": "unsupported command type: bogus",
            }
        ]
    assert fake.outcomes("m-type")[0]["error"] == "malformed command: missing or invalid type"
    assert fake.outcomes("m-params")[0]["error"] == (
        "malformed command: params is not an object (got list)"
    )
    assert fake.outcomes("7") == []
    assert fake.outcomes("huge") == []

    assert counter_lines(tmp_path / "count") == ["sticky"]
    sticky = fake.outcomes("sticky")
    assert {json.dumps(b, sort_keys=True) for b in sticky} == {
        json.dumps({"status": "succeeded", "result": {"runs": 1}}, sort_keys=True)
    }
    assert [b["status"] for i, b in fake.patches if i == "sticky"].count("accepted") == 1

    for pattern in (
        r"answer is not JSON \(17 bytes",
        "expected a JSON array of commands, got dict",
        r"malformed command: not a JSON object \(got int\): 1",
        r"malformed command: invalid id: id is not a string \(got NoneType\): \{'type'",
        r"invalid id: id is not a string \(got int\): \{'id': 7",
        "malformed command: missing or invalid type: command m-type",
        "answer larger than 4194304 bytes",
        "relay returned 1001 commands for limit=50; taking the first 50",
    ):
        await host.wait_log(pattern, 5)
    assert len(host.log_matches("relay returned .* commands for limit")) == 1
    assert len(host.log_matches("Traceback")) == 0
    health = await host.health()
    assert health is not None and health["commandLoop"]["stalled"] is False


async def test_slots_run_an_exclusive_holder_alone_and_before_later_arrivals() -> None:
    slots = Slots(2)
    events: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, exclusive: bool = False) -> None:
        async with slots.hold(exclusive):
            events.append(f"+{name}")
            if name in ("a", "b"):
                await release.wait()
            events.append(f"-{name}")

    tasks = [asyncio.create_task(hold("a")), asyncio.create_task(hold("b"))]
    await wait_until(lambda: len(events) == 2, 2, "two holders")
    tasks.append(asyncio.create_task(hold("upgrade", exclusive=True)))
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(hold("c")))
    for _ in range(20):
        await asyncio.sleep(0)
    assert events == ["+a", "+b"]
    release.set()
    await asyncio.gather(*tasks)
    assert events[4:] == ["+upgrade", "-upgrade", "+c", "-c"]


def test_final_result_keeps_the_body_under_the_cap_and_says_so() -> None:
    small = {"status": "merged", "workspaceId": "w"}
    assert final_result(small) == small
    assert final_result({"error": ""}) == {}
    assert final_result({"error": {"code": 1}}) == {"error": '{"code": 1}'}

    big = {"status": "merged", "patch": "p" * 200_000, "files": ["f" * 300] * 400}
    capped = final_result(big)
    assert capped["truncated"] is True and capped["status"] == "merged"
    body = terminal_body(status_of(capped), capped)
    assert len(json.dumps(body, separators=(",", ":"))) < 60 * 1024
    assert body["status"] == "succeeded"

    many = {"error": "e" * 10_000, "shas": ["a" * 40] * 5000, "status": "conflict"}
    capped = final_result(many)
    body = terminal_body(status_of(capped), capped)
    assert len(json.dumps(body, separators=(",", ":"))) < 60 * 1024
    assert body["status"] == "failed" and body["error"] == capped["error"]
    assert capped["status"] == "conflict" and capped["truncated"] is True


async def test_a_refused_accept_is_logged_once_per_command_not_every_poll(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    await relay.faults(fail=["PATCH /api/commands/*"], failStatus=409)
    count = tmp_path / "count"
    first = await relay.enqueue(host.id, COUNTER, {"file": str(count)})
    second = await relay.enqueue(host.id, COUNTER, {"file": str(count)})

    async def refused(command_id: str) -> bool:
        patches = await relay.patches(command_id)
        return len([p for p in patches if p["status"] == 409]) >= 5

    await wait_until(lambda: refused(first), 10, "accept refused five times")
    await wait_until(lambda: refused(second), 10, "accept refused five times")
    for command_id in (first, second):
        lines = host.log_matches(f"relay refused status accepted of command {command_id}")
        assert len(lines) == 1, lines
    assert not count.exists()
