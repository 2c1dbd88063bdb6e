"""Git queries run in worker processes; a crashed worker costs only its own request."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest

from hostd.gitpool import GitPool, WorkerFailed
from tests.relay_harness import wait_until


async def test_work_runs_in_another_process_and_survives_a_crash() -> None:
    pool = GitPool(1)
    try:
        worker_pid = await pool.run(os.getpid)
        assert worker_pid != os.getpid()
        with pytest.raises(WorkerFailed):
            await pool.run(os._exit, 3)
        assert await pool.run(os.getpid) not in (os.getpid(), worker_pid)
    finally:
        pool.shutdown()


async def test_a_repository_sticks_to_its_worker_unless_that_one_is_busy() -> None:
    pool = GitPool(2)
    try:
        pids = {await pool.run(os.getpid, key="/base/repo") for _ in range(6)}
        assert len(pids) == 1
        preferred = pids.pop()
        busy = asyncio.create_task(pool.run(time.sleep, 0.5, key="/base/repo"))
        await asyncio.sleep(0)
        assert await pool.run(os.getpid, key="/base/repo") != preferred
        await busy
        assert await pool.run(os.getpid, key="/base/repo") == preferred
    finally:
        pool.shutdown()


async def test_workers_are_recycled_when_they_grow_and_keep_answering() -> None:
    pool = GitPool(1, recycle_growth=32 * 2**20)
    try:
        pids = [await pool.run(os.getpid) for _ in range(20)]
        assert len(set(pids)) == 1
        grown = [await pool.run(_grow, 40 * 2**20) for _ in range(3)]
        assert grown[0] == pids[0] and len(set(grown)) == 3
        assert await pool.run(os.getpid) not in (*grown, os.getpid())
    finally:
        pool.shutdown()


_held: list[bytearray] = []


def _grow(size: int) -> int:
    """Hold `size` more bytes (touched, so resident) in this worker; its pid."""
    _held.append(bytearray(b"x" * size))
    return os.getpid()


async def test_workers_start_before_the_first_task() -> None:
    pool = GitPool(2)
    try:
        pool.start()
        pids = await wait_until(lambda: len(pool.pids()) == 2 and pool.pids(), what="started")
        assert os.getpid() not in pids
        assert await pool.run(os.getpid, key="/base/repo") in pids
    finally:
        pool.shutdown()


async def test_an_abandoned_task_ends_its_worker_and_frees_it() -> None:
    pool = GitPool(1)
    try:
        first = await pool.run(os.getpid)
        stuck = asyncio.create_task(pool.run(time.sleep, 600))
        await wait_until(lambda: pool.health()["busy"] == 1, what="busy")
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        await wait_until(lambda: not psutil.pid_exists(first), what="worker ended")
        assert pool.health()["busy"] == 0
        assert await pool.run(os.getpid) not in (first, os.getpid())
    finally:
        pool.shutdown()


async def test_a_writing_worker_is_not_ended_and_stays_busy_until_done(tmp_path: Path) -> None:
    pool = GitPool(1, writes=True)
    gate = tmp_path / "gate"
    try:
        first = await pool.run(os.getpid)
        task = asyncio.create_task(pool.run(_wait_for_file, str(gate)))
        await wait_until(lambda: pool.health()["busy"] == 1, what="busy")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.health()["busy"] == 1
        gate.touch()
        await wait_until(lambda: pool.health()["busy"] == 0, what="done")
        assert await pool.run(os.getpid) == first
    finally:
        pool.shutdown()


def _wait_for_file(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


async def test_a_cheap_task_does_not_wait_behind_busy_workers() -> None:
    pool = GitPool(1)
    try:
        busy_pid = await pool.run(os.getpid)
        slow = asyncio.create_task(pool.run(time.sleep, 600))
        await wait_until(lambda: pool.health()["busy"] == 1, what="busy")
        assert await pool.run(os.getpid) not in (busy_pid, os.getpid())
        assert not slow.done()
        await wait_until(lambda: pool.health()["extra"] == 0, what="extra worker gone")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
    finally:
        pool.shutdown()


async def test_running_out_of_memory_ends_only_that_worker() -> None:
    pool = GitPool(2, memory_limit=1024 * 2**20)
    try:
        pool.start()
        await wait_until(lambda: len(pool.pids()) == 2, what="started")
        before = set(pool.pids())
        with pytest.raises(WorkerFailed, match="ran out of memory"):
            await pool.run(bytearray, 2 * 1024 * 2**20, key="a")
        await wait_until(lambda: len(pool.pids()) == 2, what="replaced")
        assert len(before & set(pool.pids())) == 1
        assert await pool.run(len, b"still works", key="a") == 11
        assert pool.health()["degraded"] is False
    finally:
        pool.shutdown()


async def test_tasks_preferring_one_busy_worker_are_shared_with_the_idle_one() -> None:
    pool = GitPool(2)
    try:
        pool.start()
        await wait_until(lambda: len(pool.pids()) == 2, what="started")
        preferred = await pool.run(os.getpid, key="/base/repo")
        pids = await asyncio.gather(
            *(pool.run(_pid_after, 0.1, key="/base/repo") for _ in range(8))
        )
        assert preferred in pids
        assert set(pids) & set(pool.pids()) - {preferred}
    finally:
        pool.shutdown()


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


async def test_kept_answers_survive_more_tasks_than_a_busy_minute(
    base_dir: Path,
) -> None:
    from hostd import queries
    from tests.gitrepo import init_repo

    repo = init_repo(base_dir / "repo")
    pool = GitPool(1, keep_status=True)
    try:
        args = (str(repo.path), str(base_dir), "main", None)
        first = await pool.run(queries.state_body, *args)
        pid = pool.pids()
        for _ in range(300):
            assert await pool.run(queries.state_body, *args) == first
        assert pool.pids() == pid
        assert await pool.run(_answers_given) >= 300
    finally:
        pool.shutdown()


def _answers_given() -> int:
    from hostd import queries

    return queries.answers.hits


async def test_a_task_taken_from_its_busy_worker_is_answered_but_not_kept_by_the_taker(
    base_dir: Path,
) -> None:
    from tests.gitrepo import init_repo
    from tests.test_state import expected_state

    main = init_repo(base_dir / "repo")
    tree = main.worktree(base_dir / "wt", "agent/x")
    tree.commit("work", {"a.txt": "a\n"})
    tree.write("dirty.txt", "d\n")
    path = str(tree.path)
    pool = GitPool(2, keep_status=True)
    try:
        pool.start()
        await wait_until(lambda: len(pool.pids()) == 2, what="started")
        owner = await pool.run(os.getpid, key=path)
        busy = asyncio.create_task(pool.run(time.sleep, 0.5, key=path))
        await wait_until(lambda: pool.health()["busy"] == 1, what="busy")
        taker, body, kept, guests = await pool.run(_state_kept, path, str(base_dir), key=path)
        await busy
        assert taker != owner
        assert body == expected_state(tree.path, "main")
        assert (kept, guests) == (0, [os.path.realpath(path)])
        again = await pool.run(_state_kept, path, str(base_dir), key=path)
        assert again == (owner, body, 1, [])
    finally:
        pool.shutdown()


def _state_kept(path: str, base_dir: str) -> tuple[int, dict, int, list[str]]:
    """The state body, and what this worker keeps: answers, and guest worktrees watched."""
    from hostd import queries
    from hostd.git.status import kept_watch

    body = queries.state_body(path, base_dir, "main", None)
    watch = kept_watch()
    assert watch is not None
    guests = list(watch._guests)
    return os.getpid(), body, len(queries.answers), guests
