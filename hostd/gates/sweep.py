"""What a crashed hostd left of its gates: processes still running and checkouts on disk."""

from __future__ import annotations

import logging
import os

from hostd.gates import checkout, groups

log = logging.getLogger("hostd.gates")

GATES = "gates"


def gates_dir(state_dir: str) -> str:
    return os.path.join(state_dir, GATES)


def sweep(state_dir: str) -> tuple[list[int], list[str]]:
    """End left-over gate processes, then delete left-over checkouts; (pids, checkouts)."""
    folder = gates_dir(state_dir)
    killed = groups.end_left_over(folder, checkout.checkouts_root(folder))
    removed = checkout.remove_all(folder)
    if killed:
        log.warning("ended %d gate process(es) left running by an earlier hostd", len(killed))
    if removed:
        log.info("removed %d gate checkout(s) left by an earlier hostd", len(removed))
    return killed, removed
