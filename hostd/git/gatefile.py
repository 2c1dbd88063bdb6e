"""The gates a commit declares in `.agent-relay/land-gates.json`.

Shape: a JSON array of gates, or an object whose `gates` member is that array. A file that is
present but empty, not JSON or of the wrong shape declares one failing gate instead,
`land-gates-config`, whose output is the problem: the land is blocked, nothing crashes.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

import pygit2
from pygit2.enums import FileMode

GATE_FILE = ".agent-relay/land-gates.json"
CONFIG_GATE = "land-gates-config"
MAX_FILE_BYTES = 1 << 20
MAX_GATES = 100
MAX_NAME_CHARS = 200
MAX_COMMAND_CHARS = 8000


@dataclass(frozen=True)
class Gate:
    name: str
    command: str
    cwd: str = ""
    timeout_ms: int | None = None
    optional: bool = False


@dataclass(frozen=True)
class Declaration:
    """The gates in order; `error` (the gates are then empty) when the file is unusable."""

    gates: tuple[Gate, ...] = ()
    error: str | None = None

    @property
    def names(self) -> list[str]:
        return [CONFIG_GATE] if self.error else [gate.name for gate in self.gates]


class _Invalid(ValueError):
    pass


def read_declaration(repo: pygit2.Repository, commit_sha: str) -> Declaration:
    """The gates `commit_sha`'s tree declares; no file, no gates."""
    tree = repo[commit_sha].peel(pygit2.Commit).tree
    try:
        entry = tree[GATE_FILE]
    except KeyError:
        return Declaration()
    if entry.filemode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
        return Declaration(error=f"{GATE_FILE}: not a regular file")
    blob = repo[entry.id]
    if blob.size > MAX_FILE_BYTES:
        return Declaration(error=f"{GATE_FILE}: larger than {MAX_FILE_BYTES} bytes")
    return parse_declaration(blob.data)


def declaration_at(repo_path: str, commit_sha: str) -> Declaration:
    """`read_declaration` on the repository at `repo_path` (for a git worker)."""
    return read_declaration(pygit2.Repository(repo_path), commit_sha)


def parse_declaration(data: bytes) -> Declaration:
    try:
        return Declaration(gates=_gates(data))
    except _Invalid as exc:
        return Declaration(error=f"{GATE_FILE}: {exc}")


def _gates(data: bytes) -> tuple[Gate, ...]:
    if not data.strip():
        raise _Invalid("empty file")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Invalid(f"not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _Invalid(f"not JSON: {exc}") from None
    if isinstance(doc, dict):
        if "gates" not in doc:
            raise _Invalid("an object needs a `gates` array")
        doc = doc["gates"]
    if not isinstance(doc, list):
        raise _Invalid(f"expected an array of gates, got {_kind(doc)}")
    if len(doc) > MAX_GATES:
        raise _Invalid(f"more than {MAX_GATES} gates")
    return tuple(_gate(item, f"gates[{i}]") for i, item in enumerate(doc))


def _gate(item: Any, where: str) -> Gate:
    if not isinstance(item, dict):
        raise _Invalid(f"{where}: expected an object, got {_kind(item)}")
    name = _string(item, "name", where, MAX_NAME_CHARS, required=True)
    command = _string(item, "command", where, MAX_COMMAND_CHARS, required=True)
    cwd = _cwd(_string(item, "cwd", where, 4096, required=False), where)
    timeout = item.get("timeoutMs")
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise _Invalid(f"{where}.timeoutMs: expected a positive integer, got {timeout!r}")
    optional = item.get("optional", False)
    if not isinstance(optional, bool):
        raise _Invalid(f"{where}.optional: expected true or false, got {optional!r}")
    return Gate(name, command, cwd, timeout, optional)


def _string(item: dict[str, Any], key: str, where: str, limit: int, required: bool) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{where}.{key}: expected a non-empty string, got {value!r}")
    if "\0" in value:
        raise _Invalid(f"{where}.{key}: must not contain NUL bytes")
    if len(value) > limit:
        raise _Invalid(f"{where}.{key}: longer than {limit} characters")
    return value


def _cwd(value: str, where: str) -> str:
    """The gate's folder relative to the checkout root ('' is the root); it must stay inside."""
    if not value:
        return ""
    normal = posixpath.normpath(value)
    if value.startswith("/") or normal == ".." or normal.startswith("../"):
        raise _Invalid(f"{where}.cwd: must stay inside the checkout, got {value!r}")
    return "" if normal == "." else normal


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )
