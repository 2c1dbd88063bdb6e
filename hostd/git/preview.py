"""The body of `GET /api/workspace/merge-preview`: would `workspace.merge` land cleanly?"""

from __future__ import annotations

import shutil
from typing import Any

import pygit2

from hostd.git.discover import Workspace
from hostd.git.errors import GitError
from hostd.git.gatefile import read_declaration
from hostd.git.memo import remembered
from hostd.git.overlay import overlay_repository
from hostd.git.refs import local_branch, resolve_base
from hostd.git.replay import replay_conflicts, three_way_conflicts
from hostd.git.state import workspace_state

STRATEGIES = ("pr", "rebase-ff")
DIRTY = "worktree has uncommitted changes"
ALREADY_LANDED = "already merged into base (squash/cherry-pick)"
NOTHING_TO_MERGE = "no commits to merge"


def has_origin(repo: pygit2.Repository) -> bool:
    try:
        return "origin" in repo.remotes.names()
    except pygit2.GitError:
        return False


def resolve_strategy(
    repo: pygit2.Repository, base_ref: str | None, strategy: str | None, gh_available: bool
) -> str:
    """`pr` or `rebase-ff` as given; anything else is auto: pr iff origin, gh and a local base."""
    if strategy in STRATEGIES:
        return strategy
    if has_origin(repo) and gh_available and local_branch(repo, base_ref) is not None:
        return "pr"
    return "rebase-ff"


def merge_preview(
    ws: Workspace,
    base_ref: str | None,
    base_sha: str | None,
    strategy: str | None,
    gh_available: bool | None = None,
) -> dict[str, Any]:
    """Strategy, position against the base, and the conflict prediction: the body of
    `/api/workspace/merge-preview`.

    Writes no refs and no objects: the prediction runs on an in-memory overlay.
    """
    repo = ws.repo
    gh = shutil.which("gh") is not None if gh_available is None else gh_available
    body: dict[str, Any] = {
        "strategy": resolve_strategy(repo, base_ref, strategy, gh),
        "hasRemote": has_origin(repo),
        "ghAvailable": gh,
    }
    base = resolve_base(repo, base_ref, base_sha)
    if base is not None:
        body["baseRef"] = base.local_branch or base.name
    try:
        state = workspace_state(ws, base_ref, base_sha)
    except GitError as exc:
        body["error"] = str(exc)
        return body
    if base is None:
        body["error"] = "base ref unavailable"
        return body
    if "lastCommit" not in state:
        body["error"] = "unborn HEAD"
        return body
    body["ahead"] = state["ahead"]
    body["behind"] = state["behind"]
    if "unmergedAhead" in state:
        body["unmergedAhead"] = state["unmergedAhead"]
    for key in ("landed", "landedSha"):
        if key in state:
            body[key] = state[key]
    body["headSha"] = state["lastCommit"]["sha"]
    body["gates"] = _gates(repo, body["strategy"], base.commit.id)
    body["dirtyCount"] = state["dirtyCount"]
    if body["dirtyCount"] > 0:
        body["reason"] = DIRTY
    elif body.get("landed") or state.get("unmergedAhead", 0) == 0:
        body["noop"] = True
        body["reason"] = ALREADY_LANDED if body.get("landed") else NOTHING_TO_MERGE
        body["gates"] = []
    else:
        files = _conflicts(repo, body["strategy"], body["headSha"], base.commit.id)
        if files is not None:
            body["conflict"] = bool(files)
        # Unrelated histories: the conflict is unknown, but the base is never an ancestor.
        body["cleanFastForward"] = files == [] and body["behind"] == 0
        if files:
            body["conflictFiles"] = files
    return body


def _gates(repo: pygit2.Repository, strategy: str, base_id: pygit2.Oid) -> list[str]:
    """The land gates a land would run (the base commit's); `pr` runs none."""
    if strategy == "pr":
        return []
    names = remembered(
        "gates", (base_id,), lambda: tuple(read_declaration(repo, str(base_id)).names)
    )
    return list(names)


def _conflicts(
    repo: pygit2.Repository, strategy: str, head_sha: str, base_id: pygit2.Oid
) -> list[str] | None:
    """The conflicting paths landing would meet ([] when clean), None for unrelated histories."""
    files = remembered(
        "conflicts",
        (strategy, head_sha, base_id),
        lambda: _predicted_conflicts(repo, strategy, head_sha, base_id),
    )
    return None if files is None else list(files)


def _predicted_conflicts(
    repo: pygit2.Repository, strategy: str, head_sha: str, base_id: pygit2.Oid
) -> tuple[str, ...] | None:
    with overlay_repository(repo) as overlay:
        head = overlay[head_sha].peel(pygit2.Commit)
        base = overlay[base_id].peel(pygit2.Commit)
        if overlay.merge_base(head.id, base.id) is None:
            return None
        if strategy == "pr":
            return tuple(three_way_conflicts(overlay, base, head))
        return tuple(replay_conflicts(overlay, head, base))
