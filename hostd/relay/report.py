"""PATCH bodies for command status: `failed` exactly when `error` is set, and
the body kept under the relay's 64 KiB cap by shortening long strings (`truncated: true`)."""

from __future__ import annotations

import json
from typing import Any

from hostd.relay.journal import FAILED, SUCCEEDED

MAX_BODY_BYTES = 60 * 1024
MAX_ERROR_CHARS = 4000
_STRING_CAPS = (16384, 4096, 1024, 256, 64)
_MARK = "…[truncated]"


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def _cap_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value[:limit] + _MARK if len(value) > limit else value
    if isinstance(value, dict):
        return {k: _cap_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cap_strings(v, limit) for v in value]
    return value


def final_result(result: dict[str, Any], limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The result as it is journaled and reported: `error` a non-empty string or absent, and the
    whole PATCH body under `limit` bytes."""
    result = dict(result)
    error = result.pop("error", None)
    if error:
        error = error if isinstance(error, str) else json.dumps(error, default=str)
        result["error"] = _cap_strings(error, MAX_ERROR_CHARS)
    budget = limit - 2 * _size(result.get("error", "")) - 64
    if _size(result) <= budget:
        return result
    for cap in _STRING_CAPS:
        capped = {**_cap_strings(result, cap), "truncated": True}
        if _size(capped) <= budget:
            return capped
    slim = {
        k: _cap_strings(v, _STRING_CAPS[-1])
        for k, v in result.items()
        if isinstance(v, str | int | float | bool)
    }
    return {**slim, "truncated": True}


def status_of(result: dict[str, Any]) -> str:
    return FAILED if result.get("error") else SUCCEEDED


def terminal_body(status: str, result: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if result is not None:
        body["result"] = result
        if result.get("error"):
            body["error"] = result["error"]
    return body
