"""Repository discovery bounded by base_dir, and worktree listing as `git worktree list` does it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pygit2

from hostd.git.errors import GitError
from hostd.git.paths import real_path, within
from hostd.git.refs import reference
from hostd.git.status import dirty_count

ZERO_SHA = "0" * 40


@dataclass
class Workspace:
    """An opened non-bare repository and the working tree that contains the requested path."""

    repo: pygit2.Repository
    path: str
    root: str


RepositoryOpener = Callable[[str], pygit2.Repository]


def find_repository(
    path: str, base_dir: str, open_repo: RepositoryOpener = pygit2.Repository
) -> pygit2.Repository | None:
    """The repository whose working tree holds `path`, found without climbing above base_dir.

    Bare repositories and paths inside a git directory yield None, as `git rev-parse
    --show-toplevel` fails there. So does a repository whose git directory or common git
    directory lies outside base_dir (a `.git` file or linked worktree pointing out of it).
    """
    real_base = real_path(base_dir)
    resolved = real_path(path)
    ceiling = os.path.dirname(real_base) if real_base != os.sep else ""
    try:
        git_dir = pygit2.discover_repository(resolved, False, ceiling)
    except (pygit2.GitError, ValueError, OSError):
        return None
    if not git_dir:
        return None
    try:
        repo = open_repo(git_dir)
    except (pygit2.GitError, ValueError, OSError):
        return None
    if repo.is_bare or not repo.workdir:
        return None
    workdir = real_path(repo.workdir)
    if not within(workdir, real_base) or not within(resolved, workdir):
        return None
    for git_path in {real_path(repo.path), real_path(_common_dir(repo))}:
        if within(resolved, git_path) or not within(git_path, real_base):
            return None
    return repo


def open_workspace(
    path: str, base_dir: str, open_repo: RepositoryOpener = pygit2.Repository
) -> Workspace:
    if not os.path.isdir(path):
        raise GitError(f"not a directory: {path}")
    repo = find_repository(path, base_dir, open_repo)
    if repo is None:
        raise GitError(f"not a git repository: {path}")
    return Workspace(repo=repo, path=path, root=real_path(repo.workdir).rstrip(os.sep))


def _common_dir(repo: pygit2.Repository) -> str:
    common = os.path.join(repo.path, "commondir")
    try:
        with open(common) as fh:
            rel = fh.read().strip()
    except OSError:
        return repo.path
    return os.path.normpath(os.path.join(repo.path, rel))


def common_dir(repo: pygit2.Repository) -> str:
    """The repository's shared git directory (the main `.git`, also for a linked worktree)."""
    return real_path(_common_dir(repo))


def head_info(repo: pygit2.Repository) -> dict[str, Any]:
    """`{branch?, headSha?, detached}` for the repository's own HEAD."""
    info: dict[str, Any] = {"detached": bool(repo.head_is_detached)}
    if not repo.head_is_detached:
        try:
            target = repo.references["HEAD"].target
        except (KeyError, pygit2.GitError):
            target = None
        if isinstance(target, str) and target.startswith("refs/heads/"):
            info["branch"] = target[len("refs/heads/") :]
    if not repo.head_is_unborn:
        with contextlib.suppress(pygit2.GitError):
            info["headSha"] = str(repo.head.target)
    return info


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None


def resolve_head_file(repo: pygit2.Repository, head_text: str | None) -> dict[str, Any]:
    """Interpret a worktree's HEAD file like `git worktree list --porcelain` does."""
    entry: dict[str, Any] = {}
    text = (head_text or "").strip()
    if text.startswith("ref:"):
        ref = text[4:].strip()
        if ref.startswith("refs/heads/"):
            entry["branch"] = ref[len("refs/heads/") :]
        try:
            found = reference(repo, ref)
            entry["headSha"] = ZERO_SHA if found is None else str(found.resolve().target)
        except (KeyError, pygit2.GitError):
            entry["headSha"] = ZERO_SHA
    elif len(text) == 40:
        entry["headSha"] = text
        entry["detached"] = True
    return entry


