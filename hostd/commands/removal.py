"""Steps shared by the workspace commands once a worktree may go: remove it (crash-consistent),
delete its branch when rules 4 and 5 allow, remove its empty container folder. Runs in a git
worker."""

from __future__ import annotations

import os
from typing import Any

import pygit2

from hostd.git.errors import RefusedError
from hostd.git.safety import branch_verdict, delete_branch, resolve_landing_base
from hostd.git.worktrees import (
    Pause,
    Worktree,
    is_registered,
    no_pause,
    remove_empty_parent,
    remove_worktree,
)


def release_branch(
    common: str,
    branch: str | None,
    base_ref: str | None,
    base_sha: str | None,
    delete: bool = True,
) -> dict[str, Any]:
    """`{branchDeleted, branchPreservedReason?}`: the branch is deleted (compare-and-swap on the
    tip that was proven contained) when it is `agent/…`, not checked out anywhere, and its
    content is on the base (the default branch when no base is given)."""
    repo = pygit2.Repository(common)
    try:
        base = resolve_landing_base(repo, base_ref, base_sha)
        verdict = branch_verdict(repo, common, branch, base, delete)
        if verdict.deletable and branch is not None and verdict.tip is not None:
            if delete_branch(repo, branch, verdict.tip):
                return {"branchDeleted": True}
            return {"branchDeleted": False, "branchPreservedReason": "branch moved"}
        return {"branchDeleted": False, "branchPreservedReason": verdict.reason}
    finally:
        repo.free()


def remove_and_release(
    wt: Worktree,
    workspaces_root: str,
    branch: str | None,
    base_ref: str | None,
    base_sha: str | None,
    delete: bool = True,
    keep_reason: str | None = None,
    pause: Pause = no_pause,
) -> dict[str, Any]:
    """Remove the worktree, then release its branch (kept with `keep_reason` when given).

    The caller has proven that nothing in the worktree is lost. Returns `{removed: true,
    branchDeleted, branchPreservedReason?, containerRemoved}`; RefusedError when the folder is
    still there or still registered afterwards. Pause points: those of `remove_worktree`, then
    `branch` after the branch is handled.
    """
    if wt.common_dir is None:
        raise RefusedError(f"no repository found for {wt.path}")
    remove_worktree(wt, pause)
    if os.path.lexists(wt.path) or is_registered(wt.common_dir, wt.path):
        raise RefusedError(f"{wt.path} is still present or registered after its removal")
    result: dict[str, Any] = {"removed": True}
    if keep_reason is not None:
        result.update(branchDeleted=False, branchPreservedReason=keep_reason)
    else:
        result.update(release_branch(wt.common_dir, branch, base_ref, base_sha, delete))
    pause("branch")
    result["containerRemoved"] = remove_empty_parent(wt.path, workspaces_root)
    return result
