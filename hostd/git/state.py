"""The body of `GET /api/workspace/state`: status, ahead/behind, landed detection, stranded work."""

from __future__ import annotations

import re
from typing import Any

import pygit2

from hostd.git.discover import Workspace, head_info
from hostd.git.errors import GitError
from hostd.git.landing import unmerged_commits
from hostd.git.memo import remembered
from hostd.git.refs import reference, resolve_base
from hostd.git.status import dirty_count

MAX_UNMERGED_SHAS = 20
MAX_STRANDED = 10
_GIT_SPACE = " \t\r"
_NUMBERED = re.compile(r"-[0-9]+")
_TRAILING_NUMBER = re.compile(r"-[0-9]+\Z")


def workspace_state(ws: Workspace, base_ref: str | None, base_sha: str | None) -> dict[str, Any]:
    """Working-tree status, position against the base, and whether the branch's work landed."""
    try:
        return _state(ws.repo, base_ref, base_sha)
    except (pygit2.GitError, KeyError, ValueError, OSError) as exc:
        raise GitError(str(exc) or type(exc).__name__) from exc


def _state(repo: pygit2.Repository, base_ref: str | None, base_sha: str | None) -> dict[str, Any]:
    count = dirty_count(repo)
    body: dict[str, Any] = {"dirty": count > 0, "dirtyCount": count}
    branch = head_info(repo).get("branch")
    if branch is not None:
        body["branch"] = branch
    head = None if repo.head_is_unborn else repo.head.peel(pygit2.Commit)
    if head is not None:
        body["lastCommit"] = {
            "sha": str(head.id),
            "message": subject(head),
            "at": head.commit_time * 1000,
        }
    base = resolve_base(repo, base_ref, base_sha)
    if base is None:
        return body
    body["baseRef"] = base.name
    if head is None:
        return body
    ahead, behind = remembered(
        "ahead_behind",
        (head.id, base.commit.id),
        lambda: repo.ahead_behind(head.id, base.commit.id),
    )
    body["behind"] = behind
    body["ahead"] = ahead
    unmerged: list[pygit2.Commit] = []
    if ahead > 0:
        unmerged = unlanded(repo, head, base.landing)
        body["unmergedAhead"] = len(unmerged)
        if unmerged:
            body["unmergedShas"] = short_shas(unmerged)
        else:
            body["landed"] = True
            body["landedSha"] = str(base.commit.id)
    if branch is not None and not unmerged:
        stranded = stranded_branches(repo, branch, head, base.landing)
        if stranded:
            body["strandedBranches"] = stranded
            body["strandedUnmergedCommits"] = sum(s["unmergedAhead"] for s in stranded)
    return body


def subject(commit: pygit2.Commit) -> str:
    """The subject as `git log --format=%s` prints it."""
    try:
        text = commit.raw_message.decode(commit.message_encoding or "utf-8", "replace")
    except LookupError:
        text = commit.raw_message.decode("utf-8", "replace")
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip(_GIT_SPACE)
        if line:
            lines.append(line)
        elif lines:
            break
    return " ".join(lines)


def unlanded(
    repo: pygit2.Repository, head: pygit2.Commit, landing: pygit2.Commit
) -> list[pygit2.Commit]:
    """The commits of `head` whose change is not on `landing`; none when the trees are equal."""
    if head.tree_id == landing.tree_id:
        return []
    ids = remembered(
        "unlanded",
        (head.id, landing.id),
        lambda: tuple(c.id for c in unmerged_commits(repo, head, landing)),
    )
    return [repo[i].peel(pygit2.Commit) for i in ids]


def short_shas(commits: list[pygit2.Commit]) -> list[str]:
    return [str(c.id)[:8] for c in commits[:MAX_UNMERGED_SHAS]]


def stranded_branches(
    repo: pygit2.Repository, branch: str, head: pygit2.Commit, landing: pygit2.Commit
) -> list[dict[str, Any]]:
    """Sibling branches `<stem>` / `<stem>-<n>` that hold work neither in HEAD nor landed."""
    stem = _strip_number(branch)
    found: list[dict[str, Any]] = []
    for name in sorted(_siblings(repo, stem)):
        tip = _branch_tip(repo, name)
        if tip is None or tip.id == head.id or _contains(repo, head, tip):
            continue
        unmerged = unlanded(repo, tip, landing)
        if unmerged:
            found.append(
                {
                    "branch": name,
                    "unmergedAhead": len(unmerged),
                    "unmergedShas": short_shas(unmerged),
                }
            )
            if len(found) == MAX_STRANDED:
                break
    return found


def _contains(repo: pygit2.Repository, head: pygit2.Commit, tip: pygit2.Commit) -> bool:
    return remembered(
        "descendant_of", (head.id, tip.id), lambda: repo.descendant_of(head.id, tip.id)
    )


def _strip_number(name: str) -> str:
    return _TRAILING_NUMBER.sub("", name)


def _siblings(repo: pygit2.Repository, stem: str) -> list[str]:
    prefix = "refs/heads/" + stem
    names = []
    for ref in repo.references:
        if not ref.startswith(prefix):
            continue
        name = ref[len("refs/heads/") :]
        if name == stem or _NUMBERED.fullmatch(name[len(stem) :]):
            names.append(name)
    return names


def _branch_tip(repo: pygit2.Repository, name: str) -> pygit2.Commit | None:
    try:
        found = reference(repo, "refs/heads/" + name)
        return None if found is None else found.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None
