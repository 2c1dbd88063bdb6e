"""The read queries behind the host API and the CLI: path in, JSON-ready body out.

Each function is synchronous (run it in a thread pool from async code) and reports
repository problems as `{"error": ...}` in the body, as the host API does.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from hostd.git.diff import workspace_diff
from hostd.git.discover import Workspace, open_workspace, probe
from hostd.git.errors import GitError
from hostd.git.preview import merge_preview
from hostd.git.state import workspace_state

Body = dict[str, Any]


def _with_workspace(path: str, base_dir: str, query: Callable[[Workspace], Body]) -> Body:
    try:
        return query(open_workspace(path, base_dir))
    except GitError as exc:
        return {"error": str(exc)}


def probe_body(path: str, base_dir: str) -> Body:
    return probe(path, base_dir)


def state_body(path: str, base_dir: str, base_ref: str | None, base_sha: str | None) -> Body:
    return _with_workspace(path, base_dir, lambda ws: workspace_state(ws, base_ref, base_sha))


def diff_body(
    path: str, base_dir: str, base_ref: str | None, base_sha: str | None, patch: bool = True
) -> Body:
    def query(ws: Workspace) -> Body:
        return workspace_diff(ws, base_ref, base_sha, include_patch=patch)

    try:
        return query(open_workspace(path, base_dir))
    except GitError as exc:
        return {"files": [], "error": str(exc)}


def preview_body(
    path: str, base_dir: str, base_ref: str | None, base_sha: str | None, strategy: str | None
) -> Body:
    try:
        return merge_preview(open_workspace(path, base_dir), base_ref, base_sha, strategy)
    except GitError as exc:
        body: Body = {
            "strategy": strategy if strategy in ("pr", "rebase-ff") else "rebase-ff",
            "hasRemote": False,
            "ghAvailable": shutil.which("gh") is not None,
        }
        if base_ref or base_sha:
            body["baseRef"] = base_ref or base_sha
        body["error"] = str(exc)
        return body
