"""The steps of `workspace.merge` that run in git worker processes.

Each is a module-level function taking the request and plain data and returning plain data, so
it crosses the process boundary; the handler (`hostd.commands.merge`) runs them in order and
reports progress between them. Only `swap` and `rollback` move the base.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pygit2

from hostd.commands.merge_request import MergeRequest
from hostd.commands.removal import release_branch, remove_and_release
from hostd.commands.target import resolve_target
from hostd.git.cas import compare_and_swap, ref_target
from hostd.git.checkout import changed_paths, move_files
from hostd.git.discover import list_worktrees, open_workspace
from hostd.git.errors import RefusedError
from hostd.git.forge import PullRequestAsk, open_pull_request
from hostd.git.land import Candidate, build_candidate, landed_by, parse_identity, reflog_message
from hostd.git.preview import DIRTY, merge_preview
from hostd.git.refs import resolve_base
from hostd.git.remote import RemoteError, branch_upstream, fetch, push
from hostd.git.safety import contained_in_base, default_base_name, resolve_landing_base
from hostd.git.state import subject
from hostd.git.worktrees import Pause, Worktree, finish_removals, no_pause, uncommitted_changes

Data = dict[str, Any]
TIP_MOVED = "worktree tip moved since dispatch"
GONE = "worktree no longer exists"
BASE_UNAVAILABLE = "base ref unavailable"
DIVERGED = "local base diverged from its upstream"
PUSH_REJECTED = "push rejected: upstream moved"


def outcome(status: str, error: str | None = None, **fields: Any) -> Data:
    """A result to report at once (the handler adds the common fields)."""
    body: Data = {"status": status, **fields}
    if error:
        body["error"] = error
    return {"outcome": body}


# ---------------------------------------------------------------- resolve and preview


def inspect(req: MergeRequest) -> Data:
    """Safety rules 1–3, `expectedHeadSha`, then the preview's verdict: an `outcome` to report
    at once, or the plan (`kind`: `land` or `noop`)."""
    target = req.target
    try:
        wt = resolve_target(target, req.env.base_dir)
        if wt.common_dir is not None:
            finish_removals(wt.common_dir, req.env.base_dir)
            wt = resolve_target(target, req.env.base_dir)
    except RefusedError as exc:
        return outcome("review_requested", str(exc))
    if not wt.exists:
        return {"outcome": _gone(req, wt)}
    ws = open_workspace(wt.path, req.env.base_dir)
    if target.base_ref is None and target.base_sha is None:
        target = dataclasses.replace(target, base_ref=default_base_name(ws.repo))
    fields: Data = {"branch": wt.branch or target.branch, "headSha": wt.head}
    if req.expected_head is not None and wt.head != req.expected_head:
        return outcome("review_requested", TIP_MOVED, **fields)
    preview = merge_preview(ws, target.base_ref, target.base_sha, req.strategy)
    fields["strategy"] = preview["strategy"]
    fields["baseRef"] = preview.get("baseRef", target.base_ref or target.base_sha)
    if "error" in preview:
        return outcome("review_requested", preview["error"], **fields)
    if preview["dirtyCount"] > 0:
        return outcome("review_requested", DIRTY, **fields)
    base = resolve_base(ws.repo, target.base_ref, target.base_sha)
    assert base is not None and wt.head is not None and wt.common_dir is not None
    plan: Data = {
        "kind": "noop" if preview.get("noop") else "land",
        "fields": fields,
        "gitDir": wt.common_dir,
        "worktree": dataclasses.asdict(wt),
        "base": base.local_branch,
        "subject": subject(ws.repo[wt.head].peel(pygit2.Commit)),
        "behind": preview.get("behind", 0),
    }
    if plan["kind"] == "noop":
        return plan
    if preview.get("conflict"):
        return _conflict(fields, preview.get("conflictFiles", []))
    if "conflict" not in preview:
        return outcome("review_requested", f"no merge base with {fields['baseRef']}", **fields)
    if preview["strategy"] == "rebase-ff" and base.local_branch is None:
        return outcome(
            "review_requested", f"base is not a local branch: {fields['baseRef']}", **fields
        )
    return plan


def _conflict(fields: Data, files: list[str]) -> Data:
    return outcome(
        "conflict",
        f"merge would conflict with {fields['baseRef']}",
        conflict=True,
        conflictFiles=files,
        **fields,
    )


def _gone(req: MergeRequest, wt: Worktree) -> Data:
    """The worktree is missing: a merge already done (its branch or the expected head contained
    in the base) is benign; anything else cannot be merged."""
    if wt.common_dir is not None:
        repo = pygit2.Repository(wt.common_dir)
        base = resolve_landing_base(repo, req.target.base_ref, req.target.base_sha)
        branch = wt.branch or req.target.branch
        for spec in (req.expected_head, None if branch is None else "refs/heads/" + branch):
            tip = _commit(repo, spec)
            if tip is not None and base is not None and contained_in_base(repo, tip, base):
                done: Data = {"status": "merged", "noop": True, "merged": True,
                              "headSha": str(tip.id), "worktreeRemoved": True}  # fmt: skip
                if req.delete_branch:
                    done.update(release_branch(wt.common_dir, branch, base.name, None))
                return done
    return {"status": "cleaned", "error": GONE, "worktreeRemoved": False}


def _commit(repo: pygit2.Repository, spec: str | None) -> pygit2.Commit | None:
    if spec is None:
        return None
    try:
        return repo.revparse_single(spec).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None


# ---------------------------------------------------------------- upstream


def upstream(req: MergeRequest, plan: Data) -> Data:
    """Fetch the base's upstream when pushing: `{upstream?, seen?}` or an outcome.

    `seen` is the upstream's value after the fetch ("" when it does not exist there): the lease
    of the push, and what to build on when it is ahead of the local base.
    """
    repo = pygit2.Repository(plan["gitDir"])
    found = branch_upstream(repo, plan["base"]) if req.push else None
    if found is None:
        return {}
    try:
        fetch(plan["gitDir"], found, req.fetch_timeout)
    except RemoteError as exc:
        return outcome("review_requested", f"fetch of the base's upstream failed: {exc}")
    seen = ref_target(repo, found.tracking_ref)
    return {"upstream": dataclasses.asdict(found), "seen": str(seen) if seen else ""}


def _onto(repo: pygit2.Repository, local: pygit2.Oid, seen: str) -> str | bool | None:
    """What to build on instead of the local base (the upstream when it is ahead), None for the
    local base itself, False when the two diverged."""
    if not seen:
        return None
    ahead = pygit2.Oid(hex=seen)
    if ahead == local or repo.descendant_of(local, ahead):
        return None
    if repo.descendant_of(ahead, local):
        return seen
    return False


# ---------------------------------------------------------------- build, swap, roll back


def build(req: MergeRequest, plan: Data, seen: str = "") -> Data:
    """`{candidate}` (a `Candidate` as a dict) on the base as it is now, or an outcome."""
    repo = pygit2.Repository(plan["gitDir"])
    base_ref = "refs/heads/" + plan["base"]
    local = ref_target(repo, base_ref)
    if local is None:
        return outcome("review_requested", BASE_UNAVAILABLE)
    onto = _onto(repo, local, seen)
    if onto is False:
        return outcome("review_requested", DIVERGED)
    committer = parse_identity(req.env.committer)
    head = plan["worktree"]["head"]
    candidate = build_candidate(repo, head, base_ref, committer, onto or None)
    if candidate.conflict:
        return _conflict(plan["fields"], candidate.conflict_files)
    return {"candidate": dataclasses.asdict(candidate)}


def base_worktree(repo: pygit2.Repository, base: str) -> str | None:
    """The worktree (main or linked) that has the base branch checked out."""
    for entry in list_worktrees(repo):
        if entry.get("branch") == base and not entry.get("bare") and not entry.get("prunable"):
            return entry["path"]
    return None


def swap(req: MergeRequest, plan: Data, candidate: Data) -> Data:
    """Compare-and-swap the base to the candidate: `{swapped, baseWorktree?, unsyncedPaths?}`.

    The base's worktree is looked at just before the swap, while its files match the old tip.
    """
    land = Candidate(**candidate)
    repo = pygit2.Repository(plan["gitDir"])
    found: Data = {}
    path = base_worktree(repo, plan["base"])
    if path is not None:
        found = {"baseWorktree": path, "unsyncedPaths": changed_paths(pygit2.Repository(path))}
    swapped = compare_and_swap(
        repo,
        land.base_ref,
        pygit2.Oid(hex=land.expected),
        pygit2.Oid(hex=land.tip),
        parse_identity(req.env.committer),
        reflog_message(req.command_id, f"land {land.head}"),
    )
    return {"swapped": swapped, **found}


def rollback(req: MergeRequest, git_dir: str, candidate: Data) -> bool:
    """Move the base back from the candidate's tip to where it was."""
    land = Candidate(**candidate)
    return compare_and_swap(
        pygit2.Repository(git_dir),
        land.base_ref,
        pygit2.Oid(hex=land.tip),
        pygit2.Oid(hex=land.expected),
        parse_identity(req.env.committer),
        reflog_message(req.command_id, "roll back"),
    )