def _prune_reason(admin_dir: str) -> str | None:
    """Why `git worktree prune` would remove this worktree, as git words it."""
    if not os.path.isdir(admin_dir):
        return "not a valid directory"
    gitdir_file = os.path.join(admin_dir, "gitdir")
    if not os.path.exists(gitdir_file):
        return "gitdir file does not exist"
    content = _read(gitdir_file)
    if content is None:
        return "unable to read gitdir file"
    target = content.strip()
    if not target:
        return "invalid gitdir file"
    if not os.path.exists(target):
        return "gitdir file points to non-existent location"
    return None


def linked_gitdir_files(common: str) -> list[str]:
    """The `.git` file of each linked worktree, as its administrative folder records it."""
    admin_root = os.path.join(common, "worktrees")
    try:
        names = sorted(os.listdir(admin_root))
    except OSError:
        return []
    files = []
    for name in names:
        target = (_read(os.path.join(admin_root, name, "gitdir")) or "").strip()
        files.append(target or os.path.join(admin_root, name))
    return files


def list_worktrees(repo: pygit2.Repository, base_dir: str | None = None) -> list[dict[str, Any]]:
    """Every worktree of the repository: main first, then linked ones sorted by path.

    With `base_dir`, linked worktrees whose real path lies outside it are left out.
    """
    real_base = None if base_dir is None else real_path(base_dir)
    common = common_dir(repo)
    main: dict[str, Any]
    main_repo_bare = os.path.basename(common) != ".git" and _is_bare(common)
    if main_repo_bare:
        main = {"path": common, "bare": True}
    else:
        main = {"path": os.path.dirname(common)}
        main.update(resolve_head_file(repo, _read(os.path.join(common, "HEAD"))))
    linked: list[dict[str, Any]] = []
    admin_root = os.path.join(common, "worktrees")
    try:
        names = os.listdir(admin_root)
    except OSError:
        names = []
    for name in names:
        admin = os.path.join(admin_root, name)
        gitdir = (_read(os.path.join(admin, "gitdir")) or "").strip()
        if not os.path.isdir(admin):
            continue
        path = os.path.dirname(gitdir) if gitdir else admin
        if real_base is not None and not within(real_path(path), real_base):
            continue
        entry: dict[str, Any] = {"path": path}
        entry.update(resolve_head_file(repo, _read(os.path.join(admin, "HEAD"))))
        lock = _read(os.path.join(admin, "locked"))
        prune = None if lock is not None else _prune_reason(admin)
        if lock is not None:
            entry["locked"] = True
            if lock.strip():
                entry["reason"] = lock.strip()
        if prune:
            entry["prunable"] = True
            entry["reason"] = prune
        linked.append(entry)
    linked.sort(key=lambda e: e["path"])
    return [main, *linked]


def _is_bare(common: str) -> bool:
    try:
        return bool(pygit2.Repository(common).is_bare)
    except (pygit2.GitError, ValueError, OSError):
        return False


def probe(
    path: str, base_dir: str, open_repo: RepositoryOpener = pygit2.Repository
) -> dict[str, Any]:
    """The body of `GET /api/workspace/probe`."""
    if not os.path.isdir(path):
        return {"path": path, "isGitRepo": False, "error": f"not a directory: {path}"}
    repo = find_repository(path, base_dir, open_repo)
    if repo is None:
        return {"path": path, "isGitRepo": False}
    return probe_repository(path, repo, base_dir)


def probe_repository(path: str, repo: pygit2.Repository, base_dir: str) -> dict[str, Any]:
    """The probe body of `path`, found in `repo` (by `find_repository`)."""
    info = head_info(repo)
    body: dict[str, Any] = {
        "path": path,
        "isGitRepo": True,
        "repoRoot": real_path(repo.workdir).rstrip(os.sep),
    }
    if "branch" in info:
        body["branch"] = info["branch"]
    if "headSha" in info:
        body["headSha"] = info["headSha"]
    body["dirty"] = dirty_count(repo) > 0
    body["detached"] = info["detached"]
    body["worktrees"] = list_worktrees(repo, base_dir)
    return body
