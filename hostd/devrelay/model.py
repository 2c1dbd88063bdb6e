"""Vocabulary the relay validates against, and its path containment rule."""

from __future__ import annotations

import os

COMMAND_STATUSES = (
    "pending",
    "accepted",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "rejected",
    "canceled",
)
WORKSPACE_MODES = ("isolated", "shared", "inherit")
WORKSPACE_STATUSES = (
    "active",
    "ready",
    "conflict",
    "review_requested",
    "merge_planned",
    "merged",
    "abandoned",
    "cleanup_requested",
    "cleaned",
)
TERMINAL_WORKSPACE_STATUSES = frozenset({"cleaned", "merged", "abandoned"})


def resolve(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def path_within_base(path: str | None, base: str | None) -> bool:
    """Lexical containment: `path` is `base` or lies below it."""
    if not path or not base:
        return False
    inner, outer = resolve(path), resolve(base)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)
