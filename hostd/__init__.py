"""hostd: the host daemon of an Agent Relay deployment."""

from hostd.versioning import package_version, semver_version

__version__ = package_version()
SEMVER = semver_version()
PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "SEMVER", "__version__"]
