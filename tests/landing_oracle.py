"""What the git CLI does when it lands a branch, and what a land must leave untouched."""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from tests.gitrepo import Repo, git, git_rc

_clones = itertools.count()


@dataclass
class Commit:
    author: str
    message: str
    tree: str


@dataclass
class Rebased:
    """`git rebase <base>` of a branch in a scratch clone."""

    conflict_files: list[str]
    tree: str | None
    commits: list[Commit]
    fast_forward: bool


def commits_of(repo: Repo | Path, range_: str) -> list[Commit]:
    """The commits of `range_`, oldest first, with author, raw message and tree."""
    path = repo.path if isinstance(repo, Repo) else repo
    out = git(path, "log", "--reverse", "--format=%H", range_).split()
    commits = []
    for sha in out:
        author = git(path, "log", "-1", "--format=%an <%ae> %at", sha).strip()
        message = git(path, "cat-file", "commit", sha).split("\n\n", 1)[1]
        tree = git(path, "rev-parse", f"{sha}^{{tree}}").strip()
        commits.append(Commit(author, message, tree))
    return commits


def git_rebase(repo: Repo, branch: str, base: str) -> Rebased:
    clone = repo.path.parent / f"oracle-{next(_clones)}"
    git(repo.path.parent, "clone", "-q", str(repo.path), str(clone))
    git(clone, "checkout", "-q", "-B", branch, f"origin/{branch}")
    before = git(clone, "rev-parse", "HEAD").strip()
    upstream = f"origin/{base}"
    rc, _ = git_rc(clone, "rebase", upstream)
    if rc != 0:
        names = git(clone, "diff", "--name-only", "-z", "--diff-filter=U").split("\0")
        return Rebased(sorted(n for n in names if n), None, [], False)
    head = git(clone, "rev-parse", "HEAD").strip()
    return Rebased(
        conflict_files=[],
        tree=git(clone, "rev-parse", "HEAD^{tree}").strip(),
        commits=commits_of(clone, f"{upstream}..HEAD"),
        fast_forward=head == before,
    )


def _worktree_files(root: Path) -> dict[str, str]:
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                files[rel] = "link:" + os.readlink(path)
            else:
                files[rel] = hashlib.sha1(path.read_bytes()).hexdigest() + oct(path.stat().st_mode)
    return files


def snapshot(repo: Repo, *worktrees: Path) -> dict[str, object]:
    """Refs, reachable objects, the worktree list and every worktree's files and status."""
    return {
        "refs": repo.git("for-each-ref", "--format=%(refname) %(objectname)"),
        "objects": sorted(repo.git("rev-list", "--objects", "--all").split("\n")),
        "worktrees": repo.git("worktree", "list", "--porcelain"),
        "files": {str(p): _worktree_files(p) for p in (repo.path, *worktrees)},
        "status": {str(p): git(p, "status", "--porcelain") for p in (repo.path, *worktrees)},
    }
