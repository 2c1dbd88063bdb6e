"""The CLI and the real daemon process."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from hostd import SEMVER
from hostd.config import Config
from tests.gitrepo import Repo, git, init_repo
from tests.procs import (
    free_port,
    health_or_none,
    hostd_command,
    http_json,
    run_hostd,
    start_daemon,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


def test_version() -> None:
    result = run_hostd("--version")
    assert result.returncode == 0 and result.stdout.strip() == SEMVER


def test_check_prints_effective_config_with_token_redacted(base_dir: Path) -> None:
    result = run_hostd(
        "check", "--base-dir", str(base_dir), env={"AGENT_RELAY_TOKEN": "very-secret"}
    )
    assert result.returncode == 0, result.stderr
    assert "very-secret" not in result.stdout
    assert '"token": "<redacted>"' in result.stdout
    assert f'"base_dir": "{base_dir}"' in result.stdout
    assert '"libgit2"' in result.stdout


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    result = run_hostd("check", "--config", str(ROOT / "config.example.yaml"))
    assert result.returncode == 0, result.stderr
    text = (ROOT / "config.example.yaml").read_text()
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+):", text, re.MULTILINE))
    for section in dataclasses.fields(Config):
        assert section.name in documented
        if dataclasses.is_dataclass(section.default_factory):
            for key in dataclasses.fields(section.default_factory):
                assert key.name in documented, f"{section.name}.{key.name}"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("relay:\n  poll_interval: often\n", "relay.poll_interval: expected a duration"),
        ("surprise: true\n", "surprise: unknown key"),
        ("api:\n  listen: 0.0.0.0:1\n", "api.listen: refusing to listen on non-loopback"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, base_dir: Path, yaml_text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"base_dir: {base_dir}\n{yaml_text}")
    for command in ("check", "run"):
        result = run_hostd(command, "--config", str(config))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and message in result.stderr


def test_missing_base_dir_exit_2(tmp_path: Path) -> None:
    result = run_hostd("run", "--base-dir", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert "base_dir: directory does not exist" in result.stderr


def test_query_commands_print_the_endpoint_json(tmp_path: Path, base_dir: Path, repo: Repo) -> None:
    port = free_port()
    config = tmp_path / "hostd.yaml"
    config.write_text(
        f"base_dir: {base_dir}\nstate_dir: {tmp_path / 'state'}\napi:\n  listen: 127.0.0.1:{port}\n"
        "log:\n  format: json\n"
    )
    repo.worktree(base_dir / "wt", "agent/a").commit("work", {"x.txt": "x\n"})
    proc = start_daemon(config)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: health_or_none(url), timeout=20)
        wt = base_dir / "wt"
        for command, route, extra in (
            ("probe", "probe", ""),
            ("state", "state", "&baseRef=main"),
            ("diff", "diff", "&baseRef=main"),
            ("preview", "merge-preview", "&baseRef=main"),
        ):
            args = [command, "--config", str(config), str(wt)]
            if extra:
                args += ["--base", "main"]
            result = run_hostd(*args)
            assert result.returncode == 0, result.stderr
            status, body = http_json(f"{url}/api/workspace/{route}?path={wt}{extra}")
            assert status == 200
            assert json.loads(result.stdout) == body, command
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = config.with_suffix(".log").read_text()
    assert '"route": "/api/workspace/probe"' in log
    assert str(wt) not in log


def run_in(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hostd_command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def git_position(path: Path, base: str) -> dict[str, int]:
    behind, ahead = git(path, "rev-list", "--left-right", "--count", f"{base}...HEAD").split()
    dirty = len(git(path, "--no-optional-locks", "status", "--porcelain").splitlines())
    return {"ahead": int(ahead), "behind": int(behind), "dirtyCount": dirty}


def position(body: dict[str, object]) -> dict[str, object]:
    return {key: body[key] for key in ("ahead", "behind", "dirtyCount")}


def test_relative_paths_are_relative_to_the_current_directory(base_dir: Path, repo: Repo) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/a")
    wt.commit("work", {"sub/x.txt": "x\n"})
    result = run_in(wt.path / "sub", "state", "..", "--base-dir", str(base_dir), "--base", "main")
    assert result.returncode == 0, result.stderr
    assert position(json.loads(result.stdout)) == git_position(wt.path, "main")
    outside = run_in(base_dir.parent, "probe", ".", "--base-dir", str(base_dir))
    assert outside.returncode == 1
    assert outside.stdout == "" and "path must be within base_dir" in outside.stderr


def test_without_config_the_cli_serves_the_repository_around_the_path(
    tmp_path: Path, base_dir: Path, repo: Repo
) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/a")
    wt.commit("work", {"x.txt": "x\n"})
    repo.commit("on main", {"m.txt": "m\n"})
    wt.write("untracked.txt", "u\n")
    assert not str(wt.path).startswith(os.environ["HOME"])
    for command in ("state", "preview", "diff"):
        result = run_in(wt.path, command)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "hostd: comparing with main (the default branch)\n"
        body = json.loads(result.stdout)
        assert body["baseRef"] == "main"
        assert body["dirtyCount"] == git_position(wt.path, "main")["dirtyCount"] == 1
    state = json.loads(run_in(wt.path, "state").stdout)
    assert position(state) == git_position(wt.path, "main")
    probe = json.loads(run_in(tmp_path, "probe", str(wt.path)).stdout)
    assert probe["isGitRepo"] is True and probe["repoRoot"] == str(wt.path)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [("origin-head", "trunk"), ("master", "master"), ("main-and-master", "main")],
)
def test_the_default_base_is_upstream_head_then_main_then_master(
    tmp_path: Path, setup: str, expected: str
) -> None:
    if setup == "origin-head":
        seed = init_repo(tmp_path / "seed", branch="trunk")
        seed.git("branch", "main")
        git(tmp_path, "clone", "-q", str(seed.path), str(tmp_path / "clone"))
        work = Repo(tmp_path / "clone")
    else:
        work = init_repo(tmp_path / "clone", branch="master")
        if setup == "main-and-master":
            work.git("branch", "main")
    work.git("checkout", "-q", "-b", "agent/x")
    work.commit("work", {"w.txt": "w\n"})
    result = run_in(work.path, "state")
    assert result.returncode == 0, result.stderr
    assert f"comparing with {expected} " in result.stderr
    assert position(json.loads(result.stdout)) == git_position(work.path, expected)


def test_a_result_with_error_exits_non_zero(tmp_path: Path, base_dir: Path) -> None:
    (base_dir / "plain").mkdir()
    for command in ("state", "diff", "preview"):
        result = run_in(base_dir / "plain", command, "--base-dir", str(base_dir))
        assert result.returncode == 1
        assert json.loads(result.stdout)["error"].startswith("not a git repository")
    probe = run_in(base_dir / "plain", "probe", "--base-dir", str(base_dir))
    assert probe.returncode == 0 and json.loads(probe.stdout)["isGitRepo"] is False


def test_a_closed_pipe_ends_quietly(base_dir: Path, repo: Repo) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/a")
    wt.commit("big", {"big.txt": "".join(f"line {i}\n" for i in range(40000))})
    command = " ".join(hostd_command("diff", str(wt.path), "--base", "main"))
    result = subprocess.run(
        ["sh", "-c", f"{command} | head -n 2"], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines() == ["{", '  "files": [']
    assert result.stderr == ""


def test_strategy_takes_only_its_documented_values(base_dir: Path, repo: Repo) -> None:
    result = run_in(repo.path, "preview", "--strategy", "squash")
    assert result.returncode == 2 and "invalid choice: 'squash'" in result.stderr
    for strategy, answered in (("pr", "pr"), ("rebase-ff", "rebase-ff"), ("auto", "rebase-ff")):
        result = run_in(repo.path, "preview", "--strategy", strategy)
        assert json.loads(result.stdout)["strategy"] == answered


def test_dev_relay_port_in_use_is_one_line_and_no_banner() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_hostd("dev-relay", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"hostd dev-relay: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


def test_dev_relay_banner_comes_once_listening() -> None:
    port = free_port()
    proc = subprocess.Popen(
        hostd_command("dev-relay", "--listen", f"127.0.0.1:{port}"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith(
            f"hostd development relay on http://127.0.0.1:{port}"
        )
        assert http_json(f"http://127.0.0.1:{port}/api/orchestrators")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_check_names_the_config_file_and_the_api_url(tmp_path: Path, base_dir: Path) -> None:
    config = tmp_path / "hostd.yaml"
    config.write_text(f"base_dir: {base_dir}\nhostname: build-01\napi:\n  listen: 127.0.0.1:4999\n")
    result = run_in(tmp_path, "check", "--config", "hostd.yaml")
    body = json.loads(result.stdout)
    assert (body["configFile"], body["apiUrl"]) == (str(config), "http://build-01:4999")
    assert "warning" not in body and result.stderr == ""
    from_env = run_in(tmp_path, "check", env={"HOSTD_CONFIG": str(config)})
    assert json.loads(from_env.stdout)["configFile"] == str(config)
    remote = run_in(
        tmp_path,
        "check",
        "--config",
        "hostd.yaml",
        env={"AGENT_RELAY_URL": "http://relay.lan:3000"},
    )
    warning = json.loads(remote.stdout)["warning"]
    assert "api.listen 127.0.0.1:4999 is loopback only" in warning and "api.public_url" in warning
    assert remote.stderr == f"hostd: warning: {warning}\n"
    no_file = json.loads(run_in(tmp_path, "check", "--base-dir", str(base_dir)).stdout)
    assert no_file["configFile"] is None


@pytest.mark.parametrize("relay_url", ["http://relay.invalid:3000", "http://127.0.0.1:9"])
def test_daemon_warns_once_when_the_relay_cannot_reach_its_api(
    tmp_path: Path, base_dir: Path, relay_url: str
) -> None:
    port = free_port()
    config = tmp_path / "hostd.yaml"
    config.write_text(
        f"base_dir: {base_dir}\nstate_dir: {tmp_path / 'state'}\napi:\n  listen: 127.0.0.1:{port}\n"
        f"relay:\n  url: {relay_url}\n  register_backoff: 100ms\n  register_backoff_max: 200ms\n"
    )
    proc = start_daemon(config)
    log_path = config.with_suffix(".log")
    try:
        wait_for(lambda: log_path.read_text().count("registration with") >= 1, timeout=30)
        wait_for(lambda: health_or_none(f"http://127.0.0.1:{port}"), timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    warnings = [line for line in log_path.read_text().splitlines() if "is loopback only" in line]
    if "127.0.0.1" in relay_url:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "api.public_url" in warnings[0]
