"""Git work runs off the event loop: health answers while large diffs are computed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from hostd.api import create_app
from tests.gitrepo import Repo
from tests.test_api import TOKEN, make_config


def build_large_branch(base_dir: Path, repo: Repo) -> Repo:
    repo.commit(
        "base files",
        {
            f"d{i}/f{j}.txt": "".join(f"line {k}\n" for k in range(400))
            for i in range(10)
            for j in range(30)
        },
    )
    agent = repo.worktree(base_dir / "wt", "agent/big")
    agent.commit(
        "rewrite",
        {
            f"d{i}/f{j}.txt": "".join(f"changed {k}\n" for k in range(400))
            for i in range(10)
            for j in range(30)
        },
    )
    return agent


async def test_health_answers_while_eight_large_diffs_run(
    aiohttp_client: Any, base_dir: Path, repo: Repo
) -> None:
    agent = build_large_branch(base_dir, repo)
    client: TestClient = await aiohttp_client(
        create_app(make_config(base_dir, **{"api.request_timeout": "60s"}))
    )
    params = {"path": str(agent.path), "baseRef": "main"}
    headers = {"X-Agent-Relay-Token": TOKEN}
    diffs_done = 0

    async def one_diff() -> None:
        nonlocal diffs_done
        resp = await client.get("/api/workspace/diff", params=params, headers=headers)
        assert resp.status == 200
        assert len((await resp.json())["files"]) == 300
        diffs_done += 1

    tasks = [asyncio.create_task(one_diff()) for _ in range(8)]
    answered_while_busy = 0
    while diffs_done < len(tasks) and answered_while_busy < 5:
        resp = await client.get("/api/health")
        assert resp.status == 200
        if diffs_done < len(tasks):
            answered_while_busy += 1
    await asyncio.gather(*tasks)
    assert answered_while_busy >= 5
