"""Fault switches that make the relay fail, hang or reject a token on chosen routes.

A route pattern is `*` (everything) or `[METHOD ]<path glob>`, e.g.
`POST /api/orchestrators/*/heartbeat` or `/api/commands*`; `*` in the glob also matches `/`.
"""

from __future__ import annotations

import asyncio
import re
from fnmatch import fnmatchcase
from typing import Any

_PATTERN = re.compile(r"^(?:([A-Z]+) )?(/\S*)$")


class FaultError(ValueError):
    """A fault switch was given a malformed value."""


def _check_patterns(name: str, value: Any) -> list[str]:
    if value == "*":
        return ["*"]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FaultError(f'{name} must be "*" or an array of route patterns')
    for item in value:
        if item != "*" and not _PATTERN.match(item):
            raise FaultError(f'{name}: bad route pattern {item!r} (want "[METHOD ]/path/glob")')
    return list(value)


def _matches(patterns: list[str], method: str, path: str) -> bool:
    for pattern in patterns:
        if pattern == "*":
            return True
        match = _PATTERN.match(pattern)
        if match and (match[1] in (None, method)) and fnmatchcase(path, match[2]):
            return True
    return False


class Faults:
    def __init__(self) -> None:
        self.fail: list[str] = []
        self.fail_status = 500
        self.hang: list[str] = []
        self.reject_tokens: list[str] = []
        self._changed = asyncio.Event()
        self._closing = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "fail": self.fail,
            "failStatus": self.fail_status,
            "hang": self.hang,
            "rejectTokens": self.reject_tokens,
        }

    def update(self, changes: dict[str, Any]) -> None:
        """Replace the switches named in `changes`; validate everything before changing any."""
        fail = _check_patterns("fail", changes["fail"]) if "fail" in changes else self.fail
        hang = _check_patterns("hang", changes["hang"]) if "hang" in changes else self.hang
        status = changes.get("failStatus", self.fail_status)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError("failStatus must be an integer from 400 to 599")
        tokens = changes.get("rejectTokens", self.reject_tokens)
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise FaultError("rejectTokens must be an array of non-empty strings")
        self.fail, self.hang, self.fail_status, self.reject_tokens = fail, hang, status, tokens
        self._notify()

    def clear(self) -> None:
        self.fail, self.hang, self.reject_tokens, self.fail_status = [], [], [], 500
        self._notify()

    def failing(self, method: str, path: str) -> bool:
        return _matches(self.fail, method, path)

    def rejects(self, token: str | None) -> bool:
        return token is not None and token in self.reject_tokens

    async def hold_while_hanging(self, method: str, path: str) -> bool:
        """Wait while a hang switch matches; False when released by shutdown."""
        while _matches(self.hang, method, path):
            if self._closing:
                return False
            await self._changed.wait()
        return not self._closing

    def release_all(self) -> None:
        self._closing = True
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
