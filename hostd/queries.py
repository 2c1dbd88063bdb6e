"""The read queries behind the host API and the CLI: path in, JSON-ready body out.

Each function is synchronous (the API runs them in worker processes) and reports repository
problems as `{"error": ...}` in the body, as the host API does. Repositories stay open between
queries of the same process.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from hostd.git.diff import MAX_FILE, workspace_diff
from hostd.git.discover import Workspace, open_workspace, probe
from hostd.git.errors import GitError
from hostd.git.preview import merge_preview
from hostd.git.repocache import RepositoryCache
from hostd.git.state import workspace_state

Body = dict[str, Any]

_repositories = RepositoryCache()


def _query(
    path: str, base_dir: str, query: Callable[[Workspace], Body], on_error: Callable[[], Body]
) -> Body:
    """Run `query` on the workspace at `path`; a GitError becomes `on_error()` + `error`."""
    try:
        return query(open_workspace(path, base_dir, _repositories.open))
    except GitError as exc:
        return {**on_error(), "error": str(exc)}


def probe_body(path: str, base_dir: str) -> Body:
    return probe(path, base_dir, _repositories.open)


def state_body(path: str, base_dir: str, base_ref: str | None, base_sha: str | None) -> Body:
    return _query(path, base_dir, lambda ws: workspace_state(ws, base_ref, base_sha), dict)


def diff_body(
    path: str,
    base_dir: str,
    base_ref: str | None,
    base_sha: str | None,
    patch: bool = True,
    max_file: int = MAX_FILE,
) -> Body:
    return _query(
        path,
        base_dir,
        lambda ws: workspace_diff(ws, base_ref, base_sha, include_patch=patch, max_file=max_file),
        lambda: {"files": []},
    )


def preview_body(
    path: str, base_dir: str, base_ref: str | None, base_sha: str | None, strategy: str | None
) -> Body:
    def unavailable() -> Body:
        body: Body = {
            "strategy": strategy if strategy in ("pr", "rebase-ff") else "rebase-ff",
            "hasRemote": False,
            "ghAvailable": shutil.which("gh") is not None,
        }
        if base_ref or base_sha:
            body["baseRef"] = base_ref or base_sha
        return body

    return _query(
        path, base_dir, lambda ws: merge_preview(ws, base_ref, base_sha, strategy), unavailable
    )
