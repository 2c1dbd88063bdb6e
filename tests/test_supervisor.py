"""The supervisor keeps a task running whatever its coroutine does, until it is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from hostd.relay.link import Backoff
from hostd.relay.supervisor import supervise
from tests.relay_harness import wait_until


async def test_a_failing_or_returning_task_is_started_again_until_cancelled() -> None:
    runs: list[str] = []
    crashes: list[BaseException] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise RecursionError("maximum recursion depth exceeded")
        if len(runs) == 2:
            return
        steady.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("flaky", flaky, crashes.append, Backoff(0.01, 0.02, 0)))
    await wait_until(steady.is_set, 5, "third run")
    assert [type(exc) for exc in crashes] == [RecursionError, RuntimeError]
    assert str(crashes[1]) == "flaky returned"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs) == 3
