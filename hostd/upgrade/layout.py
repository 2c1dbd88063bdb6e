"""The managed install: one venv per version under `versions/`, `current` and `previous` links.

```
<root>/versions/<semver>/        a venv; `.staging` inside while it is not yet verified
<root>/current -> versions/<v>   replaced only by renaming a new link over it
<root>/previous -> versions/<v>
<root>/bin/hostd-guard           the sh guard run before every start
<root>/trial                     while a new version is on trial (read by the guard)
```
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hostd.config import Config

VERSIONS = "versions"
CURRENT = "current"
PREVIOUS = "previous"
STAGING_MARK = ".staging"
SYSTEM_ROOT = "/opt/hostd"


class LayoutError(Exception):
    """The install root is missing, or not what `hostd service install` makes."""


class Busy(Exception):
    """Another process holds the install root's lock."""


def default_root(system: bool | None = None) -> Path:
    system = os.geteuid() == 0 if system is None else system
    if system:
        return Path(SYSTEM_ROOT)
    data = os.environ.get("XDG_DATA_HOME")
    return (Path(data) if data else Path.home() / ".local" / "share") / "hostd"


def running_root() -> Path | None:
    """The root this interpreter's venv belongs to, when it is `<root>/versions/<v>`."""
    prefix = Path(sys.prefix)
    return prefix.parent.parent if prefix.parent.name == VERSIONS else None


def configured_root(config: Config) -> Path:
    if config.upgrade.root:
        return Path(os.path.abspath(os.path.expanduser(config.upgrade.root)))
    return running_root() or default_root()


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def versions(self) -> Path:
        return self.root / VERSIONS

    @property
    def guard(self) -> Path:
        return self.root / "bin" / "hostd-guard"

    @property
    def trial(self) -> Path:
        return self.root / "trial"

    @property
    def guard_attempts(self) -> Path:
        return self.root / "trial.attempts"

    @property
    def guard_verdict(self) -> Path:
        return self.root / "trial.rolled-back"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def staging_mark(self, version: str) -> Path:
        return self.version_dir(version) / STAGING_MARK

    def linked(self, name: str) -> str | None:
        """The version a link (`current`, `previous`) points at, or None."""
        try:
            target = os.readlink(self.root / name)
        except OSError:
            return None
        parent, _, version = target.rstrip("/").rpartition("/")
        return version if parent.endswith(VERSIONS) and version else None

    def installed(self) -> list[str]:
        """Complete versions (no staging mark), sorted by name."""
        try:
            entries = sorted(self.versions.iterdir())
        except FileNotFoundError:
            return []
        return [
            entry.name
            for entry in entries
            if entry.is_dir() and not (entry / STAGING_MARK).exists()
        ]

    def incomplete(self) -> list[str]:
        try:
            return sorted(p.parent.name for p in self.versions.glob(f"*/{STAGING_MARK}"))
        except FileNotFoundError:
            return []

    def point(self, name: str, version: str) -> None:
        """Point a link at `versions/<version>` by renaming a new link over the old one."""
        temporary = self.root / f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(f"{VERSIONS}/{version}")
        os.replace(temporary, self.root / name)
        fsync_dir(self.root)

    def remove_version(self, version: str) -> None:
        if version in (self.linked(CURRENT), self.linked(PREVIOUS)):
            raise LayoutError(f"refusing to remove {version}: a link points at it")
        remove_tree(self.version_dir(version))

    def remove_incomplete(self) -> list[str]:
        """Delete staged versions a crash left unverified; returns their names."""
        removed = []
        for version in self.incomplete():
            if version not in (self.linked(CURRENT), self.linked(PREVIOUS)):
                remove_tree(self.version_dir(version))
                removed.append(version)
        return removed

    def is_managed_by(self, prefix: str, version: str) -> bool:
        """True when `prefix` is this root's complete `versions/<version>` venv."""
        expected = self.version_dir(version)
        try:
            same = os.path.samefile(prefix, expected)
        except OSError:
            return False
        return same and self.guard.is_file() and not self.staging_mark(version).exists()

    def lock(self) -> int:
        """Take the root's lock (a file descriptor to `unlock`); Busy if another process has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(str(self.lock_file)) from None
        return fd

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = self.lock()
        try:
            yield
        finally:
            unlock(fd)


def unlock(fd: int) -> None:
    os.close(fd)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a temp file, fsync it, rename it over `path`, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    fsync_dir(path.parent)
