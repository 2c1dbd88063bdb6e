"""`hostd demo`: dev relay + hostd on a sandbox, reachable with the printed curl lines."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from tests.gitrepo import git
from tests.procs import free_port, hostd_command, http_json, wait_for


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError("demo ended before printing " + marker + ":\n" + "".join(lines))


def test_demo_serves_the_sandbox_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    relay, api = free_port(), free_port()
    sandbox = tmp_path / "sandbox"
    proc = subprocess.Popen(
        hostd_command(
            "demo",
            "--dir",
            str(sandbox),
            "--relay-listen",
            f"127.0.0.1:{relay}",
            "--api-listen",
            f"127.0.0.1:{api}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
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
        merge_line = next(line for line in banner.splitlines() if '"action":"merge"' in line)
        subprocess.run(merge_line.strip(), shell=True, check=True, capture_output=True, timeout=30)
        wait_for(
            lambda: (
                http_json(f"{relay_url}/api/workspaces/ws-greeting", headers)[1]["status"]
                == "merged"
            ),
            30,
        )
        repo = sandbox / "app"
        assert git(repo, "show", "main:GREETING.md") == "Pass a name.\n"
        assert git(repo, "log", "-1", "--format=%s", "main") == "Document the greeting\n"
        assert git(repo, "status", "--porcelain") == "" and not greeting.exists()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "hostd demo stopped" in rest
