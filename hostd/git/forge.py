"""Pull requests through the `gh` executable: push the pinned head, open or find the PR, arm
auto-merge. Synchronous; every call has the network timeout."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from typing import Any

from hostd.git.remote import RemoteError, push, remote_sha, run_tool

_PR_URL = re.compile(r"https?://\S+/pull/(\d+)")
_ALREADY_EXISTS = re.compile(r"already exists", re.IGNORECASE)


@dataclass(frozen=True)
class PullRequestAsk:
    git_dir: str
    worktree: str
    branch: str
    base: str
    head_sha: str
    title: str
    body: str
    auto_merge: bool
    timeout: float


def _gh(ask: PullRequestAsk, *args: str) -> tuple[int, str, str]:
    return run_tool(["gh", *args], ask.worktree, ask.timeout, "gh " + args[0])


def _from_url(text: str) -> dict[str, Any] | None:
    matches = list(_PR_URL.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    return {"prUrl": match.group(0), "prNumber": int(match.group(1))}


def _existing(ask: PullRequestAsk) -> dict[str, Any] | None:
    code, out, _ = _gh(ask, "pr", "view", ask.branch, "--json", "url,number,state")
    if code != 0:
        return None
    try:
        view = json.loads(out)
    except ValueError:
        return _from_url(out)
    if not isinstance(view, dict) or not isinstance(view.get("url"), str):
        return None
    found = _from_url(view["url"]) or {"prUrl": view["url"]}
    if isinstance(view.get("number"), int):
        found["prNumber"] = view["number"]
    return found


def open_pull_request(ask: PullRequestAsk) -> dict[str, Any]:
    """`{prUrl, prNumber, autoMergeArmed, pushed}`, or `{error}` with git's or gh's message."""
    if shutil.which("gh") is None:
        return {"error": "gh is not installed (needed for the pr strategy)"}
    ref = f"refs/heads/{ask.branch}"
    try:
        seen = remote_sha(ask.git_dir, "origin", ref, ask.timeout)
        pushed = push(ask.git_dir, "origin", ask.head_sha, ref, seen, ask.timeout)
    except RemoteError as exc:
        return {"error": f"push to origin failed: {exc}"}
    if not pushed.ok:
        return {"error": f"push to origin refused: {pushed.message}"}
    try:
        pr = _create_or_find(ask)
    except RemoteError as exc:
        return {"error": str(exc), "pushed": True}
    if "error" in pr:
        return {**pr, "pushed": True}
    return {**pr, "autoMergeArmed": _arm_auto_merge(ask), "pushed": True}


def _create_or_find(ask: PullRequestAsk) -> dict[str, Any]:
    code, out, err = _gh(
        ask, "pr", "create", "--head", ask.branch, "--base", ask.base,
        "--title", ask.title, "--body", ask.body,
    )  # fmt: skip
    pr = _from_url(out) if code == 0 else None
    if pr is None and _ALREADY_EXISTS.search(err + out):
        pr = _existing(ask)
    if pr is None:
        message = (err or out).strip()[-2000:] or f"gh pr create exited with status {code}"
        return {"error": f"gh pr create failed: {message}"}
    return pr


def _arm_auto_merge(ask: PullRequestAsk) -> bool:
    """A refusal by the forge (or no answer in time) leaves auto-merge off; not an error."""
    if not ask.auto_merge:
        return False
    try:
        code, _, _ = _gh(ask, "pr", "merge", "--auto", "--merge", ask.branch)
    except RemoteError:
        return False
    return code == 0
