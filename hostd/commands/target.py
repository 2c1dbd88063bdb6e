"""The target of a workspace command: its params read strictly, and the worktree they name
resolved and contained (safety rules 1-3 of the workspace commands).

`workspace_params` runs anywhere (no I/O); `resolve_target` and everything taking a `Worktree`
run in a git worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hostd.commands import params as p
from hostd.config import Config
from hostd.git.errors import RefusedError
from hostd.git.worktrees import Worktree, locate

WORKSPACES_SUBDIR = os.path.join(".agent-relay", "workspaces")


@dataclass(frozen=True)
class WorkspaceParams:
    """What all three workspace commands name: the workspace and its base."""

    workspace_id: str | None
    worktree_path: str
    repo_root: str | None
    branch: str | None
    base_ref: str | None
    base_sha: str | None


def workspace_params(params: dict[str, Any]) -> WorkspaceParams:
    """Raises ParamError with a message naming the param."""
    worktree_path = p.path(params, "worktreePath", required=True)
    assert worktree_path is not None
    return WorkspaceParams(
        workspace_id=p.identifier(params, "workspaceId"),
        worktree_path=worktree_path,
        repo_root=p.path(params, "repoRoot"),
        branch=p.branch(params),
        base_ref=p.revision(params, "baseRef"),
        base_sha=p.revision(params, "baseSha"),
    )


def echo_id(params: dict[str, Any]) -> dict[str, Any]:
    """`{workspaceId}` when the params carry a usable one (also for results of bad params)."""
    value = params.get("workspaceId")
    if isinstance(value, str) and value and len(value) <= p.MAX_ID_CHARS and "\0" not in value:
        return {"workspaceId": value}
    return {}


def failure(params: dict[str, Any], status: str, error: str, **fields: Any) -> dict[str, Any]:
    return {**echo_id(params), "status": status, **fields, "error": error}


@dataclass(frozen=True)
class Environment:
    """What the git-worker side of a command needs from the config (plain, picklable)."""

    base_dir: str
    workspaces_root: str
    committer: str

    @classmethod
    def of(cls, config: Config) -> Environment:
        root = config.workspaces.root or os.path.join(config.base_dir, WORKSPACES_SUBDIR)
        return cls(config.base_dir, root, config.workspaces.committer)


def resolve_target(params: WorkspaceParams, base_dir: str) -> Worktree:
    """The contained linked worktree the params name (RefusedError otherwise)."""
    return locate(params.worktree_path, params.repo_root, base_dir)


__all__ = [
    "Environment",
    "RefusedError",
    "WorkspaceParams",
    "echo_id",
    "failure",
    "resolve_target",
    "workspace_params",
]
