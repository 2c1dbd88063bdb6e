"""`hostd.test.counter`, registered only with HOSTD_TEST_HANDLERS=1: proves nothing runs twice.

Params: `file` (required) gets one line `<command id>` per run; `seconds` to stay running;
`path` to take that repository's lock; `output` (characters of filler in the result);
`error` to fail with that message.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from hostd.commands.registry import BaseHandler, Command, CommandContext, Result

if TYPE_CHECKING:
    from hostd.relay.journal import Entry


def _runs(path: str, command_id: str) -> int:
    try:
        with open(path) as fh:
            return sum(1 for line in fh if line.rstrip("\n") == command_id)
    except FileNotFoundError:
        return 0


def _append(path: str, command_id: str) -> None:
    with open(path, "a") as fh:
        fh.write(command_id + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class CounterHandler(BaseHandler):
    type = "hostd.test.counter"

    def lock_paths(self, params: dict[str, Any]) -> list[str]:
        path = params.get("path")
        return [path] if isinstance(path, str) else []

    async def run(self, command: Command, ctx: CommandContext) -> Result:
        params = command.params
        target = params.get("file")
        if not isinstance(target, str) or not target:
            return {"error": "params.file: expected a file path"}
        seconds = params.get("seconds", 0)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return {"error": "params.seconds: expected a non-negative number"}
        await asyncio.to_thread(_append, target, command.id)
        await ctx.progress({"phase": "counting"})
        await asyncio.sleep(seconds)
        result: dict[str, Any] = {"runs": await asyncio.to_thread(_runs, target, command.id)}
        output = params.get("output")
        if isinstance(output, int) and not isinstance(output, bool) and output > 0:
            result["output"] = "x" * output
        error = params.get("error")
        if isinstance(error, str) and error:
            result["error"] = error
        return result

    async def recover(self, command: Command, entry: Entry, ctx: CommandContext) -> Result:
        target = command.params.get("file")
        if not isinstance(target, str):
            return {"error": "params.file: expected a file path"}
        return {"recovered": True, "runs": await asyncio.to_thread(_runs, target, command.id)}
