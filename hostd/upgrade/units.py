"""The systemd units: templates shipped in the package, filled with the install's real paths."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from hostd.upgrade.layout import CURRENT, Layout

UNIT_NAME = "hostd.service"
SYSTEM_USER = "hostd"
STOP_MARGIN = 30.0


def unit_dir(system: bool) -> Path:
    if system:
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else Path.home() / ".config") / "systemd" / "user"


def template(system: bool) -> str:
    name = "hostd-system.service" if system else "hostd.service"
    return resources.files("hostd.upgrade").joinpath("units", name).read_text()


def quote(value: str) -> str:
    """One ExecStart word: `%` and `$` escaped, quoted when it holds blanks."""
    if any(ch in value for ch in '"\\\n'):
        raise ValueError(f"a path in a systemd unit must not hold quotes or backslashes: {value}")
    value = value.replace("%", "%%").replace("$", "$$")
    return f'"{value}"' if any(ch.isspace() for ch in value) else value


def render(
    system: bool, layout: Layout, config_path: str, drain_timeout: float, user: str = SYSTEM_USER
) -> str:
    """The unit for this install; TimeoutStopSec leaves room above the drain timeout."""
    fields = {
        "@GUARD@": quote(str(layout.guard)),
        "@HOSTD@": quote(str(layout.root / CURRENT / "bin" / "hostd")),
        "@CONFIG@": quote(config_path),
        "@STOP_TIMEOUT@": f"{round(drain_timeout + STOP_MARGIN)}s",
        "@USER@": user,
    }
    text = template(system)
    for field, value in fields.items():
        text = text.replace(field, value)
    return text


def systemctl_lines(system: bool, enable: bool = True) -> list[list[str]]:
    scope = [] if system else ["--user"]
    if enable:
        return [
            ["systemctl", *scope, "daemon-reload"],
            ["systemctl", *scope, "enable", "--now", UNIT_NAME],
        ]
    return [
        ["systemctl", *scope, "disable", "--now", UNIT_NAME],
        ["systemctl", *scope, "daemon-reload"],
    ]
