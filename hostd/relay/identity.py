"""What hostd says about itself in register and heartbeat bodies."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import pygit2

from hostd import PROTOCOL_VERSION, SEMVER
from hostd.config import Config
from hostd.sdnotify import under_systemd


@dataclass(frozen=True)
class Identity:
    config: Config
    capabilities: dict[str, bool]
    started_at: int = field(default_factory=lambda: int(time.time() * 1000))

    def heartbeat_body(self) -> dict[str, Any]:
        return {
            "version": SEMVER,
            "protocolVersion": PROTOCOL_VERSION,
            "package": {"name": "hostd", "version": SEMVER},
            "capabilities": dict(self.capabilities),
            "providers": [],
            "providerStatus": {},
            "providerCatalog": [],
        }

    def register_body(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "id": cfg.id,
            "hostname": cfg.hostname,
            "baseDir": cfg.base_dir,
            "apiUrl": cfg.public_url,
            **self.heartbeat_body(),
            "envKeys": [],
            "meta": self.meta(),
        }

    def meta(self) -> dict[str, Any]:
        systemd = under_systemd()
        meta: dict[str, Any] = {
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "version": SEMVER,
            "supervisor": "systemd" if systemd else "process",
            "python": platform.python_version(),
            "pygit2": pygit2.__version__,
            "libgit2": pygit2.LIBGIT2_VERSION,
        }
        unit = _systemd_unit() if systemd else None
        if unit:
            meta["selfUnit"] = unit
        return meta


def _systemd_unit() -> str | None:
    """The service unit this process runs in, read from its cgroup path."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        for part in reversed(line.rsplit(":", 1)[-1].split("/")):
            if part.endswith(".service"):
                return part
    return None
