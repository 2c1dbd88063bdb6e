"""Signals to a whole process group, as a terminal's Ctrl-C sends them: hostd (alone or under
`hostd demo`) stops once, cleanly, and leaves no process of its own behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import Repo
from tests.procs import (
    free_port,
    hostd_command,
    http_json,
    read_until,
    session_processes,
    wait_for,
)

LEAK = "leaked semaphore"


def _group(*args: str) -> subprocess.Popen[str]:
    """Start hostd as the leader of a new session and process group, like a terminal job."""
    return subprocess.Popen(
        hostd_command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _signal_group(proc: subprocess.Popen[str], *signals: signal.Signals) -> tuple[str, str]:
    for sig in signals:
        os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    wait_for(lambda: not session_processes(proc.pid), 20)
    return out, err


def _workers_started(pid: int) -> bool:
    return any("forkserver" in line for line in session_processes(pid))


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGQUIT]], ids=["int", "quit"])
def test_demo_process_group_signal_stops_everything_once(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    relay = free_port()
    proc = _group(
        "demo",
        "--dir",
        str(tmp_path / "sandbox"),
        "--relay-listen",
        f"127.0.0.1:{relay}",
        "--api-listen",
        f"127.0.0.1:{free_port()}",
    )
    try:
        token = re.search(
            r"X-Agent-Relay-Token: (\w+)", read_until(proc.stdout, "Ctrl-C to stop.")
        ).group(1)
        url = f"http://127.0.0.1:{relay}/api/workspaces/ws-greeting/git-state"
        assert http_json(url, {"X-Agent-Relay-Token": token})[0] == 200
        assert _workers_started(proc.pid)
        out, err = _signal_group(proc, *signals)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if signals == [signal.SIGINT]:
        assert proc.returncode == 0, err
        assert "hostd demo stopped" in out
        assert len(re.findall("received SIG[A-Z]+, shutting down", err)) == 1, err
        assert "exiting at once" not in err
        assert LEAK not in err
    else:
        assert "received SIGQUIT, exiting at once" in err


@pytest.mark.parametrize("how", ["group-sigint", "sigquit-to-hostd-alone", "sigint-while-exiting"])
def test_run_stops_on_signals_and_leaves_no_worker_behind(
    tmp_path: Path, base_dir: Path, repo: Repo, how: str
) -> None:
    port = free_port()
    config = tmp_path / "hostd.yaml"
    config.write_text(
        f"base_dir: {base_dir}\nstate_dir: {tmp_path / 'state'}\napi:\n  listen: 127.0.0.1:{port}\n"
    )
    proc = _group("run", "--config", str(config))
    codes = {0}
    try:
        url = f"http://127.0.0.1:{port}/api/workspace/probe?path={repo.path}"
        wait_for(lambda: _probe_ok(url), 20)
        assert _workers_started(proc.pid)
        if how == "group-sigint":
            os.killpg(proc.pid, signal.SIGINT)
        elif how == "sigquit-to-hostd-alone":
            proc.send_signal(signal.SIGQUIT)
            codes = {128 + signal.SIGQUIT}
        else:
            proc.send_signal(signal.SIGTERM)
            read_until(proc.stderr, "hostd stopped")
            # Past the event loop (joining the worker pools): exits at once, or already gone.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            codes = {0, 128 + signal.SIGINT}
        _, err = proc.communicate(timeout=60)
        wait_for(lambda: not session_processes(proc.pid), 20)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in codes, err
    assert "Traceback" not in err
    if how == "group-sigint":
        assert LEAK not in err


def _probe_ok(url: str) -> bool:
    try:
        return http_json(url)[0] == 200
    except OSError:
        return False
