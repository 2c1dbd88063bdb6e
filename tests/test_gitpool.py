"""Git queries run in worker processes; a crashed worker costs only its own request."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from hostd.gitpool import GitPool, WorkerFailed


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


async def test_workers_are_recycled_and_keep_answering() -> None:
    pool = GitPool(1, tasks_per_worker=3)
    try:
        pids = [await pool.run(os.getpid) for _ in range(10)]
        assert len(set(pids)) >= 3
        assert all(pid != os.getpid() for pid in pids)
    finally:
        pool.shutdown()
