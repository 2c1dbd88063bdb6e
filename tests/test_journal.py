"""The command journal: its own behaviour on disk, and crash recovery with hostd as a process."""

from __future__ import annotations

import shutil
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import psutil

from hostd.relay.journal import ACCEPTED, DONE, NEW, RUNNING, SUCCEEDED, Journal, params_digest
from tests.gitrepo import init_repo
from tests.relay_harness import DevRelay, Hostd, counter_lines, wait_until

COUNTER = "hostd.test.counter"


async def test_journal_keeps_phases_and_outcomes_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "dir" / "journal.sqlite3"
    journal = Journal(str(path))
    await journal.open()
    params = {"worktreePath": "/srv/x", "n": 1}
    entry = await journal.add("c1", "workspace.merge", params)
    assert (entry.phase, entry.params, entry.reported) == (NEW, params, False)
    assert entry.digest == params_digest({"n": 1, "worktreePath": "/srv/x"})
    again = await journal.add("c1", "workspace.merge", {"other": True})
    assert again == entry
    await journal.add("c2", "workspace.cleanup", {})
    await journal.add("c3", "workspace.cleanup", {})
    await journal.set_phase("c1", RUNNING)
    await journal.set_phase("c2", ACCEPTED)
    await journal.record_outcome("c3", SUCCEEDED, {"status": "cleaned"})
    await journal.close()

    journal = Journal(str(path))
    await journal.open()
    assert [(e.id, e.phase) for e in await journal.unfinished()] == [
        ("c1", RUNNING),
        ("c2", ACCEPTED),
    ]
    [unreported] = await journal.unreported()
    assert (unreported.id, unreported.phase, unreported.status, unreported.result) == (
        "c3",
        DONE,
        SUCCEEDED,
        {"status": "cleaned"},
    )
    await journal.mark_reported("c3")
    assert await journal.unreported() == []
    assert await journal.prune(older_than_ms=60_000) == 0
    assert await journal.prune(older_than_ms=-1) == 1
    assert await journal.get("c3") is None
    await journal.forget("c2")
    assert [e.id for e in await journal.unfinished()] == ["c1"]
    await journal.close()
    assert path.stat().st_size > 0


async def test_kill_9_mid_command_then_restart_recovers_and_reports_once(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 30)
    host.send(signal.SIGKILL)
    assert await host.wait_exit() == -signal.SIGKILL
    assert (await relay.command(command_id))["status"] == "running"

    await host.start()
    done = await relay.finished(command_id)
    assert done["status"] == "succeeded"
    assert done["result"] == {"recovered": True, "runs": 1}
    assert counter_lines(count) == [command_id]
    outcomes = [p for p in await relay.patches(command_id) if p["json"]["status"] == "succeeded"]
    assert len(outcomes) == 1
    await host.wait_log(f"command {command_id} .* was running when hostd stopped", 5)


async def test_unreported_outcome_is_reported_after_restart_without_running_again(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 0.5)
    await relay.faults(fail=["PATCH /api/commands/*"])

    async def outcome_refused() -> bool:
        patches = await relay.patches(command_id)
        return any(p["json"]["status"] == "succeeded" and p["status"] == 500 for p in patches)

    await wait_until(outcome_refused, 10, "outcome refused")
    host.send(signal.SIGKILL)
    await host.wait_exit()
    await relay.faults(fail=[])

    await host.start()
    done = await relay.finished(command_id)
    assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    assert counter_lines(count) == [command_id]
    assert not host.log_matches("recovering")


def _journal_rows(state_dir: Path) -> dict[str, tuple[str, str | None, int]]:
    db = sqlite3.connect(state_dir / "journal.sqlite3")
    try:
        rows = db.execute("SELECT id, phase, status, reported FROM commands").fetchall()
    finally:
        db.close()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def test_unwritable_journal_still_reports_the_outcome_and_shows_in_health(
    relay: DevRelay, hostd: Callable[[str], Hostd], base_dir: Path, tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    repo = {"file": str(count), "path": str(init_repo(base_dir / "repo").path)}
    first = await relay.enqueue(host.id, COUNTER, {**repo, "seconds": 1.0})
    await wait_until(lambda: counter_lines(count) == [first], 10, "first command started")
    waiting = await relay.enqueue(host.id, COUNTER, repo)
    await wait_until(lambda: _status_is(relay, waiting, "accepted"), 10, "second accepted")
    hostd_process = psutil.Process(host.pid)
    limits = hostd_process.rlimit(psutil.RLIMIT_FSIZE)
    # A zero file-size limit fails every write of the journal like a full disk (EFBIG).
    hostd_process.rlimit(psutil.RLIMIT_FSIZE, (0, limits[1]))
    try:
        done = await relay.finished(first)
        assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
        health = await host.wait_health(lambda h: not h["journal"]["ok"], 10, "journal failing")
        assert health["degraded"] is True
        assert health["journal"]["failures"] >= 1
        await host.wait_log("journal .*: OperationalError")

        later = await relay.enqueue(host.id, COUNTER, {"file": str(count)})
        await wait_until(lambda: _polls_after(relay, later, 3), 10, "polls while failing")
        assert (await relay.command(later))["status"] == "pending"
        assert (await relay.command(waiting))["status"] == "accepted"
        assert counter_lines(count) == [first]
    finally:
        hostd_process.rlimit(psutil.RLIMIT_FSIZE, limits)

    for command_id in (waiting, later):
        done = await relay.finished(command_id)
        assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    assert sorted(counter_lines(count)) == sorted([first, waiting, later])
    await host.wait_health(lambda h: h["journal"]["ok"], 10, "journal ok again")
    assert len(host.log_matches("WARNING hostd.journal: .*OperationalError")) == 1
    assert len(await host.wait_log("hostd.journal: .* resolved after")) == 1
    await wait_until(lambda: _journal_rows(host.state_dir).get(first) == (DONE, SUCCEEDED, 1))
    outcomes = [p for p in await relay.patches(first) if p["json"]["status"] == "succeeded"]
    assert len(outcomes) == 1


async def _status_is(relay: DevRelay, command_id: str, status: str) -> bool:
    return (await relay.command(command_id))["status"] == status


async def _polls_after(relay: DevRelay, command_id: str, minimum: int) -> bool:
    created = (await relay.command(command_id))["createdAt"]
    polls = await relay.requests("GET", "/api/commands")
    return len([p for p in polls if p["time"] >= created]) >= minimum


async def test_state_dir_deleted_while_running_is_noticed_and_the_journal_written_again(
    relay: DevRelay, hostd: Callable[[str], Hostd], tmp_path: Path
) -> None:
    host = await hostd(relay.url).start()
    count = tmp_path / "count"
    command_id = await relay.start_counter(host.id, count, 1.0)
    shutil.rmtree(host.state_dir)
    await host.wait_log("journal .* was deleted while hostd runs")
    done = await relay.finished(command_id)
    assert (done["status"], done["result"]) == ("succeeded", {"runs": 1})
    health = await host.health()
    assert health is not None and "deleted" in health["journal"]["lastError"]
    assert health["journal"]["failures"] >= 1
    await wait_until(lambda: _journal_rows(host.state_dir).get(command_id) == (DONE, SUCCEEDED, 1))
