"""`hostd service install|status|uninstall`: the managed install and its systemd unit."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostd
from hostd.config import Config, ConfigError, load_config
from hostd.upgrade import record as rec
from hostd.upgrade import units
from hostd.upgrade.guard import write_guard
from hostd.upgrade.layout import CURRENT, PREVIOUS, Busy, Layout, default_root, unlock
from hostd.upgrade.stage import StageError, complete, run_process, stage
from hostd.versioning import VersionFormError, to_semver

SYSTEMCTL_TIMEOUT = 60.0
_WHEEL_VERSION = re.compile(r"^hostd-([^-]+)-")
_PINNED = re.compile(r"^hostd==(\S+)$")

STARTER_CONFIG = """\
# hostd configuration written by `hostd service install`. Every key, with its default, is
# documented in config.example.yaml of the hostd sources; check this file with
#   hostd check --config {path}
base_dir: "~"
# relay:
#   url: http://relay.lan:3000
#   token: change-me
{upgrade}"""


class ServiceError(Exception):
    """What `hostd service` could not do, in one line."""


@dataclass(frozen=True)
class Scope:
    system: bool
    layout: Layout
    config_path: Path
    unit_path: Path
    systemd_folder: bool
    """The unit lives where systemd reads units (not `--unit-dir`): systemctl applies."""


def scope_of(
    system: bool | None, root: str | None, config: str | None, unit_dir: str | None
) -> Scope:
    system = os.geteuid() == 0 if system is None else system
    layout = Layout(_absolute(root) if root else default_root(system))
    if config:
        config_path = _absolute(config)
    elif system:
        config_path = Path("/etc/hostd/config.yaml")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        config_path = Path(base) / "hostd" / "config.yaml"
    directory = Path(unit_dir) if unit_dir else units.unit_dir(system)
    return Scope(system, layout, config_path, directory / units.UNIT_NAME, unit_dir is None)


def _absolute(path: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


def default_source() -> str:
    """The running version: its source checkout when run from one, else the release."""
    checkout = Path(hostd.__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "hostd").is_dir():
        return str(checkout)
    return f"hostd=={hostd.__version__}"


def _source(spec: str | None) -> str:
    if not spec:
        return default_source()
    path = os.path.expanduser(spec)
    if os.path.exists(path):
        return os.path.abspath(path)
    if os.sep in spec or spec.endswith(".whl"):
        raise ServiceError(f"--from {spec}: no such file or folder")
    return spec


async def resolve_version(source: str, pip_args: tuple[str, ...], timeout: float) -> str:
    """The semver version `source` installs (a wheel's name, a pin, else pip's dry run)."""
    match = _WHEEL_VERSION.match(os.path.basename(source)) if source.endswith(".whl") else None
    match = match or _PINNED.match(source)
    if match:
        return _semver(match[1], source)
    with tempfile.TemporaryDirectory(prefix="hostd-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet"]
        argv += ["--ignore-installed", "--report", str(report), *pip_args, source]
        outcome = await run_process(argv, timeout)
        if outcome.code != 0:
            raise ServiceError(f"pip cannot resolve {source}: {outcome.output.strip()[-1000:]}")
        installs = json.loads(report.read_text()).get("install") or [{}]
    metadata = installs[0].get("metadata", {})
    if metadata.get("name", "").lower() != "hostd":
        raise ServiceError(f"{source} does not install hostd (it installs {metadata.get('name')})")
    return _semver(metadata["version"], source)


def _semver(pep440: str, source: str) -> str:
    try:
        return to_semver(pep440)
    except VersionFormError as exc:
        raise ServiceError(f"{source}: {exc}") from None


def _starter_config(scope: Scope, root_given: bool) -> None:
    if scope.config_path.exists():
        return
    upgrade = f"upgrade:\n  root: {json.dumps(str(scope.layout.root))}\n" if root_given else ""
    scope.config_path.parent.mkdir(parents=True, exist_ok=True)
    scope.config_path.write_text(
        STARTER_CONFIG.format(path=shlex.quote(str(scope.config_path)), upgrade=upgrade)
    )
    print(f"wrote a starter config: {scope.config_path}")


async def install(scope: Scope, spec: str | None, enable: bool, root_given: bool, user: str) -> int:
    source = _source(spec)
    _starter_config(scope, root_given)
    try:
        config = load_config(scope.config_path)
    except ConfigError as exc:
        raise ServiceError(f"config error: {exc}") from None
    layout, settings = scope.layout, config.upgrade
    try:
        fd = layout.lock()
    except Busy:
        raise ServiceError(f"{layout.root} is locked by another install or upgrade") from None
    try:
        version = await resolve_version(source, settings.pip_args, settings.install_timeout)
        if version in layout.installed():
            print(f"hostd {version} is already installed in {layout.version_dir(version)}")
        else:
            print(f"installing hostd {version} from {source} into {layout.version_dir(version)}")
            await stage(
                layout,
                version,
                settings.pip_args,
                str(scope.config_path),
                settings.install_attempts,
                settings.install_timeout,
                requirement=source,
            )
            complete(layout, version)
        _link(layout, version)
        write_guard(layout)
    except StageError as exc:
        raise ServiceError(str(exc)) from None
    finally:
        unlock(fd)
    _write_unit(scope, config, user)
    return _announce(scope, enable)


def _link(layout: Layout, version: str) -> None:
    running = layout.linked(CURRENT)
    if running and running != version:
        layout.point(PREVIOUS, running)
    layout.point(CURRENT, version)


def _write_unit(scope: Scope, config: Config, user: str) -> None:
    text = units.render(
        scope.system, scope.layout, str(scope.config_path), config.commands.drain_timeout, user
    )
    scope.unit_path.parent.mkdir(parents=True, exist_ok=True)
    scope.unit_path.write_text(text)
    if scope.system:
        _hand_over(scope.layout.root, user)


def _hand_over(root: Path, user: str) -> None:
    """The system unit runs as `user`, whose guard and upgrades rewrite the root."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        print(f"note: create the service user first: useradd --system --create-home {user}")
        print(f"      then: chown -R {user}: {shlex.quote(str(root))}")
        return
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.lchown(path, account.pw_uid, account.pw_gid)


