"""The CLI and the real daemon process."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
from pathlib import Path

import pytest

from hostd import SEMVER
from hostd.config import Config
from tests.gitrepo import Repo
from tests.procs import free_port, health_or_none, http_json, run_hostd, start_daemon, wait_for

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
