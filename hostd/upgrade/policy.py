"""Which upgrade targets are accepted: form, downgrade, `upgrade.allowed`, cool-down."""

from __future__ import annotations

import re
import time

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from hostd.upgrade.record import Record
from hostd.versioning import VersionFormError, to_pep440

RELAY_SEMVER = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?")


def target_problem(target: object) -> str | None:
    """None for a semver hostd can map to PEP 440, else what is wrong with it."""
    if not isinstance(target, str) or not RELAY_SEMVER.fullmatch(target):
        return f"params.targetVersion: expected a semver like 0.4.0, got {target!r}"
    try:
        to_pep440(target)
    except VersionFormError:
        return (
            f"unsupported version form: {target} (pre-releases must be -alpha.N, -beta.N or -rc.N)"
        )
    return None


def refusal(
    target: str, current: str, force: bool, allowed: str | None, record: Record
) -> str | None:
    """Why `target` is refused for a host running `current`, or None."""
    wanted, running = Version(to_pep440(target)), Version(to_pep440(current))
    if wanted < running and not force:
        return f"refusing downgrade {current} → {target}; pass force to override"
    if allowed is not None and not SpecifierSet(allowed).contains(wanted, prereleases=True):
        return f"{target} is not allowed by upgrade.allowed ({allowed})"
    until = record.cooldown_until(target)
    if until is not None and not force:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until / 1000))
        return f"{target} was rolled back; refused until {stamp} unless force"
    return None
