"""Configuration: defaults, overridden by a YAML file, overridden by the environment.

Every key is declared once in a frozen dataclass; the loader walks those declarations, so an
unknown key, a wrong type or a bad duration is reported with its dotted name.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "HOSTD_"
ENV_ALIASES = {
    "AGENT_RELAY_URL": "relay.url",
    "AGENT_RELAY_TOKEN": "relay.token",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(Exception):
    """A configuration value is missing, unknown or malformed; the message names the key."""


def _meta(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, **extra}


def _duration(default: float) -> Any:
    return field(default=default, metadata=_meta("duration"))


def _choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata=_meta("choice", choices=choices))


@dataclass(frozen=True)
class ApiConfig:
    listen: str = "127.0.0.1:4860"
    public_url: str | None = None
    request_timeout: float = _duration(5.0)

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


@dataclass(frozen=True)
class RelayConfig:
    url: str | None = None
    token: str | None = field(default=None, metadata=_meta("secret"))
    heartbeat_interval: float = _duration(30.0)
    poll_interval: float = _duration(3.0)
    request_timeout: float = _duration(10.0)
    register_backoff: float = _duration(5.0)
    register_backoff_max: float = _duration(120.0)
    reconnect_backoff: float = _duration(30.0)
    reconnect_backoff_max: float = _duration(3600.0)
    backoff_jitter: float = _duration(1.0)


@dataclass(frozen=True)
class LogConfig:
    level: str = _choice("info", "debug", "info", "warning", "error")
    format: str = _choice("text", "text", "json")


@dataclass(frozen=True)
class WorkspacesConfig:
    fetch_interval: float = _duration(300.0)
    fetch_timeout: float = _duration(60.0)
    merge_timeout: float = _duration(600.0)
    committer: str = "hostd <hostd@localhost>"
    push: bool = True
    gate_timeout: float = _duration(600.0)
    root: str | None = None
    pr_auto_merge: str = _choice("on-green", "on-green", "off")
    keep_status: bool = True
    max_watches: int = 0
    diff_max_file_mb: int = 32
    worker_memory_mb: int = 2048


@dataclass(frozen=True)
class CommandsConfig:
    max_concurrent: int = 4
    drain_timeout: float = _duration(60.0)


@dataclass(frozen=True)
class Config:
    id: str = ""
    hostname: str = ""
    base_dir: str = field(default="~", metadata=_meta("path"))
    state_dir: str = field(default="", metadata=_meta("path"))
    api: ApiConfig = field(default_factory=ApiConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    log: LogConfig = field(default_factory=LogConfig)
    workspaces: WorkspacesConfig = field(default_factory=WorkspacesConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)

    @property
    def token(self) -> str | None:
        return self.relay.token

    @property
    def public_url(self) -> str:
        return self.api.public_url or f"http://{self.hostname}:{self.api.port}"

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, with secrets replaced."""
        return _as_dict(self)


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"api.listen: expected host:port, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_duration(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like 30s or 5m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{key}: expected a duration like 500ms, 30s or 5m, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ConfigError(f"{key}: duration must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def _as_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind = f.metadata.get("kind")
        if dataclasses.is_dataclass(value):
            out[f.name] = _as_dict(value)
        elif kind == "secret":
            out[f.name] = "<redacted>" if value else None
        elif kind == "duration":
            out[f.name] = format_duration(value)
        else:
            out[f.name] = value
    return out


def _convert(f: dataclasses.Field[Any], value: Any, key: str) -> Any:
    kind = f.metadata.get("kind")
    if kind == "duration":
        return parse_duration(value, key)
    if kind == "choice":
        if value not in f.metadata["choices"]:
            choices = ", ".join(f.metadata["choices"])
            raise ConfigError(f"{key}: expected one of {choices}, got {value!r}")
        return value
    expected = f.type if isinstance(f.type, str) else f.type.__name__
    if expected == "bool":
        return _boolean(value, key)
    if expected.startswith("int"):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if value is None and "None" in expected:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
    if "\0" in value:
        raise ConfigError(f"{key}: must not contain a NUL byte")
    return value


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEANS |= {"false": False, "no": False, "off": False, "0": False}


def _boolean(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            raise ConfigError(f"{prefix}{name}: unknown key")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = prefix + name
        value = data[name]
        if f.default_factory is not dataclasses.MISSING:  # a nested section
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
            kwargs[name] = _build(f.default_factory, value, key + ".")
        else:
            kwargs[name] = _convert(f, value, key)
    return cls(**kwargs)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{part}: expected a mapping")
        node = child
    node[leaf] = value


def _env_keys() -> dict[str, str]:
    """Map every HOSTD_* environment name to its dotted config key."""
    keys: dict[str, str] = {}
    for f in dataclasses.fields(Config):
        if f.default_factory is not dataclasses.MISSING:
            for sub in dataclasses.fields(f.default_factory):
                keys[f"{ENV_PREFIX}{f.name}_{sub.name}".upper()] = f"{f.name}.{sub.name}"
        else:
            keys[f"{ENV_PREFIX}{f.name}".upper()] = f.name
    return keys


def _default_state_dir() -> str:
    xdg = os.environ.get("XDG_STATE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return str(root / "hostd")


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Load defaults < YAML file < environment < explicit overrides, then validate."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("HOSTD_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: invalid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        data = loaded or {}
    for name, dotted in {**_env_keys(), **ENV_ALIASES}.items():
        if env.get(name, "") != "":
            _set_dotted(data, dotted, env[name])
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return _finish(_build(Config, data, ""))


def _finish(cfg: Config) -> Config:
    hostname = cfg.hostname or socket.gethostname()
    base_dir = os.path.abspath(os.path.expanduser(cfg.base_dir))
    if not os.path.isdir(base_dir):
        raise ConfigError(f"base_dir: directory does not exist: {base_dir}")
    state_dir = os.path.abspath(os.path.expanduser(cfg.state_dir or _default_state_dir()))
    host_id = cfg.id or hostname.replace(".", "-")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", host_id):
        raise ConfigError(f"id: expected letters, digits, '.', '_' or '-', got {host_id!r}")
    listen_host, _ = split_listen(cfg.api.listen)
    if not cfg.relay.token and not is_loopback(listen_host):
        raise ConfigError(
            f"api.listen: refusing to listen on non-loopback address {listen_host} "
            "without relay.token (set AGENT_RELAY_TOKEN)"
        )
    if cfg.relay.url and not re.match(r"^https?://", cfg.relay.url):
        raise ConfigError(f"relay.url: expected an http(s) URL, got {cfg.relay.url!r}")
    if cfg.commands.max_concurrent < 1:
        raise ConfigError("commands.max_concurrent: must be at least 1")
    if cfg.api.request_timeout <= 0:
        raise ConfigError("api.request_timeout: must be above zero")
    for key in ("max_watches", "diff_max_file_mb", "worker_memory_mb"):
        if getattr(cfg.workspaces, key) < 0:
            raise ConfigError(f"workspaces.{key}: must not be negative")
    for key in ("heartbeat_interval", "poll_interval", "request_timeout"):
        if getattr(cfg.relay, key) <= 0:
            raise ConfigError(f"relay.{key}: must be above zero")
    return dataclasses.replace(
        cfg, id=host_id, hostname=hostname, base_dir=base_dir, state_dir=state_dir
    )