def sync_worktree(path: str, old: str, new: str) -> Data:
    """Bring a worktree whose branch moved from `old` to `new` along, unless a file that
    changes was changed there: `{reconciled, unsyncedPaths?}`."""
    repo = pygit2.Repository(path)
    old_tree = repo[old].peel(pygit2.Commit).tree_id
    new_tree = repo[new].peel(pygit2.Commit).tree_id
    if move_files(repo, old_tree, new_tree):
        return {"reconciled": True}
    return {"reconciled": False, "unsyncedPaths": changed_paths(repo)}


def resync_base(git_dir: str, base: str, old: str, new: str) -> Data | None:
    """After a crash: bring the base's worktree from `old` to `new` unless it is there already
    (its index holds the new tree) or holds changes."""
    path = base_worktree(pygit2.Repository(git_dir), base)
    if path is None:
        return None
    repo = pygit2.Repository(path)
    if repo.index.write_tree() == repo[new].peel(pygit2.Commit).tree_id:
        unsynced = changed_paths(repo)
        return {"reconciled": not unsynced, **({"unsyncedPaths": unsynced} if unsynced else {})}
    return sync_worktree(path, old, new)


# ---------------------------------------------------------------- push


def push_base(req: MergeRequest, plan: Data, found: Data, candidate: Data) -> Data:
    """Push the new tip with a lease on the upstream value seen: `{pushed}`, `error` if not.
    Never a forced update: the tip must contain what the upstream has (already there: done)."""
    up = found["upstream"]
    tip, seen = candidate["tip"], found["seen"]
    if seen:
        repo = pygit2.Repository(plan["gitDir"])
        tip_id, seen_id = pygit2.Oid(hex=tip), pygit2.Oid(hex=seen)
        if seen_id == tip_id or repo.descendant_of(seen_id, tip_id):
            return {"pushed": True}
        if not repo.descendant_of(tip_id, seen_id):
            return {"pushed": False, "error": DIVERGED}
    try:
        result = push(plan["gitDir"], up["remote"], tip, up["merge_ref"], found["seen"],
                      req.fetch_timeout)  # fmt: skip
    except RemoteError as exc:
        return {"pushed": False, "error": f"push failed: {exc}"}
    if result.ok:
        return {"pushed": True}
    return {"pushed": False, "error": PUSH_REJECTED if result.rejected else result.message}


