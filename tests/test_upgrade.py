"""Self-upgrade end to end: real wheels, real venvs and pip, the development relay, a supervisor.

One managed install serves the whole module; the tests run in file order, each starting from
the state the previous one leaves (named in its docstring).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hostd.upgrade.guard import guard_script
from hostd.upgrade.layout import Layout
from tests.procs import http_json, wait_for
from tests.upgrade_harness import (
    BROKEN,
    NEXT,
    Relay,
    Supervisor,
    Wheelhouse,
    build_wheelhouse,
    managed_config,
    run,
)

HOST_ID = "upgrade-host"
HOSTD = [sys.executable, "-m", "hostd"]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return build_wheelhouse(tmp_path_factory.mktemp("wheels"))


@dataclass
class Host:
    work: Path
    relay: Relay
    supervisor: Supervisor
    config: dict[str, Any]
    wheels: Wheelhouse

    @property
    def root(self) -> Path:
        return self.work / "root"

    @property
    def config_path(self) -> Path:
        return self.work / "hostd.yaml"

    @property
    def url(self) -> str:
        return "http://" + self.config["api"]["listen"]

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def link(self, name: str) -> str | None:
        try:
            return os.readlink(self.root / name).rsplit("/", 1)[-1]
        except OSError:
            return None

    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir())

    def record(self) -> dict[str, Any]:
        return json.loads((self.work / "state" / "upgrade.json").read_text())

    def serving(self) -> str | None:
        try:
            return http_json(self.url + "/api/version")[1]["version"]
        except (OSError, ValueError):
            return None

    def pid(self) -> int:
        assert self.supervisor.proc is not None
        return self.supervisor.proc.pid

    def registered(self, version: str) -> dict[str, Any]:
        def reported() -> dict[str, Any] | None:
            status, orch = self.relay.call("GET", f"/api/orchestrators/{HOST_ID}")
            return orch if status == 200 and orch.get("version") == version else None

        return wait_for(reported, 60, interval=0.1)

    def snapshot(self) -> tuple[Any, ...]:
        return (self.pid(), self.link("current"), self.link("previous"), self.versions())


@pytest.fixture(scope="module")
def host(wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    work = tmp_path_factory.mktemp("managed")
    (work / "base").mkdir()
    relay = Relay(work / "relay.log")
    config = managed_config(
        HOST_ID,
        work,
        relay.url,
        wheelhouse,
        install_attempts=1,
        # Bytecode is compiled on first import instead: the slowest part of each pip run here.
        pip_args=["--no-index", "--find-links", str(wheelhouse.path), "--no-compile"],
        healthy_after="3s",
        trial_deadline="2m",
    )
    supervisor = Supervisor(work / "root", work / "hostd.yaml", work / "hostd.log")
    managed = Host(work, relay, supervisor, config, wheelhouse)
    managed.write_config()
    installed = run(
        [
            *HOSTD,
            "service",
            "install",
            "--user",
            "--root",
            managed.root,
            "--config",
            managed.config_path,
            "--from",
            wheelhouse.wheels[wheelhouse.current],
            "--unit-dir",
            work / "units",
        ]
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    supervisor.start()
    try:
        managed.registered(wheelhouse.current)
        yield managed
    finally:
        supervisor.stop()
        relay.stop()
        print(f"--- supervised hostd log ---\n{supervisor.tail()}")


def _status(host: Host, *extra: str) -> dict[str, Any]:
    argv = [*HOSTD, "service", "status", "--root", host.root, "--config", host.config_path]
    done = run([*argv, *extra])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _verify(unit: Path, user: bool, runtime_dir: Path) -> None:
    argv = ["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)]
    env_dir = runtime_dir / "xdg-runtime"
    env_dir.mkdir(mode=0o700, exist_ok=True)
    done = run(argv, timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(env_dir)})
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr


def test_install_writes_layout_and_units_that_systemd_accepts(host: Host) -> None:
    current = host.wheels.current
    status = _status(host)
    assert (status["current"], status["previous"]) == (current, None)
    assert [v["version"] for v in status["versions"]] == [current]
    assert status["versions"][0]["bytes"] > 0 and status["incomplete"] == []
    assert status["guard"] is True and os.access(host.root / "bin" / "hostd-guard", os.X_OK)

    user_unit = host.work / "units" / "hostd.service"
    text = user_unit.read_text()
    assert f"ExecStartPre={host.root}/bin/hostd-guard\n" in text
    assert f"ExecStart={host.root}/current/bin/hostd run --config {host.config_path}\n" in text
    assert "RestartForceExitStatus=75\n" in text and "TimeoutStopSec=90s\n" in text

    system = run(
        [
            *HOSTD,
            "service",
            "install",
            "--system",
            "--root",
            host.root,
            "--config",
            host.config_path,
            "--from",
            host.wheels.wheels[current],
            "--unit-dir",
            host.work / "system-units",
        ]
    )
    assert system.returncode == 0, system.stderr
    assert f"hostd {current} is already installed" in system.stdout
    system_unit = host.work / "system-units" / "hostd.service"
    assert "User=hostd\n" in system_unit.read_text()
    _verify(user_unit, user=True, runtime_dir=host.work)
    _verify(system_unit, user=False, runtime_dir=host.work)


def test_enable_runs_the_systemctl_lines_on_the_unit_it_wrote(host: Host, tmp_path: Path) -> None:
    """`--enable` with the unit in systemd's own folder runs what it prints; a `systemctl`
    first on PATH records its arguments and where the unit was then."""
    bin_dir, record = tmp_path / "bin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    fake.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    argv = [*HOSTD, "service", "install", "--user", "--root", host.root]
    argv += ["--config", host.config_path, "--from", host.wheels.wheels[host.wheels.current]]
    done = run([*argv, "--enable"], env=env)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "hostd.service"
    assert f"ExecStart={host.root}/current/bin/hostd run" in unit.read_text()
    assert record.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable --now hostd.service",
    ]
    assert "+ systemctl --user enable --now hostd.service" in done.stdout


def test_registers_as_able_to_upgrade_itself(host: Host) -> None:
    orch = host.registered(host.wheels.current)
    assert orch["capabilities"]["selfUpgrade"] is True
    assert orch["package"] == {"name": "hostd", "version": host.wheels.current}


def test_refused_and_failed_upgrades_change_nothing(host: Host) -> None:
    """At the installed version."""
    before = host.snapshot()
    downgrade = host.relay.enqueue_upgrade(HOST_ID, "0.0.1")
    odd_form = host.relay.enqueue_upgrade(HOST_ID, "0.9.0-dev.1")
    missing = host.relay.upgrade(HOST_ID, "9.9.9")

    command = host.relay.settled(downgrade)
    assert command["error"] == (
        f"refusing downgrade {host.wheels.current} → 0.0.1; pass force to override"
    )
    assert host.relay.settled(odd_form)["error"].startswith("unsupported version form: 0.9.0-dev")
    failed = host.relay.settled(missing)
    assert failed["status"] == "failed"
    assert "No matching distribution found for hostd==9.9.9" in failed["error"]
    assert "installing" in host.relay.phases(missing)
    assert host.snapshot() == before
    assert host.record()["phase"] == "failed"


def test_same_version_settles_without_a_restart(host: Host) -> None:
    """At the installed version. The relay settles its own upgrade by the reported version;
    hostd leaves a command it would settle `running`, with phase `already-current`."""
    pid, starts = host.pid(), len(host.supervisor.starts)
    command_id = host.relay.upgrade(HOST_ID, host.wheels.current)
    assert host.relay.settled(command_id)["status"] == "succeeded"
    untracked = host.relay.enqueue_upgrade(HOST_ID, host.wheels.current)
    wait_for(lambda: "already-current" in host.relay.phases(untracked), 30, interval=0.1)
    assert host.relay.command(untracked)["status"] == "running"
    assert (host.pid(), len(host.supervisor.starts)) == (pid, starts)


def test_upgrade_switches_and_the_relay_settles_it_by_version(host: Host) -> None:
    """From the installed version to NEXT; a second upgrade queued at once fails."""
    old = host.wheels.current
    (host.root / "versions" / "0.0.1").mkdir()
    command_id = host.relay.upgrade(HOST_ID, NEXT)
    second = host.relay.enqueue_upgrade(HOST_ID, NEXT)

    settled = host.relay.settled(command_id)
    assert (settled["status"], settled["result"]) == (
        "succeeded",
        {"version": NEXT, "fromVersion": old},
    )
    assert host.relay.settled(second)["error"] == f"an upgrade to {NEXT} is already in progress"
    phases = host.relay.phases(command_id)
    assert phases.index("installing") < phases.index("restarting")
    assert "succeeded" not in phases
    assert (host.link("current"), host.link("previous")) == (NEXT, old)
    assert host.serving() == NEXT
    assert host.registered(NEXT)["capabilities"]["selfUpgrade"] is True
    wait_for(lambda: host.record()["phase"] == "ok", 60, interval=0.1)
    assert host.versions() == sorted([old, NEXT])
    status = _status(host)
    assert (status["current"], status["previous"]) == (NEXT, old)
    assert (status["lastUpgrade"]["commandId"], status["lastUpgrade"]["to"]) == (command_id, NEXT)
    assert 75 in host.supervisor.codes()


def test_broken_version_is_rolled_back_and_then_refused(host: Host) -> None:
    """At NEXT; BROKEN's `hostd run` exits 3 at once, so the guard rolls it back."""
    first = len(host.supervisor.starts) - 1
    command_id = host.relay.upgrade(HOST_ID, BROKEN)
    failed = host.relay.settled(command_id)
    assert failed["status"] == "failed"
    assert failed["error"] == f"rolled back: {BROKEN} did not come up in 3 starts"
    assert host.link("current") == NEXT
    wait_for(lambda: host.serving() == NEXT, 60, interval=0.1)
    assert host.supervisor.codes()[first : first + 4] == [75, 3, 3, 3]
    versions = [start.version for start in host.supervisor.starts[first : first + 5]]
    assert versions == [NEXT, BROKEN, BROKEN, BROKEN, NEXT]
    assert BROKEN not in host.versions()
    assert host.record()["phase"] == "rolled-back"

    again = host.relay.settled(host.relay.upgrade(HOST_ID, BROKEN))
    assert again["error"].startswith(f"{BROKEN} was rolled back; refused until ")


