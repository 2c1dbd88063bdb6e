"""`hostd demo`: dev relay + hostd on a sandbox, reachable with the printed curl lines."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import git
from tests.procs import free_port, hostd_command, http_json


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError("demo ended before printing " + marker + ":\n" + "".join(lines))


def demo(*args: str, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        hostd_command("demo", *args), stdout=subprocess.PIPE, stderr=stderr, text=True
    )


def test_demo_serves_the_sandbox_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    relay, api = free_port(), free_port()
    sandbox = tmp_path / "sandbox"
    proc = demo(
        "--dir",
        str(sandbox),
        "--relay-listen",
        f"127.0.0.1:{relay}",
        "--api-listen",
        f"127.0.0.1:{api}",
    )
    try:
        banner = read_until(proc, "Press Ctrl-C to stop.")
        token = re.search(r"X-Agent-Relay-Token: (\w+)", banner).group(1)
        assert banner.count("curl -s") == 3
        headers = {"X-Agent-Relay-Token": token}
        relay_url = f"http://127.0.0.1:{relay}"
        status, state = http_json(f"{relay_url}/api/workspaces/ws-greeting/git-state", headers)
        assert status == 200
        greeting = sandbox / ".agent-relay" / "workspaces" / "greeting"
        behind, ahead = git(greeting, "rev-list", "--left-right", "--count", "main...HEAD").split()
        assert (state["ahead"], state["behind"]) == (int(ahead), int(behind))
        status, preview = http_json(f"{relay_url}/api/workspaces/ws-readme/merge-preview", headers)
        assert preview["reason"] == "worktree has uncommitted changes"
        status, _ = http_json(f"{relay_url}/api/workspaces/ws-readme/git-state")
        assert status == 401
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "hostd demo stopped" in rest
    assert (sandbox / "app" / ".git").is_dir()


def test_every_printed_url_and_command_works_as_printed(tmp_path: Path) -> None:
    relay, api = free_port(), free_port()
    proc = demo("--relay-listen", f"127.0.0.1:{relay}", "--api-listen", f"127.0.0.1:{api}")
    try:
        banner = read_until(proc, "Press Ctrl-C to stop.")
        root = Path(re.search(r"sandbox: (\S+)\)", banner).group(1))
        lines = banner.splitlines()
        urls = [u for line in lines if "curl" not in line for u in re.findall(r"http://\S+", line)]
        assert len(urls) == 6
        for url in urls:
            status, body = http_json(url)
            assert status == 200 and "error" not in body, url
        commands = [line.strip() for line in lines if line.strip().startswith("curl ")]
        assert len(commands) == 3
        for command in commands:
            result = subprocess.run(
                ["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False
            )
            assert result.returncode == 0, command
            assert "error" not in json.loads(result.stdout), (command, result.stdout)
        assert root.is_dir()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert f"sandbox {root} removed" in rest
    assert not root.exists()


@pytest.mark.parametrize("busy", ["relay", "api"])
def test_a_port_in_use_is_one_line_and_a_failure(tmp_path: Path, busy: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"relay": free_port(), "api": free_port(), busy: port}
        proc = demo(
            "--relay-listen",
            f"127.0.0.1:{ports['relay']}",
            "--api-listen",
            f"127.0.0.1:{ports['api']}",
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err == f"hostd demo: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert "Press Ctrl-C" not in out and "Traceback" not in out + err