# ---------------------------------------------------------------- finish


def finish(req: MergeRequest, plan: Data, tip: str | None, pause: Pause = no_pause) -> Data:
    """Owner gone: remove the worktree, then release the branch (rules 4 and 5). Owner live:
    advance the agent branch to `tip` and check it out there (`branchAdvanced`)."""
    if not req.delete_branch:
        return _advance(req, plan, tip, pause)
    kept: Data = {"worktreeRemoved": False, "branchDeleted": False}
    wt = resolve_target(req.target, req.env.base_dir)
    if not wt.exists:
        return kept
    head = plan["worktree"]["head"]
    repo = pygit2.Repository(wt.path)
    if wt.head != head or uncommitted_changes(repo):
        return {**kept, "branchPreservedReason": "the worktree changed during the merge"}
    base = resolve_landing_base(repo, plan["base"] or req.target.base_ref, req.target.base_sha)
    if base is None or contained_in_base(repo, repo[head].peel(pygit2.Commit), base) is not True:
        return {**kept, "branchPreservedReason": "content not proven on the base"}
    repo.free()
    done = remove_and_release(
        wt,
        req.env.workspaces_root,
        wt.branch,
        plan["base"] or req.target.base_ref,
        req.target.base_sha,
        pause=pause,
    )
    return {"worktreeRemoved": done.pop("removed"), **done}