def test_kill_during_install_leaves_the_running_version(host: Host) -> None:
    """At NEXT; a forced upgrade to BROKEN is killed while it installs."""
    pid = host.pid()
    command_id = host.relay.upgrade(HOST_ID, BROKEN, force=True)
    staging = host.root / "versions" / BROKEN / ".staging"
    wait_for(staging.exists, 60, interval=0.02)
    host.supervisor.kill_group()
    wait_for(lambda: host.pid() != pid and host.serving() == NEXT, 60, interval=0.1)
    wait_for(lambda: not (host.root / "versions" / BROKEN).exists(), 30, interval=0.1)
    failed = host.relay.settled(command_id)
    assert failed["error"].startswith("interrupted: hostd stopped while installing")
    assert (host.link("current"), host.versions()) == (NEXT, sorted([host.wheels.current, NEXT]))


def test_downgrade_needs_force_at_the_relay(host: Host) -> None:
    status, reply = host.relay.call(
        "POST",
        f"/api/orchestrators/{HOST_ID}/actions",
        {"action": "upgrade", "targetVersion": host.wheels.current},
    )
    assert (status, reply["error"]) == (
        409,
        f"refusing downgrade {NEXT} → {host.wheels.current}; pass force to override",
    )


def test_disabled_upgrades_are_refused_and_not_advertised(host: Host) -> None:
    """Restarted with upgrade.enabled: false."""
    host.supervisor.stop()
    host.config["upgrade"]["enabled"] = False
    host.write_config()
    host.supervisor.start()
    orch = wait_for(
        lambda: (o := host.registered(NEXT))["capabilities"].get("selfUpgrade") is None and o,
        60,
    )
    assert orch["version"] == NEXT
    refused = host.relay.settled(host.relay.upgrade(HOST_ID, "0.9.0"))
    assert refused["error"] == "self-upgrade disabled on this host"