def _announce(scope: Scope, enable: bool) -> int:
    print(f"unit: {scope.unit_path}")
    print(f"current: {scope.layout.root / CURRENT} -> versions/{scope.layout.linked(CURRENT)}")
    lines = units.systemctl_lines(scope.system)
    if not enable or not scope.systemd_folder:
        print("to start it now and at every boot:")
        for argv in lines:
            print("  " + shlex.join(argv))
        return 0
    for argv in lines:
        print("+ " + shlex.join(argv))
        done = subprocess.run(argv, timeout=SYSTEMCTL_TIMEOUT, check=False)
        if done.returncode != 0:
            print(f"hostd: {shlex.join(argv)} failed (exit {done.returncode})", file=sys.stderr)
            return 1
    return 0


def disk_usage(path: Path) -> int:
    """Bytes of disk the files under `path` occupy."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def status_body(scope: Scope) -> dict[str, Any]:
    layout = scope.layout
    body: dict[str, Any] = {
        "root": str(layout.root),
        "unit": str(scope.unit_path),
        "unitInstalled": scope.unit_path.is_file(),
        "guard": layout.guard.is_file(),
        "current": layout.linked(CURRENT),
        "previous": layout.linked(PREVIOUS),
        "versions": [
            {"version": v, "bytes": disk_usage(layout.version_dir(v))} for v in layout.installed()
        ],
        "incomplete": layout.incomplete(),
    }
    if layout.trial.is_file():
        body["trial"] = dict(
            line.split("=", 1) for line in layout.trial.read_text().splitlines() if "=" in line
        )
    try:
        config = load_config(scope.config_path) if scope.config_path.exists() else None
    except ConfigError as exc:
        body["configError"] = str(exc)
        config = None
    if config is not None:
        record = rec.load(config.state_dir)
        if record.phase:
            body["lastUpgrade"] = record.as_json()
    return body


def uninstall(scope: Scope, purge: bool) -> int:
    if scope.systemd_folder and shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        for argv in units.systemctl_lines(scope.system, enable=False):
            print("+ " + shlex.join(argv))
            subprocess.run(argv, timeout=SYSTEMCTL_TIMEOUT, check=False)
    if scope.unit_path.exists():
        scope.unit_path.unlink()
        print(f"removed {scope.unit_path}")
    if purge:
        layout = scope.layout
        if not (layout.guard.is_file() or layout.versions.is_dir()):
            raise ServiceError(f"{layout.root} is not a hostd install root; not removed")
        shutil.rmtree(layout.root)
        print(f"removed {layout.root}")
    return 0
