"""Process groups of running gates, recorded in `state_dir` so a restart can end them.

Each gate gets a random marker, carried in its environment (`HOSTD_GATE_RUN`). A record file
named after the marker is written before the gate starts and gets the process group id once it
has; it is deleted when the group has ended. After a crash the start-up sweep ends every process
it can prove is one of those gates: one whose environment carries a recorded marker, or whose
working folder lies inside a gate checkout. Nothing else is signalled, whatever its group id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import psutil

from hostd.gates.environment import MARKER

GROUPS = "groups"
SWEEP_WAIT = 5.0


def _groups_dir(gates_dir: str) -> str:
    return os.path.join(gates_dir, GROUPS)


def record(gates_dir: str, marker: str) -> str:
    folder = _groups_dir(gates_dir)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, marker)
    _write(path, {"pgid": None})
    return path


def set_pgid(path: str, pgid: int) -> None:
    _write(path, {"pgid": pgid})


def forget(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write(path: str, data: dict[str, int | None]) -> None:
    partial = path + ".partial"
    with open(partial, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)


def live_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that are not zombies."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _records(gates_dir: str) -> dict[str, int | None]:
    """marker -> recorded process group id (None: not yet known), for every record left."""
    folder = _groups_dir(gates_dir)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    records: dict[str, int | None] = {}
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path) as fh:
                pgid = json.load(fh).get("pgid")
        except (OSError, ValueError, AttributeError):
            pgid = None
        if not name.endswith(".partial"):
            records[name] = pgid if isinstance(pgid, int) else None
    return records


def _is_ours(proc: psutil.Process, records: dict[str, int | None], checkouts: str) -> bool:
    """The process carries a recorded marker, or it lives in a recorded gate's session and
    works inside a gate checkout (a gate that replaced its environment)."""
    try:
        if proc.environ().get(MARKER) in records:
            return True
        if os.getsid(proc.pid) not in set(records.values()):
            return False
        cwd = proc.cwd()
    except (psutil.Error, OSError):
        return False
    return cwd == checkouts or cwd.startswith(checkouts + os.sep)


def end_left_over(gates_dir: str, checkouts: str) -> list[int]:
    """Kill the gate processes a crashed hostd left running, then drop the records; the pids
    killed."""
    records = _records(gates_dir)
    ours: list[psutil.Process] = []
    if records:
        real = os.path.realpath(checkouts)
        me = os.getpid()
        ours = [p for p in psutil.process_iter() if p.pid != me and _is_ours(p, records, real)]
    for proc in ours:
        with contextlib.suppress(OSError):
            pgid = os.getpgid(proc.pid)
            if pgid != os.getpgrp():
                signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_gone(ours)
    folder = _groups_dir(gates_dir)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            forget(os.path.join(folder, name))
    return [proc.pid for proc in ours]


def _wait_gone(procs: list[psutil.Process]) -> None:
    deadline = time.monotonic() + SWEEP_WAIT
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.02)
