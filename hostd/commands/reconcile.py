"""`workspace.reconcile`: the owning agent exited; remove the worktree when nothing in it is
unlanded, otherwise ask for review. Every result carries `gitState` (the state endpoint's body)."""

from __future__ import annotations

from typing import Any

import pygit2

from hostd.commands import params as p
from hostd.commands.cleanup import CleanupParams, cleanup_in_worker, finish_interrupted
from hostd.commands.registry import Command, CommandContext, Result
from hostd.commands.target import (
    Environment,
    WorkspaceHandler,
    WorkspaceParams,
    echo_id,
    failure,
    resolve_target,
    workspace_params,
)
from hostd.git.discover import Workspace
from hostd.git.errors import GitError, RefusedError
from hostd.git.safety import default_base_name
from hostd.git.state import workspace_state

REVIEW = "review_requested"


def _state(wt_path: str, target: WorkspaceParams) -> dict[str, Any]:
    repo = pygit2.Repository(wt_path)
    try:
        base_ref, base_sha = target.base_ref, target.base_sha
        if base_ref is None and base_sha is None:
            base_ref = default_base_name(repo)
        ws = Workspace(repo=repo, path=wt_path, root=wt_path)
        return workspace_state(ws, base_ref, base_sha)
    except GitError as exc:
        return {"error": str(exc)}
    finally:
        repo.free()


def _nothing_unlanded(state: dict[str, Any]) -> bool:
    if "error" in state or state.get("dirty") or "baseRef" not in state:
        return False
    return state.get("ahead", 0) == 0 or state.get("landed") is True


def reconcile_in_worker(
    target: WorkspaceParams, env: Environment, recovering: bool = False
) -> dict[str, Any]:
    """The whole reconcile, synchronously; the result without `workspaceId`."""
    try:
        wt, _ = finish_interrupted(resolve_target(target, env.base_dir), target, env)
    except RefusedError as exc:
        return {
            "status": REVIEW,
            "removed": False,
            "gitState": {"error": str(exc)},
            "error": str(exc),
        }
    if not wt.exists:
        state = {"error": f"worktree no longer exists: {wt.path}"}
        return {"status": "cleaned", "removed": False, "gitState": state}
    state = _state(wt.path, target)
    if not _nothing_unlanded(state):
        return {"status": REVIEW, "removed": False, "gitState": state}
    request = CleanupParams(target, delete_branch=True, reclaim=False, force=False, reason=None)
    cleaned = cleanup_in_worker(request, env, recovering)
    if cleaned.get("error"):
        return {"status": REVIEW, "gitState": state, **cleaned}
    status = "merged" if state.get("ahead", 0) > 0 else "cleaned"
    return {"status": status, "gitState": state, **cleaned}


class ReconcileHandler(WorkspaceHandler):
    type = "workspace.reconcile"
    capability = "workspaceReconcile"

    async def execute(self, command: Command, ctx: CommandContext, recovering: bool) -> Result:
        params = command.params
        try:
            target = workspace_params(params)
        except p.ParamError as exc:
            return failure(params, REVIEW, str(exc), removed=False, gitState={"error": str(exc)})
        env = Environment.of(ctx.config)
        result = await ctx.git.run(
            reconcile_in_worker, target, env, recovering, key=target.worktree_path
        )
        return {**echo_id(params), "worktreePath": target.worktree_path, **result}
