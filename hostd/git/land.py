"""Landing a branch on its base: build the candidate tip, then move the base by compare-and-swap.

The two are separate steps so that checks on the candidate (land gates) can run in between: the
swap is always from the base value the candidate was built against. Nothing here touches a
working tree or runs `git rebase`; the replay is the preview's (`hostd.git.replay`), written to
the repository's object database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pygit2
from pygit2.enums import SortMode

from hostd.git.cas import compare_and_swap, ref_target
from hostd.git.replay import replay

MAX_LANDED_SHAS = 500
REFLOG_PREFIX = "hostd merge"
_IDENTITY = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$")


def parse_identity(text: str) -> pygit2.Signature:
    """`Name <email>` as a signature with the current time; `hostd <hostd@localhost>` when the
    text does not have that shape."""
    match = _IDENTITY.match(text or "")
    if match is None or not match.group(1) or "\0" in text:
        return pygit2.Signature("hostd", "hostd@localhost")
    return pygit2.Signature(match.group(1), match.group(2))


@dataclass
class Candidate:
    """What landing would make of the base, as plain data.

    `expected` is the local base's value the swap moves from; `onto` the commit the branch was
    replayed on (the same, or the base's upstream when that is ahead of it); `tip` the new base
    tip; `commits` the commits that land, oldest first (new ones when `rewritten`).
    """

    base_ref: str
    expected: str
    onto: str
    head: str
    tip: str = ""
    commits: list[str] = field(default_factory=list)
    rewritten: bool = False
    conflict_files: list[str] = field(default_factory=list)

    @property
    def conflict(self) -> bool:
        return not self.tip


def build_candidate(
    repo: pygit2.Repository,
    head_sha: str,
    base_ref: str,
    committer: pygit2.Signature,
    onto_sha: str | None = None,
) -> Candidate:
    """Replay `head_sha` onto the base (or onto `onto_sha`, a descendant of it) as `git rebase`
    would; a plain fast-forward when the branch already contains it. The new commits are
    written to the repository; no reference moves."""
    expected = ref_target(repo, base_ref)
    if expected is None:
        raise KeyError(f"{base_ref} does not exist")
    onto = repo[pygit2.Oid(hex=onto_sha) if onto_sha else expected].peel(pygit2.Commit)
    head = repo[head_sha].peel(pygit2.Commit)
    candidate = Candidate(base_ref, str(expected), str(onto.id), str(head.id))
    result = replay(repo, head, onto, committer, shortcut=True)
    if result.conflict or result.tip is None:
        candidate.conflict_files = result.conflict_files
        return candidate
    candidate.tip = str(result.tip)
    candidate.rewritten = result.rewritten
    if result.rewritten:
        candidate.commits = [str(c) for c in result.commits]
    else:
        candidate.commits = commits_between(repo, onto.id, result.tip)
    return candidate


def commits_between(repo: pygit2.Repository, old: pygit2.Oid, new: pygit2.Oid) -> list[str]:
    """The commits of old..new, oldest first, at most MAX_LANDED_SHAS (the newest ones)."""
    walker = repo.walk(new, SortMode.TOPOLOGICAL)
    walker.hide(old)
    shas: list[str] = []
    for commit in walker:
        shas.append(str(commit.id))
        if len(shas) == MAX_LANDED_SHAS:
            break
    return shas[::-1]


def reflog_message(command_id: str, what: str) -> str:
    return f"{REFLOG_PREFIX} {command_id}: {what}"


def swap_base(
    repo: pygit2.Repository, candidate: Candidate, committer: pygit2.Signature, command_id: str
) -> bool:
    """Move the base from `candidate.expected` to its tip; False (nothing written) if it moved."""
    return compare_and_swap(
        repo,
        candidate.base_ref,
        pygit2.Oid(hex=candidate.expected),
        pygit2.Oid(hex=candidate.tip),
        committer,
        reflog_message(command_id, f"land {candidate.head}"),
    )


def landed_by(
    repo: pygit2.Repository, base_ref: str, command_id: str
) -> tuple[str, str, str] | None:
    """(previous base tip, new base tip, head landed) of the land `command_id` recorded in the
    base's reflog, if any."""
    try:
        reflog = repo.references[base_ref].log()
    except (KeyError, pygit2.GitError, ValueError):
        return None
    prefix = reflog_message(command_id, "land ")
    for entry in reflog:
        if entry.message.startswith(prefix):
            return str(entry.oid_old), str(entry.oid_new), entry.message[len(prefix) :].strip()
    return None
