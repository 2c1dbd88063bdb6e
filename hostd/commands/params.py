"""Strict reading of the loosely typed params of the workspace commands.

A flag counts only with its JSON type (`deleteBranch: "false"` is the default); a text param of
the wrong type, with a NUL byte or over its length is an error, so nothing is touched on a guess.
"""

from __future__ import annotations

from typing import Any

import pygit2

MAX_PATH_BYTES = 4096
MAX_REF_CHARS = 1024
MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 8000


class ParamError(ValueError):
    """A param the command cannot act on; the message names it."""


def text(params: dict[str, Any], key: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    """An optional string param; absent or null is None, an empty string too."""
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParamError(f"{key}: expected a string, got {type(value).__name__}")
    if "\0" in value:
        raise ParamError(f"{key}: must not contain NUL bytes")
    if len(value) > limit:
        raise ParamError(f"{key}: longer than {limit} characters")
    return value or None


def path(params: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = text(params, key, MAX_PATH_BYTES)
    if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ParamError(f"{key}: longer than {MAX_PATH_BYTES} bytes")
    if value is None and required:
        raise ParamError(f"{key}: required")
    return value


def branch(params: dict[str, Any], key: str = "branch") -> str | None:
    """A branch name as `git check-ref-format --branch` accepts it (no `..`, no leading `-`)."""
    value = text(params, key, MAX_REF_CHARS)
    if value is None:
        return None
    short = value.removeprefix("refs/heads/")
    if short.startswith("-") or not pygit2.reference_is_valid_name("refs/heads/" + short):
        raise ParamError(f"{key}: not a valid branch name: {value!r}")
    return short


def revision(params: dict[str, Any], key: str) -> str | None:
    """A ref or commit id to resolve; never an option-like value."""
    value = text(params, key, MAX_REF_CHARS)
    if value is not None and value.startswith("-"):
        raise ParamError(f"{key}: must not start with '-': {value!r}")
    return value


def identifier(params: dict[str, Any], key: str) -> str | None:
    return text(params, key, MAX_ID_CHARS)


def flag(params: dict[str, Any], key: str, default: bool) -> bool:
    """True/false only when literally given as that JSON boolean; anything else is the default."""
    value = params.get(key)
    if default:
        return value is not False
    return value is True
