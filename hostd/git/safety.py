"""Proofs a destructive command needs before it deletes: is the work on the base, is the branch
free to go; and the deletion of a branch by compare-and-swap."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pygit2

from hostd.git.discover import ZERO_SHA, resolve_head_file
from hostd.git.landing import contained, unmerged_commits
from hostd.git.refs import Base, local_branch, resolve_base, resolve_commit
from hostd.git.worktrees import admin_dirs

AGENT_PREFIX = "agent/"
DEFAULT_REMOTE = "origin"


def default_base_name(repo: pygit2.Repository) -> str | None:
    """The repository's default branch: the upstream's HEAD if known, else `main`, else
    `master`; the local branch when there is one, else the remote-tracking one."""
    candidates: list[str] = []
    try:
        target = repo.references[f"refs/remotes/{DEFAULT_REMOTE}/HEAD"].target
    except (KeyError, pygit2.GitError, ValueError):
        target = None
    prefix = f"refs/remotes/{DEFAULT_REMOTE}/"
    if isinstance(target, str) and target.startswith(prefix):
        candidates.append(target[len(prefix) :])
    for name in [*candidates, "main", "master"]:
        if local_branch(repo, name) is not None:
            return name
        if resolve_commit(repo, f"refs/remotes/{DEFAULT_REMOTE}/{name}") is not None:
            return f"{DEFAULT_REMOTE}/{name}"
    return None


def resolve_landing_base(
    repo: pygit2.Repository, base_ref: str | None, base_sha: str | None
) -> Base | None:
    """The base given, or without one the repository's default branch."""
    if base_ref is None and base_sha is None:
        base_ref = default_base_name(repo)
    return resolve_base(repo, base_ref, base_sha)


def contained_in_base(repo: pygit2.Repository, tip: pygit2.Commit, base: Base) -> bool | None:
    """Is `tip`'s content on the base or on its landing base? Three-valued; see
    `landing.contained`."""
    verdicts = [contained(repo, tip, base.commit)]
    if base.landing.id != base.commit.id and verdicts[0] is not True:
        verdicts.append(contained(repo, tip, base.landing))
    if True in verdicts:
        return True
    return None if None in verdicts else False


def unlanded_count(repo: pygit2.Repository, tip: pygit2.Commit, base: Base) -> int:
    """How many commits hold work that is not on the base (for messages): the non-merge commits
    `git cherry` marks `+`, at least one when the content is not contained."""
    targets = {base.commit.id: base.commit, base.landing.id: base.landing}
    return max(1, min(len(unmerged_commits(repo, tip, t)) for t in targets.values()))


@dataclass(frozen=True)
class BranchVerdict:
    """Whether a branch may be deleted; `reason` (branchPreservedReason) when not."""

    deletable: bool
    reason: str | None = None
    tip: str | None = None


def checked_out_in(repo: pygit2.Repository, common: str, branch: str) -> str | None:
    """The worktree (main or linked) that has `branch` checked out, if any."""
    heads = [(os.path.dirname(common), os.path.join(common, "HEAD"))]
    for admin in admin_dirs(common):
        gitdir = _read(os.path.join(admin, "gitdir")).strip()
        heads.append((os.path.dirname(gitdir) if gitdir else admin, os.path.join(admin, "HEAD")))
    for path, head_file in heads:
        if resolve_head_file(repo, _read(head_file)).get("branch") == branch:
            return path
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except OSError:
        return ""


def branch_verdict(
    repo: pygit2.Repository,
    common: str,
    branch: str | None,
    base: Base | None,
    delete_requested: bool = True,
) -> BranchVerdict:
    """May `branch` be deleted now (rule 4 and 5)? A missing branch is simply not deleted."""
    if branch is None:
        return BranchVerdict(False, "no branch")
    found = local_branch(repo, branch)
    if found is None:
        return BranchVerdict(False, "branch does not exist")
    tip = found.peel(pygit2.Commit)
    if not delete_requested:
        return BranchVerdict(False, "deleteBranch is false", str(tip.id))
    if not branch.startswith(AGENT_PREFIX):
        return BranchVerdict(False, "not an agent branch", str(tip.id))
    if base is None:
        return BranchVerdict(False, "base ref unavailable", str(tip.id))
    if base.local_branch == branch:
        return BranchVerdict(False, "branch is the base", str(tip.id))
    holder = checked_out_in(repo, common, branch)
    if holder is not None:
        return BranchVerdict(False, f"checked out in {holder}", str(tip.id))
    verdict = contained_in_base(repo, tip, base)
    if verdict is not True:
        reason = "unlanded commits" if verdict is False else "containment unknown"
        return BranchVerdict(False, reason, str(tip.id))
    return BranchVerdict(True, None, str(tip.id))


def delete_branch(repo: pygit2.Repository, branch: str, expected: str) -> bool:
    """Delete `refs/heads/<branch>` only while it still points at `expected` (one reference
    transaction); False when it moved or is gone."""
    name = "refs/heads/" + branch
    try:
        with repo.transaction() as txn:
            txn.lock_ref(name)
            current = repo.references.get(name)
            if current is None or str(current.target) != expected or expected == ZERO_SHA:
                raise _Moved
            txn.remove(name)
    except _Moved:
        return False
    return True


class _Moved(Exception):
    pass
