"""`workspace.merge`: land an agent's branch on its base (rebase-ff) or open a PR (pr).

The steps run in git workers (`hostd.commands.merge_steps`) in the contract's order: resolve and
preview, fetch the upstream, build the candidate, land gates, compare-and-swap the base, bring
the base's worktree along, push, then remove the worktree (owner gone) or advance the branch
(owner live). Steps before the swap are bounded by `workspaces.merge_timeout`; once the base
moved, the rest always runs to its end, each network call bounded by the fetch timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from hostd.commands import merge_steps as steps
from hostd.commands import params as p
from hostd.commands.merge_request import MergeRequest
from hostd.commands.pause import Phases
from hostd.commands.registry import BaseHandler, Command, CommandContext, Result
from hostd.commands.target import echo_id
from hostd.gates.runner import GatesReport
from hostd.gates.step import run_land_gates

if TYPE_CHECKING:
    from hostd.relay.journal import Entry

T = TypeVar("T")
MAX_RETRIES = 3
FAILED_STATUS = "review_requested"
GATES_RACED = "base moved while the land gates ran"
INTERRUPTED = "merge interrupted by a restart of hostd before it landed; nothing landed"
Data = dict[str, Any]


class _TimedOut(Exception):
    pass


class Merge:
    """One run of the command: the request, the context, and the deadline."""

    def __init__(self, req: MergeRequest, ctx: CommandContext) -> None:
        self.req = req
        self.ctx = ctx
        self.deadline = time.monotonic() + ctx.config.workspaces.merge_timeout
        self.pause = Phases("merge")

    async def step(self, fn: Callable[..., T], *args: Any, bounded: bool = True) -> T:
        work = self.ctx.git.run(fn, *args, key=self.req.target.worktree_path)
        if not bounded:
            return await work
        try:
            return await asyncio.wait_for(work, max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            raise _TimedOut from None

    async def phase(self, name: str) -> None:
        await self.ctx.progress({"phase": name})
        self.pause(name)

    async def run(self) -> Data:
        try:
            return await self._run()
        except _TimedOut:
            limit = self.ctx.config.workspaces.merge_timeout
            return {"status": FAILED_STATUS, "error": f"merge timed out after {limit:g}s"}

    async def _run(self) -> Data:
        await self.phase("preview")
        plan = await self.step(steps.inspect, self.req)
        if "outcome" in plan:
            return plan["outcome"]
        fields = plan["fields"]
        if plan["kind"] == "noop":
            return {**fields, **(await self.finish_noop(plan))}
        if fields["strategy"] == "pr":
            return {**fields, **(await self._pull_request(plan))}
        return {**fields, **(await self._land(plan))}

    async def finish_noop(self, plan: Data) -> Data:
        await self.phase("finishing")
        done = await self.step(steps.finish, self.req, plan, None, self.pause, bounded=False)
        status = "merged" if self.req.delete_branch else "active"
        return {"status": status, "noop": True, "merged": True, "pushed": False, "gatesRan": 0,
                **done}  # fmt: skip

    async def _pull_request(self, plan: Data) -> Data:
        await self.phase("pushing")
        opened = await self.step(steps.pull_request, self.req, plan)
        if "error" in opened:
            return {"status": FAILED_STATUS, "merged": False, "pushed": False, **opened}
        return {"status": "merge_planned", "merged": False, **opened}

    async def _land(self, plan: Data) -> Data:
        await self.phase("fetching")
        found = await self.step(steps.upstream, self.req, plan)
        if "outcome" in found:
            return found["outcome"]
        swapped: Data = {}
        candidate: Data = {}
        gates = GatesReport()
        regated = False
        for _ in range(1 + MAX_RETRIES):
            await self.phase("replaying")
            built = await self.step(steps.build, self.req, plan, found.get("seen", ""))
            if "outcome" in built:
                return built["outcome"]
            candidate = built["candidate"]
            gates = await self._gates(plan, candidate)
            if gates.failure is not None:
                error = f"land gate failed: {gates.failure.name}"
                return {"status": FAILED_STATUS, "error": error, **gates.fields()}
            await self.phase("swapping")
            swapped = await self.step(steps.swap, self.req, plan, candidate, bounded=False)
            if swapped["swapped"]:
                break
            if gates.ran:
                if regated:
                    return {"status": FAILED_STATUS, "error": GATES_RACED, **gates.fields()}
                regated = True
        else:
            return {"status": FAILED_STATUS, "error": f"base kept moving; gave up after "
                    f"{1 + MAX_RETRIES} attempts"}  # fmt: skip
        return {**gates.fields(), **(await self._landed(plan, found, candidate, swapped))}

    async def _gates(self, plan: Data, candidate: Data) -> GatesReport:
        """The land gates on the candidate's tip, declared by the commit it was built on."""
        work = run_land_gates(self.ctx.git, plan["gitDir"], candidate["onto"], candidate["tip"],
                              self.req.gate_level, self.ctx.config, self.ctx.progress)  # fmt: skip
        try:
            return await asyncio.wait_for(work, max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            raise _TimedOut from None

    async def _landed(self, plan: Data, found: Data, candidate: Data, swapped: Data) -> Data:
        await self.phase("syncing")
        sync = await self._sync_base(swapped, candidate["expected"], candidate["tip"])
        result: Data = {"pushed": False}
        if sync is not None:
            result["baseWorktreeSync"] = sync
        if "upstream" in found:
            await self.phase("pushing")
            pushed = await self.step(steps.push_base, self.req, plan, found, candidate,
                                     bounded=False)  # fmt: skip
            if "error" in pushed:
                return {**(await self._roll_back(plan, candidate, swapped, sync)), **pushed}
            result["pushed"] = True
        await self.phase("finishing")
        done = await self.step(steps.finish, self.req, plan, candidate["tip"], self.pause,
                               bounded=False)  # fmt: skip
        return {
            "status": "merged" if self.req.delete_branch else "active",
            "merged": True,
            "mergedSha": candidate["tip"],
            "baseSha": candidate["tip"],
            "previousBaseSha": candidate["expected"],
            "landedCommitShas": candidate["commits"],
            "rewritten": candidate["rewritten"],
            "subject": plan["subject"],
            **result,
            **done,
        }

    async def _sync_base(self, swapped: Data, old: str, new: str) -> Data | None:
        path = swapped.get("baseWorktree")
        if path is None:
            return None
        if swapped["unsyncedPaths"]:
            return {"reconciled": False, "unsyncedPaths": swapped["unsyncedPaths"]}
        return await self.step(steps.sync_worktree, path, old, new, bounded=False)

    async def _roll_back(
        self, plan: Data, candidate: Data, swapped: Data, sync: Data | None
    ) -> Data:
        """The push failed: the local base goes back to where it was, and its worktree too."""
        back = await self.step(steps.rollback, self.req, plan["gitDir"], candidate, bounded=False)
        if back and sync is not None and sync.get("reconciled"):
            old, new = candidate["tip"], candidate["expected"]
            await self.step(steps.sync_worktree, swapped["baseWorktree"], old, new, bounded=False)
        result: Data = {"status": FAILED_STATUS, "merged": False, "pushed": False}
        if not back:
            result["baseSha"] = candidate["tip"]
            result["rollbackFailed"] = True
        return result


class MergeHandler(BaseHandler):
    type = "workspace.merge"
    capability = "workspaceMerge"

    async def run(self, command: Command, ctx: CommandContext) -> Result:
        return await self._merge(command, ctx, recovering=False)

    async def recover(self, command: Command, entry: Entry, ctx: CommandContext) -> Result:
        """Find out from the repository whether the land happened; finish what is left of a
        land that did (push, base worktree, worktree and branch), report it as it is."""
        return await self._merge(command, ctx, recovering=True)

    async def _merge(self, command: Command, ctx: CommandContext, recovering: bool) -> Result:
        started = time.monotonic()
        params = command.params
        try:
            req = MergeRequest.parse(command.id, params, ctx.config)
        except p.ParamError as exc:
            return _final(params, {"status": FAILED_STATUS, "error": str(exc)}, started)
        merge = Merge(req, ctx)
        if not recovering:
            return _final(params, await merge.run(), started)
        found = await merge.step(steps.assess, req, bounded=False)
        if found["landed"]:
            return _final(params, await _complete(merge, found), started)
        return _final(params, await _unlanded(merge), started)


async def _complete(merge: Merge, found: Data) -> Data:
    """The rest of a land a crash interrupted after the base moved: push, base worktree, then
    the worktree and branch as for a merge with nothing left to land."""
    req = merge.req
    git_dir, base, previous, tip = found["gitDir"], found["base"], found["previous"], found["tip"]
    candidate = {"base_ref": "refs/heads/" + base, "expected": previous, "onto": previous,
                 "head": found["head"], "tip": tip}  # fmt: skip
    landed: Data = {"merged": True, "mergedSha": tip, "baseSha": tip,
                    "previousBaseSha": previous, "recovered": True, "pushed": False}  # fmt: skip
    shape = {"gitDir": git_dir, "base": base}
    up = await merge.step(steps.upstream, req, shape, bounded=False)
    pushed: Data = up.get("outcome", {})
    if "upstream" in up:
        pushed = await merge.step(steps.push_base, req, shape, up, candidate, bounded=False)
    if "error" in pushed:
        if await merge.step(steps.rollback, req, git_dir, candidate, bounded=False):
            await merge.step(steps.resync_base, git_dir, base, tip, previous, bounded=False)
        return {"status": FAILED_STATUS, "merged": False, "pushed": False,
                "error": pushed["error"]}  # fmt: skip
    landed["pushed"] = bool(pushed.get("pushed"))
    sync = await merge.step(steps.resync_base, git_dir, base, previous, tip, bounded=False)
    if sync is not None:
        landed["baseWorktreeSync"] = sync
    head = found["head"]
    if not req.delete_branch and await merge.step(steps.worktree_head, req, bounded=False) == tip:
        head = tip
    plan = await merge.step(steps.inspect, _expecting(req, head), bounded=False)
    if "outcome" in plan:
        return {**plan["outcome"], **landed}
    if plan["kind"] != "noop":
        return {**plan["fields"], "status": FAILED_STATUS, **landed,
                "error": "the recovered land left work unlanded"}  # fmt: skip
    done = await merge.step(steps.finish, req, plan, tip, merge.pause, bounded=False)
    status = "merged" if req.delete_branch else "active"
    return {**plan["fields"], "status": status, **landed, **done}


async def _unlanded(merge: Merge) -> Data:
    """Recovery of a merge that moved no base: one with nothing to land is finished (its
    removal completed); any other is reported interrupted, nothing redone."""
    plan = await merge.step(steps.inspect, merge.req, bounded=False)
    if plan.get("outcome", {}).get("status") == "merged":
        return plan["outcome"]
    if plan.get("kind") == "noop":
        return {**plan["fields"], **(await merge.finish_noop(plan))}
    return {"status": FAILED_STATUS, "error": INTERRUPTED}


def _expecting(req: MergeRequest, head: str) -> MergeRequest:
    """The request as recovery re-reads it: the head is the one the land recorded."""
    return dataclasses.replace(req, expected_head=head or None)


def _final(params: dict[str, Any], result: Data, started: float) -> Data:
    """Every result: `workspaceId`, a status, no empty values, `durationMs`."""
    body = {**echo_id(params), **{k: v for k, v in result.items() if v is not None}}
    body["durationMs"] = round((time.monotonic() - started) * 1000)
    return body
