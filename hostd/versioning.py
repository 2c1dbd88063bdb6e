"""hostd's own version, and the mapping between PEP 440 and semver forms."""

from __future__ import annotations

import re
from importlib import metadata

_PEP440 = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?$")
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-(alpha|beta|rc)\.(\d+))?$")
_PRE_TO_SEMVER = {"a": "alpha", "b": "beta", "rc": "rc"}
_PRE_TO_PEP440 = {v: k for k, v in _PRE_TO_SEMVER.items()}


class VersionFormError(ValueError):
    """A version string has a form hostd cannot map between PEP 440 and semver."""


def package_version() -> str:
    try:
        return metadata.version("hostd")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def to_semver(pep440: str) -> str:
    """`1.2.3rc1` -> `1.2.3-rc.1`; `1.2.3` stays."""
    match = _PEP440.match(pep440)
    if not match:
        raise VersionFormError(f"not a release version: {pep440}")
    major, minor, patch, pre, num = match.groups()
    core = f"{major}.{minor}.{patch}"
    return f"{core}-{_PRE_TO_SEMVER[pre]}.{num}" if pre else core


def to_pep440(semver: str) -> str:
    """`1.2.3-rc.1` -> `1.2.3rc1`; pre-release forms other than alpha/beta/rc are refused."""
    match = _SEMVER.match(semver)
    if not match:
        raise VersionFormError(f"unsupported version form: {semver}")
    major, minor, patch, pre, num = match.groups()
    core = f"{major}.{minor}.{patch}"
    return f"{core}{_PRE_TO_PEP440[pre]}{num}" if pre else core


def semver_version() -> str:
    return to_semver(package_version())
