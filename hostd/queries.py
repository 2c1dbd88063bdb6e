"""The read queries behind the host API and the CLI: path in, JSON-ready body out.

Each function is synchronous (the API runs them in worker processes) and reports repository
problems as `{"error": ...}` in the body, as the host API does. Repositories stay open between
queries of the same process; in a process that keeps status counts, answers are kept too and
given again while nothing they depend on changed (`hostd.answers`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import pygit2

from hostd.answers import Answers, Ticket
from hostd.git import memo
from hostd.git.diff import MAX_FILE, workspace_diff
from hostd.git.discover import (
    Workspace,
    common_dir,
    linked_gitdir_files,
    open_workspace,
    probe,
    probe_repository,
)
from hostd.git.errors import GitError
from hostd.git.paths import Identity, identity, real_path
from hostd.git.preview import merge_preview
from hostd.git.refs import local_branch, resolve_commit
from hostd.git.repocache import RepositoryCache
from hostd.git.state import workspace_state
from hostd.git.status import answer_token, dirty_count, guest, shares_events
from hostd.git.statuswatch import Token, last_generation, unwatched_stamps

Body = dict[str, Any]

_repositories = RepositoryCache()
answers = Answers()
# Per common git directory: the worktree-list generation and its worktrees' `.git` files.
_gitdir_files: dict[str, tuple[int, list[str]]] = {}
# Per common git directory: the worktree list of the last probe. An equal new list is replaced
# by it, so the kept probe answers of a repository's worktrees hold one list, not one each.
_worktree_lists: dict[str, list[Any]] = {}
MAX_WORKTREE_LISTS = 256
# The ticket of the answer being made, for `as_json` to hand to the daemon.
_ticket: Ticket | None = None


def _query(
    path: str,
    base_dir: str,
    query: Callable[[Workspace], Body],
    on_error: Callable[[], Body],
    kind: tuple[Any, ...] = (),
    unopened: Callable[[], Body] | None = None,
) -> Body:
    """Run `query` on the workspace at `path`; a GitError becomes `on_error()` + `error`, or
    `unopened()` when there is no workspace at `path`. With a `kind` (the endpoint and its
    parameters), the answer is kept and given again while the worktree's token stays the
    same (by the worktree's own worker: not in a guest task)."""
    global _ticket
    folder = identity(path)
    try:
        ws = open_workspace(path, base_dir, _repositories.open)
    except GitError as exc:
        return unopened() if unopened else {**on_error(), "error": str(exc)}
    lists_worktrees = kind[:1] == ("probe",)
    token = answer_token(ws.repo, lists_worktrees) if kind else None
    if token is None:
        return _run(query, ws, on_error)
    generation = last_generation()
    stamps = unwatched_stamps(ws.repo, token)
    identities: tuple[tuple[str, Identity], ...] = ((path, folder),)
    condition: tuple[Any, ...] = (token,)
    if lists_worktrees:
        files = _worktree_gitdir_files(ws.repo, token)
        condition += tuple(identity(file) for file in files)
        identities += tuple(zip(files, condition[1:], strict=True))
    query_key = (*kind, path, base_dir)
    body = answers.get(query_key, condition)
    if body is None:
        with memo.scope((ws.repo.path, token.rules, token.key)):
            try:
                body = query(ws)
            except GitError as exc:
                return {**on_error(), "error": str(exc)}
        if not guest():
            answers.put(query_key, condition, body)
    if (
        stamps is not None
        and shares_events()
        and last_generation() == generation
        and real_path(path) == ws.root
    ):
        _ticket = Ticket(generation, stamps, identities)
    return body


def _run(query: Callable[[Workspace], Body], ws: Workspace, on_error: Callable[[], Body]) -> Body:
    try:
        return query(ws)
    except GitError as exc:
        return {**on_error(), "error": str(exc)}


def _worktree_gitdir_files(repo: pygit2.Repository, token: Token) -> list[str]:
    """The `.git` file of each linked worktree: one deleted or replaced without git knowing
    changes how `git worktree list` shows the worktree, and raises no event that the status
    watch sees, so the answers that list worktrees depend on which file each one is."""
    common = common_dir(repo)
    known = _gitdir_files.get(common)
    if known is None or known[0] != token.worktrees:
        known = _gitdir_files[common] = (token.worktrees, linked_gitdir_files(common))
    return known[1]


def probe_body(path: str, base_dir: str) -> Body:
    def unopened() -> Body:
        return probe(path, base_dir, _repositories.open)

    def probed(ws: Workspace) -> Body:
        body = probe_repository(path, ws.repo, base_dir)
        body["worktrees"] = _shared_list(common_dir(ws.repo), body["worktrees"])
        return body

    return _query(
        path,
        base_dir,
        probed,
        unopened,
        ("probe",),
        unopened,
    )


def as_json(query: Callable[..., Body], *args: Any) -> tuple[bytes, Ticket | None]:
    """`query(*args)` as JSON text, as the API sends it (the worker encodes, the event loop
    only forwards the bytes), with the ticket under which the daemon may give it again. The
    text of an answer with a ticket is not kept here too: the daemon keeps it."""
    global _ticket
    _ticket = None
    body = query(*args)
    ticket, _ticket = _ticket, None
    text = json.dumps(body).encode() if ticket is not None else answers.encoded(body)
    return text, ticket


def _shared_list(common: str, worktrees: list[Any]) -> list[Any]:
    last = _worktree_lists.get(common)
    if last == worktrees:
        return last
    if len(_worktree_lists) >= MAX_WORKTREE_LISTS:
        _worktree_lists.clear()
    _worktree_lists[common] = worktrees
    return worktrees


def state_body(path: str, base_dir: str, base_ref: str | None, base_sha: str | None) -> Body:
    return _query(
        path,
        base_dir,
        lambda ws: workspace_state(ws, base_ref, base_sha),
        dict,
        ("state", base_ref, base_sha),
    )


def diff_body(
    path: str,
    base_dir: str,
    base_ref: str | None,
    base_sha: str | None,
    patch: bool = True,
    max_file: int = MAX_FILE,
) -> Body:
    def diff(ws: Workspace) -> Body:
        body = workspace_diff(ws, base_ref, base_sha, include_patch=patch, max_file=max_file)
        if "dirtyCount" not in body:
            body["dirtyCount"] = _dirty_count(ws)
        return body

    return _query(
        path, base_dir, diff, lambda: {"files": []}, ("diff", base_ref, base_sha, patch, max_file)
    )


def _dirty_count(ws: Workspace) -> int:
    try:
        return dirty_count(ws.repo)
    except (pygit2.GitError, OSError) as exc:
        raise GitError(str(exc) or type(exc).__name__) from exc


def preview_body(
    path: str,
    base_dir: str,
    base_ref: str | None,
    base_sha: str | None,
    strategy: str | None,
    gh: bool | None = None,
) -> Body:
    """`gh`: whether the `gh` CLI is installed (looked up when None)."""
    if gh is None:
        gh = gh_available()

    def unavailable() -> Body:
        body: Body = {
            "strategy": strategy if strategy in ("pr", "rebase-ff") else "rebase-ff",
            "hasRemote": False,
            "ghAvailable": gh,
        }
        if base_ref or base_sha:
            body["baseRef"] = base_ref or base_sha
        return body

    return _query(
        path,
        base_dir,
        lambda ws: merge_preview(ws, base_ref, base_sha, strategy, gh),
        unavailable,
        ("merge-preview", base_ref, base_sha, strategy, gh),
    )


def gh_available() -> bool:
    return shutil.which("gh") is not None


def repository_folder(path: str) -> str:
    """The folder holding the repository around `path` (its working tree and its git
    directories), or `path` itself outside any repository: the CLI's base_dir by default."""
    try:
        git_dir = pygit2.discover_repository(path)
        repo = pygit2.Repository(git_dir) if git_dir else None
    except (pygit2.GitError, ValueError, OSError):
        repo = None
    if repo is None or not repo.workdir:
        return path
    folders = [os.path.realpath(p) for p in (repo.workdir, repo.path, common_dir(repo))]
    return os.path.commonpath(folders)


def default_base(path: str, base_dir: str) -> str | None:
    """The repository's default branch: what origin/HEAD names, else `main`, else `master`."""
    try:
        repo = open_workspace(path, base_dir, _repositories.open).repo
        remote_head = repo.references.get("refs/remotes/origin/HEAD")
    except (GitError, pygit2.GitError, ValueError):
        return None
    candidates = ["main", "master"]
    if remote_head is not None and remote_head.type == pygit2.enums.ReferenceType.SYMBOLIC:
        remote_branch = remote_head.target.removeprefix("refs/remotes/")
        candidates[:0] = [remote_branch.removeprefix("origin/"), remote_branch]
    for name in candidates:
        if local_branch(repo, name) is not None or resolve_commit(repo, name) is not None:
            return name
    return None
