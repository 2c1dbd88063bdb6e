"""The params of `workspace.merge` read strictly (`hostd.commands.params`), with the config
values the worker steps need: a request is all a step gets (it crosses into git workers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hostd.commands import params as p
from hostd.commands.target import Environment, WorkspaceParams, workspace_params
from hostd.config import Config
from hostd.gates.levels import GateLevel

STRATEGIES = ("pr", "rebase-ff")
MAX_TITLE = 240
MAX_BODY = 8000
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class MergeRequest:
    command_id: str
    target: WorkspaceParams
    env: Environment
    strategy: str | None
    """`pr` or `rebase-ff` as asked; None is auto (resolved as the preview resolves it)."""
    delete_branch: bool
    push: bool
    expected_head: str | None
    pr_title: str | None
    pr_body: str | None
    fetch_timeout: float
    auto_merge: bool
    gate_level: GateLevel

    @classmethod
    def parse(cls, command_id: str, params: dict[str, Any], config: Config) -> MergeRequest:
        """Raises ParamError naming the param."""
        expected = p.text(params, "expectedHeadSha", 40)
        if expected is not None and not _SHA.fullmatch(expected.lower()):
            raise p.ParamError("expectedHeadSha: expected a full 40-hex commit id")
        strategy = params.get("strategy")
        workspaces = config.workspaces
        return cls(
            command_id=command_id,
            target=workspace_params(params),
            env=Environment.of(config),
            strategy=strategy if strategy in STRATEGIES else None,
            delete_branch=p.flag(params, "deleteBranch", True),
            push=p.flag(params, "push", workspaces.push),
            expected_head=expected.lower() if expected else None,
            pr_title=p.text(params, "prTitle", MAX_TITLE),
            pr_body=p.text(params, "prBody", MAX_BODY),
            fetch_timeout=workspaces.fetch_timeout,
            auto_merge=workspaces.pr_auto_merge == "on-green",
            gate_level=GateLevel.parse(params),
        )
