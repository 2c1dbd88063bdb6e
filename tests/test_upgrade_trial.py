"""hostd's own side of the trial boot, on a real layout in a temp dir."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from hostd.config import Config, load_config
from hostd.upgrade import record as rec
from hostd.upgrade.guard import write_trial
from hostd.upgrade.layout import Layout
from hostd.upgrade.trial import EXIT_RESTART, on_start, watch
from tests.procs import run_hostd

OLD, NEW = "0.4.0", "0.5.0"


@pytest.fixture
def config(tmp_path: Path, base_dir: Path) -> Config:
    overrides = {"base_dir": str(base_dir), "state_dir": str(tmp_path / "state")}
    return load_config(env={}, overrides={**overrides, "upgrade.root": str(tmp_path / "root")})


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "root")
    for version in (OLD, NEW):
        layout.version_dir(version).mkdir(parents=True)
    layout.point("previous", OLD)
    layout.point("current", NEW)
    return layout


def _on_trial(config: Config, layout: Layout, attempts: int, deadline_s: float) -> None:
    record = rec.Record(command_id="c1", phase=rec.TRIAL, to=NEW, previous=OLD)
    record.attempts, record.deadline = attempts, int(deadline_s * 1000)
    rec.save(config.state_dir, record)
    write_trial(layout, NEW, OLD, int(deadline_s))


def test_new_version_counts_its_starts_and_rolls_back_after_the_third(
    config: Config, layout: Layout
) -> None:
    _on_trial(config, layout, attempts=0, deadline_s=time.time() + 600)
    for attempt in (1, 2, 3):
        boot = on_start(config, layout, version=NEW)
        assert boot.exit_code is None and boot.trial is not None
        assert rec.load(config.state_dir).attempts == attempt
    assert on_start(config, layout, version=NEW).exit_code == EXIT_RESTART
    assert layout.linked("current") == OLD
    record = rec.load(config.state_dir)
    assert (record.phase, record.reason) == (rec.ROLLED_BACK, f"{NEW} did not come up in 3 starts")
    assert record.cooldown_until(NEW) is not None
    assert not layout.trial.exists()

    boot = on_start(config, layout, version=OLD)
    assert boot.report == ("c1", f"rolled back: {NEW} did not come up in 3 starts")
    assert not layout.version_dir(NEW).exists() and layout.version_dir(OLD).is_dir()


def test_new_version_past_the_deadline_rolls_back_at_once(config: Config, layout: Layout) -> None:
    _on_trial(config, layout, attempts=0, deadline_s=time.time() - 1)
    assert on_start(config, layout, version=NEW).exit_code == EXIT_RESTART
    assert rec.load(config.state_dir).reason == f"{NEW} was not healthy before the trial deadline"
    assert layout.linked("current") == OLD


def test_old_version_takes_the_guards_reason(config: Config, layout: Layout) -> None:
    _on_trial(config, layout, attempts=0, deadline_s=time.time() + 600)
    layout.point("current", OLD)
    layout.guard_verdict.write_text(f"{NEW} did not come up in 3 starts\n")
    boot = on_start(config, layout, version=OLD)
    assert boot.report == ("c1", f"rolled back: {NEW} did not come up in 3 starts")
    assert not layout.guard_verdict.exists()
    record = rec.load(config.state_dir)
    record.reported = True
    rec.save(config.state_dir, record)
    assert on_start(config, layout, version=OLD).report is None


def test_start_removes_unfinished_installs(config: Config, layout: Layout) -> None:
    layout.point("current", OLD)
    rec.save(config.state_dir, rec.Record(command_id="c2", phase=rec.INSTALLING, to=NEW))
    layout.staging_mark(NEW).write_text("")
    layout.point("previous", OLD)
    assert on_start(config, layout, version=OLD).report is None
    assert not layout.version_dir(NEW).exists() and layout.version_dir(OLD).is_dir()
    record = rec.load(config.state_dir)
    assert (record.phase, record.reason) == (
        rec.FAILED,
        "interrupted: hostd stopped while installing",
    )


async def test_trial_not_registered_by_the_deadline_rolls_back(
    config: Config, layout: Layout
) -> None:
    _on_trial(config, layout, attempts=1, deadline_s=time.time() + 0.3)
    exits: list[int] = []
    record = rec.load(config.state_dir)
    await asyncio.wait_for(watch(config, layout, record, asyncio.Event(), exits.append), 10)
    assert exits == [EXIT_RESTART]
    assert layout.linked("current") == OLD
    assert rec.load(config.state_dir).phase == rec.ROLLED_BACK


def test_check_says_why_a_checkout_cannot_upgrade_itself(base_dir: Path) -> None:
    done = run_hostd("check", "--base-dir", str(base_dir))
    assert done.returncode == 0, done.stderr
    upgrade = json.loads(done.stdout)["upgrade"]
    assert upgrade["managed"] is False and upgrade["selfUpgrade"] is False
    assert upgrade["refused"].startswith("not a managed install: hostd ")

    disabled = run_hostd("check", "--base-dir", str(base_dir), env={"HOSTD_UPGRADE_ENABLED": "0"})
    assert json.loads(disabled.stdout)["upgrade"]["refused"] == "self-upgrade disabled on this host"


def test_service_install_refuses_a_missing_source_and_changes_nothing(
    tmp_path: Path, base_dir: Path
) -> None:
    config = tmp_path / "hostd.yaml"
    config.write_text(f"base_dir: {base_dir}\nstate_dir: {tmp_path / 'state'}\n")
    root, units = tmp_path / "root", tmp_path / "units"
    scope = ["--root", str(root), "--config", str(config), "--unit-dir", str(units)]
    for source in ("/nowhere/hostd-1.0.0-py3-none-any.whl", "missing.whl"):
        done = run_hostd("service", "install", "--user", *scope, "--from", source)
        assert done.returncode == 1
        assert f"--from {source}: no such file or folder" in done.stderr
    assert not root.exists() and not units.exists()
