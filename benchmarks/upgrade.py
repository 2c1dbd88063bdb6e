"""Self-upgrade timings on a managed install, through the development relay.

    .venv/bin/python benchmarks/upgrade.py [--workdir DIR]

Builds the test wheelhouse (hostd at the current version, a next one and a broken one, plus the
dependency wheels), installs the current one with `hostd service install`, runs it under the
test supervisor (guard, restart on exit 75 and failure) and measures, with `--no-index
--find-links` installs:

- upgrade: from the relay's upgrade action to the relay's `succeeded` (split at hostd's
  `restarting` PATCH: install + smoke test, then drain + restart + register);
- API unavailable during that upgrade: the longest run of failed `/api/health` polls (every
  20 ms), first failure to first success again;
- rollback: from the upgrade action for the broken version to its `failed` ("rolled back"),
  and to the old version serving again;
- disk used by each installed version (its venv).

Prints one table; exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if not importlib.util.find_spec("hostd") and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

sys.path.insert(0, str(ROOT))

from tests.procs import wait_for  # noqa: E402
from tests.upgrade_harness import (  # noqa: E402
    BROKEN,
    NEXT,
    Relay,
    Supervisor,
    build_wheelhouse,
    managed_config,
)

HOST_ID = "bench-host"
POLL = 0.02


class HealthWatch(threading.Thread):
    """Polls `/api/health`; remembers the longest stretch without a 200."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url + "/api/health"
        self.stop = threading.Event()
        self.longest = 0.0
        self._down_since: float | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=1) as response:
                    up = response.status == 200
            except OSError:
                up = False
            if not up and self._down_since is None:
                self._down_since = now
            if up and self._down_since is not None:
                self.longest = max(self.longest, now - self._down_since)
                self._down_since = None
            self.stop.wait(POLL)


def _relay_time_of(relay: Relay, command_id: str, phase: str) -> int | None:
    path = f"/api/_dev/requests?method=PATCH&path=/api/commands/{command_id}"
    for entry in relay.ok("GET", path)["requests"]:
        body = entry.get("json") or {}
        if (body.get("result") or {}).get("phase") == phase:
            return entry["time"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hostd-upgrade-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []

    started = time.monotonic()
    wheels = build_wheelhouse(work / "wheels")
    rows.append(("build 3 hostd wheels + dependency wheels", f"{time.monotonic() - started:.1f} s"))

    relay = Relay(work / "relay.log")
    config = managed_config(HOST_ID, work, relay.url, wheels)
    (work / "base").mkdir(exist_ok=True)
    url = "http://" + config["api"]["listen"]
    config_path = work / "hostd.yaml"
    config_path.write_text(json.dumps(config))
    root = work / "root"
    started = time.monotonic()
    install = ["service", "install", "--user", "--root", str(root), "--config", str(config_path)]
    install += ["--from", str(wheels.wheels[wheels.current]), "--unit-dir", str(work / "units")]
    subprocess.run(
        [sys.executable, "-m", "hostd", *install], check=True, capture_output=True, timeout=600
    )
    rows.append(("hostd service install (wheelhouse)", f"{time.monotonic() - started:.1f} s"))

    supervisor = Supervisor(root, config_path, work / "hostd.log").start()
    try:

        def registered(version: str) -> bool:
            status, orch = relay.call("GET", f"/api/orchestrators/{HOST_ID}")
            return status == 200 and orch.get("version") == version

        wait_for(lambda: registered(wheels.current), 60)
        watch = HealthWatch(url)
        watch.start()
        started, at_ms = time.monotonic(), int(time.time() * 1000)
        command_id = relay.upgrade(HOST_ID, NEXT)
        command = relay.settled(command_id, 600)
        upgrade_s = time.monotonic() - started
        restarting = _relay_time_of(relay, command_id, "restarting")
        watch.stop.set()
        watch.join()
        rows.append(
            (
                f"upgrade {wheels.current} → {NEXT}: action to {command['status']}",
                f"{upgrade_s:.1f} s",
            )
        )
        if restarting is not None:
            rows.append(
                (
                    "  of which install + smoke test (to `restarting`)",
                    f"{(restarting - at_ms) / 1000:.1f} s",
                )
            )
            rows.append(
                (
                    "  of which drain + restart + register",
                    f"{upgrade_s - (restarting - at_ms) / 1000:.1f} s",
                )
            )
        rows.append(
            ("API unavailable during the upgrade (longest gap)", f"{watch.longest * 1000:.0f} ms")
        )

        record = work / "state" / "upgrade.json"
        wait_for(lambda: json.loads(record.read_text())["phase"] == "ok", 120)
        status = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hostd",
                    "service",
                    "status",
                    "--root",
                    str(root),
                    "--config",
                    str(config_path),
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        )
        for version in status["versions"]:
            rows.append(
                (f"disk used by versions/{version['version']}", f"{version['bytes'] / 1e6:.0f} MB")
            )

        started, at_ms = time.monotonic(), int(time.time() * 1000)
        command_id = relay.upgrade(HOST_ID, BROKEN)
        command = relay.settled(command_id, 600)
        rolled_s = time.monotonic() - started
        restarting = _relay_time_of(relay, command_id, "restarting")
        wait_for(lambda: registered(NEXT), 120)
        serving_s = time.monotonic() - started
        rows.append((f"broken {BROKEN}: action to `{command['error'][:30]}…`", f"{rolled_s:.1f} s"))
        if restarting is not None:
            rows.append(
                (
                    "  of which 3 failed starts + guard rollback + old version back",
                    f"{rolled_s - (restarting - at_ms) / 1000:.1f} s",
                )
            )
        rows.append((f"broken {BROKEN}: action to {NEXT} registered again", f"{serving_s:.1f} s"))
    finally:
        supervisor.stop()
        relay.stop()

    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
