"""The environment a gate runs in: hostd's own, minus everything that configures hostd.

The candidate's code runs in a gate, so nothing that could reach the relay or hostd's settings
goes there: no `HOSTD_*` variable (every config key has one, `HOSTD_CONFIG` names the file), none
of the relay's own names (`AGENT_RELAY_TOKEN`, `AGENT_RELAY_URL`), no variable whose value holds
the configured relay token, and no `GIT_*` variable that points git at another repository.
The marker `HOSTD_GATE_RUN` is added: it tells hostd's start-up sweep which processes are its
gates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hostd.config import ENV_ALIASES, ENV_PREFIX

MARKER = "HOSTD_GATE_RUN"
MIN_SECRET_CHARS = 8
REPOSITORY_VARIABLES = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    }
)


def is_withheld(name: str, value: str, secrets: Iterable[str]) -> bool:
    if name.startswith(ENV_PREFIX) or name in ENV_ALIASES or name in REPOSITORY_VARIABLES:
        return True
    for secret in secrets:
        if secret and (value == secret or (len(secret) >= MIN_SECRET_CHARS and secret in value)):
            return True
    return False


def gate_environment(base: Mapping[str, str], secrets: Iterable[str | None]) -> dict[str, str]:
    """`base` without what is withheld; the runner adds each gate's marker."""
    known = [secret for secret in secrets if secret]
    return {name: value for name, value in base.items() if not is_withheld(name, value, known)}
