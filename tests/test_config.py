from __future__ import annotations

from pathlib import Path

import pytest

from hostd.config import ConfigError, load_config, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostd.yaml"
    path.write_text(text)
    return path


def test_defaults(base_dir: Path) -> None:
    cfg = load_config(env={}, overrides={"base_dir": str(base_dir), "hostname": "build.01.lan"})
    assert cfg.id == "build-01-lan"
    assert cfg.api.listen == "127.0.0.1:4860"
    assert cfg.api.request_timeout == 5.0
    assert cfg.relay.heartbeat_interval == 30.0
    assert cfg.relay.poll_interval == 3.0
    assert cfg.commands.max_concurrent == 4
    assert cfg.public_url == "http://build.01.lan:4860"
    assert cfg.log.format == "text"
    assert cfg.workspaces.keep_status is True


def test_environment_beats_file_beats_default(tmp_path: Path, base_dir: Path) -> None:
    path = write(
        tmp_path,
        f"base_dir: {base_dir}\nrelay:\n  url: http://file:1\n  token: filetoken\n"
        "  heartbeat_interval: 10s\napi:\n  request_timeout: 500ms\n",
    )
    env = {"AGENT_RELAY_TOKEN": "envtoken", "HOSTD_RELAY_HEARTBEAT_INTERVAL": "2m"}
    cfg = load_config(path, env=env)
    assert cfg.relay.url == "http://file:1"
    assert cfg.relay.token == "envtoken"
    assert cfg.relay.heartbeat_interval == 120.0
    assert cfg.api.request_timeout == 0.5
    assert cfg.base_dir == str(base_dir)


@pytest.mark.parametrize(("text", "value"), [("false", False), ("off", False), ("TRUE", True)])
def test_booleans_from_environment(base_dir: Path, text: str, value: bool) -> None:
    env = {"HOSTD_WORKSPACES_KEEP_STATUS": text}
    assert (
        load_config(env=env, overrides={"base_dir": str(base_dir)}).workspaces.keep_status is value
    )


def test_hostd_config_env_names_the_file(tmp_path: Path, base_dir: Path) -> None:
    path = write(tmp_path, f"base_dir: {base_dir}\nid: from-file\n")
    assert load_config(env={"HOSTD_CONFIG": str(path)}).id == "from-file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus: 1\n", "bogus: unknown key"),
        ("relay:\n  nope: 1\n", "relay.nope: unknown key"),
        ("relay:\n  heartbeat_interval: soon\n", "relay.heartbeat_interval: expected a duration"),
        ("relay:\n  heartbeat_interval: true\n", "relay.heartbeat_interval: expected a duration"),
        ("commands:\n  max_concurrent: many\n", "commands.max_concurrent: expected an integer"),
        ("commands:\n  max_concurrent: 0\n", "commands.max_concurrent: must be at least 1"),
        ("relay: 5\n", "relay: expected a mapping"),
        ("relay:\n  url: [1, 2]\n", "relay.url: expected a string"),
        ("relay:\n  url: ftp://x\n", "relay.url: expected an http(s) URL"),
        ("log:\n  format: xml\n", "log.format: expected one of text, json"),
        ("api:\n  listen: nohost\n", "api.listen: expected host:port"),
        ("api:\n  listen: 0.0.0.0:4860\n", "api.listen: refusing to listen on non-loopback"),
        ("base_dir: /definitely/not/here\n", "base_dir: directory does not exist"),
        ("- a list\n", "expected a mapping at the top level"),
        ("relay: {url: \n", "invalid YAML"),
        ("id: 'bad id/with slash'\n", "id: expected letters"),
        ("workspaces:\n  keep_status: maybe\n", "workspaces.keep_status: expected true or false"),
        ("workspaces:\n  keep_status: 2\n", "workspaces.keep_status: expected true or false"),
    ],
)
def test_bad_config_names_key_and_problem(
    tmp_path: Path, base_dir: Path, text: str, message: str
) -> None:
    if not text.startswith("base_dir") and not text.startswith("-") and "{url" not in text:
        text = f"base_dir: {base_dir}\n{text}"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert message in str(info.value)


def test_non_loopback_allowed_with_token(base_dir: Path) -> None:
    cfg = load_config(
        env={"AGENT_RELAY_TOKEN": "t"},
        overrides={"base_dir": str(base_dir), "api.listen": "0.0.0.0:4860"},
    )
    assert cfg.api.host == "0.0.0.0"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml", env={})


def test_redacted_hides_the_token(base_dir: Path) -> None:
    cfg = load_config(env={"AGENT_RELAY_TOKEN": "topsecret"}, overrides={"base_dir": str(base_dir)})
    data = cfg.redacted()
    assert data["relay"]["token"] == "<redacted>"
    assert "topsecret" not in repr(data)
    assert data["relay"]["heartbeat_interval"] == "30s"


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), (7, 7)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds
