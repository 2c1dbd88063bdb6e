"""The params of `workspace.merge`, read loosely typed as the relay sends them.

A param counts only with the right JSON type; `deleteBranch` and `push` are false only when
literally `false`. The request also carries the config values the worker steps need, so it is
all a step gets (it crosses into git worker processes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hostd.config import Config

STRATEGIES = ("pr", "rebase-ff", "auto")
MAX_TITLE = 240
MAX_BODY = 8000
_SHA = re.compile(r"[0-9a-f]{40}")


class BadParams(ValueError):
    """A param the merge cannot go on with; the message names it."""


def _text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if not isinstance(value, str) or value == "":
        return None
    if "\0" in value:
        raise BadParams(f"{name}: must not contain a NUL byte")
    return value


@dataclass(frozen=True)
class MergeRequest:
    command_id: str
    workspace_id: str | None
    worktree_path: str | None
    repo_root: str | None
    branch: str | None
    base_ref: str | None
    base_sha: str | None
    strategy: str
    delete_branch: bool
    push: bool
    expected_head: str | None
    pr_title: str | None
    pr_body: str | None
    base_dir: str
    committer: str
    fetch_timeout: float
    auto_merge: bool

    @classmethod
    def parse(cls, command_id: str, params: dict[str, Any], config: Config) -> MergeRequest:
        title, body = _text(params, "prTitle"), _text(params, "prBody")
        if title is not None and len(title) > MAX_TITLE:
            raise BadParams(f"prTitle: longer than {MAX_TITLE} characters")
        if body is not None and len(body) > MAX_BODY:
            raise BadParams(f"prBody: longer than {MAX_BODY} characters")
        strategy = params.get("strategy")
        expected = _text(params, "expectedHeadSha")
        if expected is not None and not _SHA.fullmatch(expected.lower()):
            raise BadParams("expectedHeadSha: expected a full 40-hex commit id")
        push = params.get("push")
        workspaces = config.workspaces
        return cls(
            command_id=command_id,
            workspace_id=_text(params, "workspaceId"),
            worktree_path=_text(params, "worktreePath"),
            repo_root=_text(params, "repoRoot"),
            branch=_text(params, "branch"),
            base_ref=_text(params, "baseRef"),
            base_sha=_text(params, "baseSha"),
            strategy=strategy if strategy in STRATEGIES else "auto",
            delete_branch=params.get("deleteBranch") is not False,
            push=push if isinstance(push, bool) else workspaces.push,
            expected_head=expected.lower() if expected else None,
            pr_title=title,
            pr_body=body,
            base_dir=config.base_dir,
            committer=workspaces.committer,
            fetch_timeout=workspaces.fetch_timeout,
            auto_merge=workspaces.pr_auto_merge == "on-green",
        )
