"""The upgrade's pure parts: config section, version forms, which targets are refused, record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostd.config import ConfigError, load_config
from hostd.upgrade import record as rec
from hostd.upgrade.layout import Layout
from hostd.upgrade.policy import refusal, target_problem
from hostd.versioning import VersionFormError, to_pep440, to_semver


def test_upgrade_section_defaults(base_dir: Path) -> None:
    upgrade = load_config(env={}, overrides={"base_dir": str(base_dir)}).upgrade
    assert (upgrade.enabled, upgrade.allowed, upgrade.root, upgrade.pip_args) == (
        True,
        None,
        None,
        (),
    )
    assert (upgrade.supervisor, upgrade.trial_deadline, upgrade.cooldown) == ("auto", 180, 3600)


def test_pip_args_from_yaml_list_and_shell_split_environment(
    tmp_path: Path, base_dir: Path
) -> None:
    path = tmp_path / "hostd.yaml"
    path.write_text(f"base_dir: {base_dir}\nupgrade:\n  pip_args: [--no-index, --find-links, /w]\n")
    assert load_config(path, env={}).upgrade.pip_args == ("--no-index", "--find-links", "/w")
    env = {"HOSTD_UPGRADE_PIP_ARGS": "--index-url 'https://pypi.lan/my index' -q"}
    config = load_config(path, env=env)
    assert config.upgrade.pip_args == ("--index-url", "https://pypi.lan/my index", "-q")
    assert config.redacted()["upgrade"]["pip_args"] == list(config.upgrade.pip_args)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pip_args: [1, 2]", "upgrade.pip_args: expected a list of strings"),
        ("pip_args: {a: b}", "upgrade.pip_args: expected a list of strings"),
        ('pip_args: "--x \'open"', "upgrade.pip_args: cannot split"),
        ("allowed: '>>1'", "upgrade.allowed: expected a version specifier"),
        ("supervisor: cron", "upgrade.supervisor: expected one of auto, systemd, external"),
        ("trial_deadline: 0s", "upgrade.trial_deadline: must be above zero"),
        ("install_attempts: 0", "upgrade.install_attempts: must be at least 1"),
        ("enabled: perhaps", "upgrade.enabled: expected true or false"),
    ],
)
def test_bad_upgrade_config(tmp_path: Path, base_dir: Path, text: str, message: str) -> None:
    path = tmp_path / "hostd.yaml"
    path.write_text(f"base_dir: {base_dir}\nupgrade:\n  {text}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("semver", "pep440"),
    [
        ("1.2.3", "1.2.3"),
        ("1.2.3-rc.1", "1.2.3rc1"),
        ("1.2.3-beta.2", "1.2.3b2"),
        ("1.2.3-alpha.1", "1.2.3a1"),
        ("10.0.12-rc.30", "10.0.12rc30"),
    ],
)
def test_version_forms_map_both_ways(semver: str, pep440: str) -> None:
    assert (to_pep440(semver), to_semver(pep440)) == (pep440, semver)


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(*[st.integers(0, 999)] * 3),
    st.one_of(st.none(), st.tuples(st.sampled_from(["alpha", "beta", "rc"]), st.integers(0, 99))),
)
def test_version_round_trip(core: tuple[int, int, int], pre: tuple[str, int] | None) -> None:
    semver = ".".join(map(str, core)) + (f"-{pre[0]}.{pre[1]}" if pre else "")
    assert to_semver(to_pep440(semver)) == semver


@pytest.mark.parametrize("bad", ["1.2.3-dev.1", "1.2.3-rc1", "1.2.3-rc.1.2", "1.2", "v1.2.3"])
def test_other_version_forms_are_refused(bad: str) -> None:
    with pytest.raises(VersionFormError):
        to_pep440(bad)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (None, "params.targetVersion: expected a semver"),
        (123, "params.targetVersion: expected a semver"),
        ("1.2.3+build", "params.targetVersion: expected a semver"),
        ("1.2.3-dev.1", "unsupported version form: 1.2.3-dev.1"),
    ],
)
def test_target_problems(target: object, problem: str) -> None:
    found = target_problem(target)
    assert found is not None and found.startswith(problem)


def test_refusals() -> None:
    empty = rec.Record()
    assert refusal("0.5.0", "0.4.0", False, None, empty) is None
    assert refusal("0.4.0-rc.1", "0.4.0", False, None, empty) == (
        "refusing downgrade 0.4.0 → 0.4.0-rc.1; pass force to override"
    )
    assert refusal("0.3.0", "0.4.0", True, None, empty) is None
    assert refusal("0.5.0-rc.1", "0.4.0", False, ">=0.4,<0.6", empty) is None
    assert refusal("0.6.0", "0.4.0", False, ">=0.4,<0.6", empty) == (
        "0.6.0 is not allowed by upgrade.allowed (>=0.4,<0.6)"
    )
    assert refusal("0.6.0", "0.4.0", True, "<0.6", empty) is not None
    cooled = rec.Record(cooldowns={"0.5.0": rec.now_ms() + 60_000})
    refused = refusal("0.5.0", "0.4.0", False, None, cooled)
    assert refused is not None and refused.startswith("0.5.0 was rolled back; refused until ")
    assert refusal("0.5.0", "0.4.0", True, None, cooled) is None
    expired = rec.Record(cooldowns={"0.5.0": rec.now_ms() - 1})
    assert refusal("0.5.0", "0.4.0", False, None, expired) is None


def test_record_round_trip_and_unreadable_records(tmp_path: Path) -> None:
    state = str(tmp_path)
    assert rec.load(state) == rec.Record()
    record = rec.Record(command_id="c1", phase=rec.TRIAL, to="0.5.0", previous="0.4.0")
    record.cooldowns = {"0.3.0": rec.now_ms() + 60_000, "0.2.0": 1}
    rec.save(state, record)
    raw = json.loads((tmp_path / "upgrade.json").read_text())
    assert (raw["commandId"], raw["from"], raw["to"]) == ("c1", "0.4.0", "0.5.0")
    assert list(raw["cooldowns"]) == ["0.3.0"]
    assert rec.load(state) == record
    for junk in ("[1]", "{not json", '{"phase": "trial", "cooldowns": 5}'):
        (tmp_path / "upgrade.json").write_text(junk)
        assert rec.load(state).cooldowns == {}


def test_layout_links_and_incomplete_versions(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    for version in ("0.1.0", "0.2.0", "0.3.0"):
        layout.version_dir(version).mkdir(parents=True)
    layout.staging_mark("0.3.0").write_text("")
    layout.point("current", "0.2.0")
    layout.point("previous", "0.1.0")
    assert (layout.linked("current"), layout.linked("previous")) == ("0.2.0", "0.1.0")
    assert (layout.installed(), layout.incomplete()) == (["0.1.0", "0.2.0"], ["0.3.0"])
    assert layout.remove_incomplete() == ["0.3.0"]
    assert not layout.version_dir("0.3.0").exists()
    with pytest.raises(Exception, match="a link points at it"):
        layout.remove_version("0.2.0")
    layout.point("current", "0.1.0")
    assert (tmp_path / "current").readlink() == Path("versions/0.1.0")
