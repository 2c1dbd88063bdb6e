"""`workspace.cleanup`: remove a worktree (and its agent branch) once nothing in it is lost.

The git work runs in one call of a git worker (`cleanup_in_worker`); `recover` finishes an
interrupted removal and then runs the cleanup again, which reports what is true by then.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pygit2

from hostd.commands import params as p
from hostd.commands.pause import Phases
from hostd.commands.registry import BaseHandler, Command, CommandContext, Result
from hostd.commands.removal import remove_and_release
from hostd.commands.target import (
    Environment,
    WorkspaceParams,
    echo_id,
    failure,
    resolve_target,
    workspace_params,
)
from hostd.git.errors import RefusedError
from hostd.git.safety import (
    AGENT_PREFIX,
    contained_in_base,
    resolve_landing_base,
    unlanded_count,
)
from hostd.git.snapshot import save_snapshot, snapshot_ref_name
from hostd.git.worktrees import (
    Pause,
    Worktree,
    finish_removals,
    remove_empty_parent,
    uncommitted_changes,
)

if TYPE_CHECKING:
    from hostd.relay.journal import Entry

TIMEOUT_S = 120.0
MAX_REASON_CHARS = 2000
FORCED_KEEP = "kept by a forced cleanup"
FAILED_STATUS = "cleanup_requested"
"""A refused cleanup leaves the workspace as the cleanup request left it."""


@dataclass(frozen=True)
class CleanupParams:
    target: WorkspaceParams
    delete_branch: bool
    reclaim: bool
    force: bool
    reason: str | None


def cleanup_params(params: dict[str, Any]) -> CleanupParams:
    return CleanupParams(
        target=workspace_params(params),
        delete_branch=p.flag(params, "deleteBranch", True),
        reclaim=p.flag(params, "reclaim", False),
        force=p.flag(params, "force", False),
        reason=(p.text(params, "reason", MAX_REASON_CHARS) or "").strip() or None,
    )


def _refuse(path: str, what: str) -> RefusedError:
    return RefusedError(f"refusing to remove {path}: {what}")


def _unsafe(repo: pygit2.Repository, wt: Worktree, req: CleanupParams) -> str | None:
    """Why removing the worktree would lose work (rule 5), or None."""
    changes = uncommitted_changes(repo)
    if changes:
        return f"{changes} uncommitted change(s)"
    if wt.head is None:
        return None
    base = resolve_landing_base(repo, req.target.base_ref, req.target.base_sha)
    if base is None:
        return "base ref unavailable"
    head = repo[wt.head].peel(pygit2.Commit)
    if contained_in_base(repo, head, base) is True:
        return None
    return f"{unlanded_count(repo, head, base)} unlanded commit(s)"


def _snapshot(repo: pygit2.Repository, wt: Worktree, req: CleanupParams, env: Environment) -> str:
    label = req.target.workspace_id or os.path.basename(wt.path)
    name = snapshot_ref_name(label, int(time.time() * 1000))
    save_snapshot(repo, name, f"hostd snapshot of {wt.path}: {req.reason}", env.committer)
    return name


def clean_worktree(
    wt: Worktree, req: CleanupParams, env: Environment, pause: Pause, already_done: bool = False
) -> dict[str, Any]:
    """Steps 2-6 of the cleanup on a located worktree; RefusedError when it must not go."""
    assert wt.common_dir is not None
    result: dict[str, Any] = {}
    kept_reason = None
    if wt.exists:
        repo = pygit2.Repository(wt.path)
        unsafe = _unsafe(repo, wt, req)
        if unsafe is not None:
            if not req.force:
                raise _refuse(wt.path, unsafe)
            if req.reason is None:
                raise _refuse(wt.path, f"{unsafe}; force needs a non-empty reason")
            result["snapshotRef"] = _snapshot(repo, wt, req, env)
            kept_reason = FORCED_KEEP
            pause("snapshotted")
        repo.free()
    else:
        result["alreadyGone"] = not already_done or None
    pause("checked")
    target = req.target
    result.update(
        remove_and_release(
            wt,
            env.workspaces_root,
            wt.branch or target.branch,
            target.base_ref,
            target.base_sha,
            req.delete_branch,
            kept_reason,
            pause,
        )
    )
    return {k: v for k, v in result.items() if v is not None}


def cleanup_in_worker(
    req: CleanupParams, env: Environment, recovering: bool = False
) -> dict[str, Any]:
    """The whole cleanup, synchronously; the result without `workspaceId` and `status`."""
    pause = Phases("cleanup")
    try:
        wt = resolve_target(req.target, env.base_dir)
        finished: list[str] = []
        if wt.common_dir is not None:
            finished = finish_removals(wt.common_dir, env.base_dir)
            if finished:
                wt = resolve_target(req.target, env.base_dir)
        branch = wt.branch or req.target.branch
        orphan = req.reclaim and req.target.workspace_id is None
        if orphan and (branch is None or not branch.startswith(AGENT_PREFIX)):
            raise RefusedError(f"refusing to reclaim {wt.path}: not an agent branch: {branch}")
        if wt.locked is not None:
            reason = f" ({wt.locked.strip()})" if wt.locked.strip() else ""
            raise _refuse(wt.path, f"the worktree is locked{reason}")
        if wt.common_dir is None:
            return {
                "removed": True,
                "alreadyGone": True,
                "branchDeleted": False,
                "branchPreservedReason": "repository not found",
                "containerRemoved": remove_empty_parent(wt.path, env.workspaces_root),
            }
        done = recovering and wt.path in finished
        return clean_worktree(wt, req, env, pause, already_done=done)
    except RefusedError as exc:
        return {"removed": False, "error": str(exc)}
    except (pygit2.GitError, OSError, ValueError, KeyError) as exc:
        return {"removed": False, "error": f"cleanup failed: {exc}"}


class CleanupHandler(BaseHandler):
    type = "workspace.cleanup"
    capability = "workspaceCleanup"

    async def run(self, command: Command, ctx: CommandContext) -> Result:
        return await self._cleanup(command, ctx, recovering=False)

    async def recover(self, command: Command, entry: Entry, ctx: CommandContext) -> Result:
        return await self._cleanup(command, ctx, recovering=True)

    async def _cleanup(self, command: Command, ctx: CommandContext, recovering: bool) -> Result:
        params = command.params
        try:
            req = cleanup_params(params)
        except p.ParamError as exc:
            return failure(params, FAILED_STATUS, str(exc), removed=False)
        env = Environment.of(ctx.config)
        result = await ctx.git.run(
            cleanup_in_worker, req, env, recovering, key=req.target.worktree_path
        )
        status = FAILED_STATUS if result.get("error") else "cleaned"
        return {
            **echo_id(params),
            "status": status,
            "worktreePath": req.target.worktree_path,
            **result,
        }
