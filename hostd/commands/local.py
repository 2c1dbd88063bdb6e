"""Run a command handler from the command line, under the same repository locks as the daemon
(the file lock in the common git dir too), so running it next to a daemon is safe."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from hostd.commands.registry import Command, CommandContext, Handler
from hostd.config import Config
from hostd.gitpool import GitPool
from hostd.relay.locks import RepositoryLocks, repository_key
from hostd.relay.report import final_result

log = logging.getLogger("hostd.local")


async def _no_progress(result: dict[str, Any]) -> None:
    return None


def _no_exit(code: int) -> None:
    return None


async def run_locally(handler: Handler, params: dict[str, Any], config: Config) -> dict[str, Any]:
    """The handler's result for `params`, as the daemon would report it."""
    command = Command(id=f"local-{uuid.uuid4()}", type=handler.type, params=params)
    key = await asyncio.to_thread(repository_key, handler.lock_paths(params), config.base_dir)
    pool = GitPool(1, writes=True)
    try:
        ctx = CommandContext(
            config=config,
            log=log.getChild(handler.type),
            progress=_no_progress,
            request_exit=_no_exit,
            git=pool,
        )
        async with RepositoryLocks().hold(key):
            result = await handler.run(command, ctx)
    finally:
        pool.shutdown()
    return final_result(result or {})