def test_uninstall_removes_the_unit_and_with_purge_the_root(host: Host, tmp_path: Path) -> None:
    """Last: stops the supervised hostd for good."""
    host.supervisor.stop()
    stranger = tmp_path / "not-a-root"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    elsewhere = ["--unit-dir", tmp_path / "units"]
    refused = run([*HOSTD, "service", "uninstall", "--root", stranger, *elsewhere, "--purge"])
    assert refused.returncode == 1 and "is not a hostd install root" in refused.stderr
    assert (stranger / "keep.txt").read_text() == "mine"

    scope = ["--root", host.root, "--unit-dir", host.work / "units"]
    done = run([*HOSTD, "service", "uninstall", *scope, "--purge"])
    assert done.returncode == 0, done.stderr
    assert not (host.work / "units" / "hostd.service").exists() and not host.root.exists()
    assert host.config_path.is_file()


def test_guard_alone_rolls_back_a_version_that_cannot_start(tmp_path: Path) -> None:
    """Plain sh, no Python: three failed starts, the fourth runs the previous version."""
    root = tmp_path / "root"
    for version, code in (("1.0.0", 0), ("1.1.0", 1)):
        bin_dir = root / "versions" / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "hostd").write_text(f"#!/bin/sh\nexit {code}\n")
        (bin_dir / "hostd").chmod(0o755)
    (root / "current").symlink_to("versions/1.1.0")
    (root / "bin").mkdir()
    guard = root / "bin" / "hostd-guard"
    guard.write_text(guard_script(Layout(root)))
    guard.chmod(0o755)
    (root / "trial").write_text("to=1.1.0\nfrom=1.0.0\ndeadline=99999999999\n")
    env = {"PATH": "/usr/bin:/bin"}
    outcomes = []
    for _ in range(4):
        guarded = run_sh(guard, env)
        assert guarded.returncode == 0, guarded.stderr
        outcomes.append(run_sh(root / "current" / "bin" / "hostd", env).returncode)
    assert outcomes == [1, 1, 1, 0]
    assert os.readlink(root / "current") == "versions/1.0.0"
    assert (root / "trial.rolled-back").read_text() == "1.1.0 did not come up in 3 starts\n"
    assert not (root / "trial").exists() and not (root / "trial.attempts").exists()
    assert run_sh(guard, env).returncode == 0
    assert os.readlink(root / "current") == "versions/1.0.0"

    (root / "current").unlink()
    (root / "current").symlink_to("versions/1.1.0")
    (root / "trial").write_text("to=1.1.0\nfrom=1.0.0\ndeadline=1\n")
    assert run_sh(guard, env).returncode == 0
    assert os.readlink(root / "current") == "versions/1.0.0"
    assert "trial deadline" in (root / "trial.rolled-back").read_text()


def run_sh(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([shutil.which("sh") or "/bin/sh", script], timeout=30, env=env)
