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


def _workers_started(pid: int) -> bool:
    return any("forkserver" in line for line in session_processes(pid))


@pytest.mark.parametrize("how", ["group-sigint", "group-sigquit", "sigkill-to-demo-alone"])
def test_demo_signals_stop_everything_once(tmp_path: Path, how: str) -> None:
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
        banner = read_until(proc.stdout, "Ctrl-C to stop.")
        token = re.search(r"X-Agent-Relay-Token: (\w+)", banner).group(1)
        url = f"http://127.0.0.1:{relay}/api/workspaces/ws-greeting/git-state"
        assert http_json(url, {"X-Agent-Relay-Token": token})[0] == 200
        assert _workers_started(proc.pid)
        if how == "sigkill-to-demo-alone":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGINT if how == "group-sigint" else signal.SIGQUIT)
        out, err = proc.communicate(timeout=60)
        wait_for(lambda: not session_processes(proc.pid), 20)
    finally:
        _kill_session(proc)
    if how == "group-sigint":
        assert proc.returncode == 0, err
        assert "hostd demo stopped" in out
        assert len(re.findall("received SIG[A-Z]+, shutting down", err)) == 1, err
        assert "exiting at once" not in err
        assert LEAK not in err
    elif how == "group-sigquit":
        assert "received SIGQUIT, exiting at once" in err
    else:
        assert len(re.findall("started hostd is gone; shutting down", err)) == 1, err
        assert "exiting at once" not in err, err
        assert "hostd stopped" in err, err


def _kill_session(proc: subprocess.Popen[str]) -> None:
    """Whatever a failed test left running in the session goes."""
    for line in session_processes(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    if proc.returncode is None:
        proc.wait()


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
        _kill_session(proc)
    assert proc.returncode in codes, err
    assert "Traceback" not in err
    if how == "group-sigint":
        assert LEAK not in err


def _probe_ok(url: str) -> bool:
    try:
        return http_json(url)[0] == 200
    except OSError:
        return False
