"""The body of `GET /api/workspace/diff`: what is compared, and the repository's diff settings.

With a base: merge-base(base, HEAD) → HEAD; without one: HEAD → index → worktree, as
`git diff HEAD`. libgit2 computes the deltas and hunks; `changes` lists them, `renames` pairs
renames the way git does, and `patchtext` prints the numstat records and the capped patch.
"""

from __future__ import annotations

from typing import Any

import pygit2
from pygit2.enums import DiffOption

from hostd.git.blobs import big_file_limit
from hostd.git.changes import list_changes
from hostd.git.discover import Workspace
from hostd.git.errors import GitError
from hostd.git.patchtext import CONTEXT_LINES, PATCH_CAP, print_changes
from hostd.git.refs import resolve_base
from hostd.git.renames import pair_renames, rename_limit
from hostd.git.status import dirty_count

_FLAGS = DiffOption.INCLUDE_TYPECHANGE
MAX_FILE = 32 * 2**20


def workspace_diff(
    ws: Workspace,
    base_ref: str | None,
    base_sha: str | None,
    include_patch: bool = True,
    patch_cap: int = PATCH_CAP,
    max_file: int = MAX_FILE,
) -> dict[str, Any]:
    """Committed work merge-base(base, HEAD) → HEAD, or without a base `git diff HEAD`.
    Files above `max_file` bytes (or core.bigFileThreshold) count as binary."""
    try:
        return _workspace_diff(ws.repo, base_ref, base_sha, include_patch, patch_cap, max_file)
    except (pygit2.GitError, KeyError, OSError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise GitError(str(detail) or type(exc).__name__) from exc


def _workspace_diff(
    repo: pygit2.Repository,
    base_ref: str | None,
    base_sha: str | None,
    include_patch: bool,
    patch_cap: int,
    max_file: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {"files": []}
    base = resolve_base(repo, base_ref, base_sha)
    if base is not None:
        body["baseRef"] = base.name
    if repo.head_is_unborn:
        body["error"] = "unborn HEAD"
        return body
    head = repo.head.peel(pygit2.Commit)
    if base is None:
        diff = _uncommitted_diff(repo, head.tree)
    else:
        merge_base = _merge_base(repo, base.commit.id, head.id)
        if merge_base is None:
            body["error"] = "no merge base"
            return body
        body["ahead"] = repo.ahead_behind(head.id, base.commit.id)[0]
        body["dirtyCount"] = dirty_count(repo)
        old_tree = repo[merge_base].peel(pygit2.Tree)
        diff = repo.diff(old_tree, head.tree, flags=_FLAGS, context_lines=CONTEXT_LINES)
    worktree = base is None
    quote_fully = _config(repo, "core.quotePath", bool) is not False
    changes = list_changes(repo, diff, head.tree if worktree else None)
    max_file = big_file_limit(repo, max_file)
    renames = rename_limit(_config(repo, "diff.renameLimit", int))
    changes = pair_renames(changes, renames, max_file)
    cap = patch_cap if include_patch else None
    body.update(
        print_changes(
            repo,
            diff,
            changes,
            worktree=worktree,
            quote_fully=quote_fully,
            patch_cap=cap,
            max_file=max_file,
        )
    )
    return body


def _merge_base(repo: pygit2.Repository, a: pygit2.Oid, b: pygit2.Oid) -> pygit2.Oid | None:
    try:
        return repo.merge_base(a, b)
    except pygit2.GitError:
        return None


def _uncommitted_diff(repo: pygit2.Repository, head_tree: pygit2.Tree) -> pygit2.Diff:
    """HEAD → index merged with index → worktree: what `git diff HEAD` compares."""
    index = repo.index
    staged = index.diff_to_tree(head_tree, flags=_FLAGS, context_lines=CONTEXT_LINES)
    staged.merge(index.diff_to_workdir(flags=_FLAGS, context_lines=CONTEXT_LINES))
    return staged


def _config(repo: pygit2.Repository, key: str, kind: type[bool] | type[int]) -> Any:
    """A boolean or integer setting; None when unset or unreadable."""
    try:
        return repo.config.get_bool(key) if kind is bool else repo.config.get_int(key)
    except (KeyError, ValueError, pygit2.GitError):
        return None
