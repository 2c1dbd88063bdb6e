"""A bounded log of the requests the relay received, for tests to observe what hostd sent."""

from __future__ import annotations

import contextlib
import json
from collections import deque
from fnmatch import fnmatchcase
from typing import Any

BODY_PREVIEW_CHARS = 4096


class RequestLog:
    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0

    def add(
        self, method: str, path: str, query: str, body: bytes, auth: str, time_ms: int
    ) -> dict[str, Any]:
        """Record a request; the returned entry gets `status` once the request is answered."""
        self._seq += 1
        text = body.decode("utf-8", errors="replace")
        entry: dict[str, Any] = {
            "seq": self._seq,
            "time": time_ms,
            "method": method,
            "path": path,
            "auth": auth,
            "bodySize": len(body),
        }
        if query:
            entry["query"] = query
        if text:
            entry["body"] = text[:BODY_PREVIEW_CHARS]
            if len(text) > BODY_PREVIEW_CHARS:
                entry["bodyTruncated"] = True
            else:
                with contextlib.suppress(ValueError):
                    entry["json"] = json.loads(text)
        self._entries.append(entry)
        return entry

    def entries(
        self, since: int = 0, method: str | None = None, path: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self._entries
            if entry["seq"] > since
            and (method is None or entry["method"] == method.upper())
            and (path is None or fnmatchcase(entry["path"], path))
        ]

    @property
    def last_seq(self) -> int:
        return self._seq

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count