def _advance(req: MergeRequest, plan: Data, tip: str | None, pause: Pause) -> Data:
    kept = {"worktreeRemoved": False, "branchDeleted": False,
            "branchPreservedReason": "deleteBranch is false"}  # fmt: skip
    wt = plan["worktree"]
    head, branch = wt["head"], wt["branch"]
    if tip is None or tip == head or branch is None:
        return {**kept, "branchAdvanced": tip == head}
    repo = pygit2.Repository(wt["path"])
    ref = "refs/heads/" + branch
    committer = parse_identity(req.env.committer)
    old, new = pygit2.Oid(hex=head), pygit2.Oid(hex=tip)
    message = reflog_message(req.command_id, "advance")
    if not compare_and_swap(repo, ref, old, new, committer, message):
        return {**kept, "branchAdvanced": False}
    if sync_worktree(wt["path"], head, tip)["reconciled"]:
        pause("advanced")
        return {**kept, "branchAdvanced": True}
    compare_and_swap(repo, ref, new, old, committer, reflog_message(req.command_id, "undo advance"))
    return {**kept, "branchAdvanced": False}


# ---------------------------------------------------------------- pr


def pull_request(req: MergeRequest, plan: Data) -> Data:
    """Push the pinned head, open (or find) the PR, arm auto-merge."""
    wt = plan["worktree"]
    branch = wt["branch"] or req.target.branch
    if branch is None:
        return {"error": "a pull request needs a branch; the worktree is detached"}
    ask = PullRequestAsk(
        git_dir=plan["gitDir"],
        worktree=wt["path"],
        branch=branch,
        base=plan["fields"]["baseRef"].removeprefix("refs/heads/"),
        head_sha=wt["head"],
        title=req.pr_title or plan["subject"] or branch,
        body=req.pr_body or f"Lands {branch} (opened by hostd).",
        auto_merge=req.auto_merge,
        timeout=req.fetch_timeout,
    )
    return open_pull_request(ask)


# ---------------------------------------------------------------- recovery


def worktree_head(req: MergeRequest) -> str | None:
    """The worktree's HEAD now (None when it is gone or cannot be located)."""
    try:
        return resolve_target(req.target, req.env.base_dir).head
    except RefusedError:
        return None


def assess(req: MergeRequest) -> Data:
    """After a crash: did this command's land happen? `{landed, previous?, tip?, gitDir?,
    base?}`; landed when the base's reflog records it and the base still contains it."""
    try:
        wt = resolve_target(req.target, req.env.base_dir)
    except RefusedError:
        return {"landed": False}
    if wt.common_dir is None:
        return {"landed": False}
    repo = pygit2.Repository(wt.common_dir)
    base = resolve_landing_base(repo, req.target.base_ref, req.target.base_sha)
    if base is None or base.local_branch is None:
        return {"landed": False}
    base_ref = "refs/heads/" + base.local_branch
    found = landed_by(repo, base_ref, req.command_id)
    if found is None:
        return {"landed": False}
    previous, tip, head = found
    now = ref_target(repo, base_ref)
    landed = now is not None and (str(now) == tip or repo.descendant_of(now, pygit2.Oid(hex=tip)))
    return {
        "landed": landed,
        "previous": previous,
        "tip": tip,
        "head": head,
        "gitDir": wt.common_dir,
        "base": base.local_branch,
    }
