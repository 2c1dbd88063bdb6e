"""`orchestrator.upgrade`: stage, verify, switch, restart; the relay settles it by version.

The handler never reports `succeeded`: after the switch it asks for exit 75 and returns None;
the new version's register/heartbeat settles the command. Refusals and staging failures are
`failed` with the reason; a rollback is reported by the old version when it starts again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hostd import SEMVER
from hostd.commands.registry import BaseHandler, Command, CommandContext, Result
from hostd.config import Config
from hostd.upgrade import record as rec
from hostd.upgrade.layout import PREVIOUS, Busy, Layout, unlock
from hostd.upgrade.managed import eligibility
from hostd.upgrade.policy import refusal, target_problem
from hostd.upgrade.stage import StageError, smoke_test, stage
from hostd.upgrade.switch import switch
from hostd.upgrade.trial import EXIT_RESTART

if TYPE_CHECKING:
    from hostd.relay.journal import Entry

UPGRADE = "orchestrator.upgrade"


def _in_progress(target: str) -> dict[str, Any]:
    return {"error": f"an upgrade to {target} is already in progress"}


class UpgradeHandler(BaseHandler):
    type = UPGRADE
    exclusive = True

    def __init__(
        self, config: Config, config_path: str | None, env: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.eligibility = eligibility(config, env)
        self.capability = "selfUpgrade" if self.eligibility.problem is None else None
        self._running: str | None = None

    @property
    def layout(self) -> Layout:
        return self.eligibility.layout

    def lock_paths(self, params: dict[str, Any]) -> list[str]:
        return []

    async def run(self, command: Command, ctx: CommandContext) -> Result:
        target = command.params.get("targetVersion")
        problem = target_problem(target)
        if problem is not None:
            return {"error": problem}
        assert isinstance(target, str)
        if self.eligibility.problem is not None:
            return {"error": self.eligibility.problem}
        if self._running is not None:
            return _in_progress(self._running)
        state_dir = self.config.state_dir
        record = await asyncio.to_thread(rec.load, state_dir)
        if record.in_progress and record.command_id != command.id:
            return _in_progress(record.to)
        if target == SEMVER:
            await ctx.progress({"phase": "already-current", "targetVersion": target})
            return None
        force = command.params.get("force") is True
        refused = refusal(target, SEMVER, force, self.config.upgrade.allowed, record)
        if refused is not None:
            return {"error": refused}
        try:
            fd = await asyncio.to_thread(self.layout.lock)
        except Busy:
            return _in_progress(f"{target} (another process holds {self.layout.lock_file})")
        self._running = target
        try:
            return await self._upgrade(command, ctx, target, record)
        finally:
            self._running = None
            unlock(fd)

    async def _upgrade(
        self, command: Command, ctx: CommandContext, target: str, old: rec.Record
    ) -> Result:
        state_dir, settings = self.config.state_dir, self.config.upgrade
        record = rec.Record(
            command_id=command.id,
            phase=rec.INSTALLING,
            to=target,
            previous=SEMVER,
            cooldowns=old.cooldowns,
        )
        await asyncio.to_thread(rec.save, state_dir, record)
        await ctx.progress({"phase": "installing", "targetVersion": target})
        try:
            if self.layout.linked(PREVIOUS) == target:
                ctx.log.info("upgrade: %s is still installed as previous; reusing it", target)
                await smoke_test(self.layout, target, self.config_path, settings.install_timeout)
            else:
                await stage(
                    self.layout,
                    target,
                    settings.pip_args,
                    self.config_path,
                    settings.install_attempts,
                    settings.install_timeout,
                )
        except StageError as exc:
            record.phase, record.reason = rec.FAILED, str(exc)
            await asyncio.to_thread(rec.save, state_dir, record)
            return {"error": str(exc), "targetVersion": target}
        await asyncio.to_thread(switch, self.layout, state_dir, record, settings.trial_deadline)
        await ctx.progress({"phase": "restarting", "targetVersion": target, "fromVersion": SEMVER})
        ctx.log.info("upgrade: switched to %s; restarting (exit %d)", target, EXIT_RESTART)
        ctx.request_exit(EXIT_RESTART)
        return None

    async def recover(self, command: Command, entry: Entry, ctx: CommandContext) -> Result:
        """hostd stopped while this upgrade ran; the record says how far it got."""
        record = await asyncio.to_thread(rec.load, self.config.state_dir)
        if record.command_id != command.id:
            return {"error": f"{UPGRADE} was interrupted by a restart of hostd; not retried"}
        if record.phase in (rec.TRIAL, rec.OK):
            return None
        if record.phase == rec.ROLLED_BACK:
            return {"error": f"rolled back: {record.reason}"}
        reason = record.reason or "interrupted by a restart of hostd"
        return {"error": f"{reason}; {SEMVER} still runs", "targetVersion": record.to}
