"""Whether this hostd may upgrade itself: a managed install, supervised, upgrades enabled."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from hostd import SEMVER
from hostd.config import Config
from hostd.sdnotify import under_systemd
from hostd.upgrade.layout import Layout, configured_root

DISABLED = "self-upgrade disabled on this host"


@dataclass(frozen=True)
class Eligibility:
    layout: Layout
    managed: bool
    supervisor: str | None
    """`systemd` or `external` when something restarts hostd after exit 75, else None."""
    problem: str | None
    """Why an upgrade is refused, or None when it may go ahead."""

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "root": str(self.layout.root),
            "managed": self.managed,
            "selfUpgrade": self.problem is None,
        }
        if self.supervisor:
            body["supervisor"] = self.supervisor
        if self.problem:
            body["refused"] = self.problem
        return body


def managed_layout(config: Config) -> Layout | None:
    """The layout this process runs from, or None (a source checkout, any other venv)."""
    layout = Layout(configured_root(config))
    return layout if layout.is_managed_by(sys.prefix, SEMVER) else None


def supervisor(config: Config, env: Mapping[str, str] | None = None) -> str | None:
    wanted = config.upgrade.supervisor
    if wanted == "external":
        return "external"
    return "systemd" if under_systemd(env) else None


def eligibility(config: Config, env: Mapping[str, str] | None = None) -> Eligibility:
    layout = Layout(configured_root(config))
    managed = layout.is_managed_by(sys.prefix, SEMVER)
    supervised = supervisor(config, env)
    problem = None
    if not config.upgrade.enabled:
        problem = DISABLED
    elif not managed:
        problem = (
            f"not a managed install: hostd {SEMVER} runs from {sys.prefix}, not from"
            f" {layout.version_dir(SEMVER)} (set one up with `hostd service install`)"
        )
    elif supervised is None:
        how = "does not run under systemd"
        if config.upgrade.supervisor == "auto":
            how += " (set upgrade.supervisor: external if another supervisor restarts it)"
        problem = f"not supervised: hostd {how}; nothing would start it again after the upgrade"
    return Eligibility(layout, managed, supervised, problem)
