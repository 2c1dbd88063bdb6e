"""The handler protocol and the registry the command loop dispatches through.

A handler's `run` returns the command's result: a dict with `error` set means `failed`, without
it `succeeded`; None means the relay settles the command itself (an upgrade) and nothing is
reported. `recover` is called instead of `run` when a journal shows the command started but hostd
died before recording an outcome; it must find out what happened without redoing the work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hostd.config import Config
from hostd.gitpool import GitPool

if TYPE_CHECKING:
    from hostd.relay.journal import Entry

Result = dict[str, Any] | None


@dataclass(frozen=True)
class Command:
    id: str
    type: str
    params: dict[str, Any]


@dataclass(frozen=True)
class CommandContext:
    config: Config
    log: logging.Logger
    progress: Callable[[dict[str, Any]], Awaitable[None]]
    """PATCH `running` again with this progress `result` (best effort, never raises)."""
    request_exit: Callable[[int], None]
    """Drain as on SIGTERM, then exit with this code (75 asks systemd for a restart)."""
    git: GitPool
    """Worker processes for the command's pygit2 work (`await ctx.git.run(fn, *args, key=…)`):
    it never runs on the event loop."""


class Handler(Protocol):
    type: str
    capability: str | None
    """The `capabilities` key this handler makes true, e.g. `workspaceMerge`."""
    exclusive: bool
    """Runs alone: no other command runs while it does."""

    def lock_paths(self, params: dict[str, Any]) -> list[str]:
        """Paths naming the repository to lock, best first; the first that resolves wins."""
        ...

    async def run(self, command: Command, ctx: CommandContext) -> Result: ...

    async def recover(self, command: Command, entry: Entry, ctx: CommandContext) -> Result: ...


class BaseHandler:
    """Defaults for a handler of a workspace command."""

    type = ""
    capability: str | None = None
    exclusive = False

    def lock_paths(self, params: dict[str, Any]) -> list[str]:
        return [
            p for p in (params.get("worktreePath"), params.get("repoRoot")) if isinstance(p, str)
        ]

    async def recover(self, command: Command, entry: Entry, ctx: CommandContext) -> Result:
        return {"error": f"{command.type} was interrupted by a restart of hostd; not retried"}


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, handler: Handler) -> None:
        if handler.type in self._handlers:
            raise ValueError(f"a handler for {handler.type} is already registered")
        self._handlers[handler.type] = handler

    def get(self, command_type: str) -> Handler | None:
        return self._handlers.get(command_type)

    def capabilities(self) -> dict[str, bool]:
        caps = {"relayCommandBus": True}
        for handler in self._handlers.values():
            if handler.capability:
                caps[handler.capability] = True
        return caps
