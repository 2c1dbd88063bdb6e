"""Answers of the read queries kept in a worker, each with what it was computed under.

An answer is given again only while the status watch's token for its worktree is unchanged
(no change to the worktree's files, its git directory, the repository's refs, the
configuration or the ignore and attributes files), so it is exactly what a fresh computation
would return. Large diffs are not kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from hostd.git.paths import Identity

Body = dict[str, Any]

MAX_ANSWERS = 4096
MAX_WEIGHT = 48 * 2**20
MAX_ANSWER_WEIGHT = 2**20
_BASE_WEIGHT = 512


@dataclass(frozen=True)
class Ticket:
    """What lets the daemon give a worker's answer again without asking the worker: the
    worker's status-watch generation when the answer was made (see
    `statuswatch.last_generation`), and the files no watch covers that it depends on, each
    with its stamp (`configkey.stamp`) or identity (device and inode) as it was then."""

    generation: int
    stamps: tuple[tuple[str, Any], ...]
    identities: tuple[tuple[str, Identity], ...]


@dataclass
class _Kept:
    token: Hashable
    body: Body
    weight: int
    text: bytes | None = None


class Answers:
    """An LRU of bodies by query, bounded in count and in approximate size."""

    def __init__(self, max_answers: int = MAX_ANSWERS, max_weight: int = MAX_WEIGHT) -> None:
        self.max_answers = max_answers
        self.max_weight = max_weight
        self.weight = 0
        self.hits = 0
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._queries: dict[int, Hashable] = {}  # id of a kept body -> its query

    def get(self, query: Hashable, token: Hashable) -> Body | None:
        """The body kept for `query` under an equal `token`; callers must not change it."""
        kept = self._kept.get(query)
        if kept is None or kept.token != token:
            return None
        self._kept.move_to_end(query)
        self.hits += 1
        return kept.body

    def put(self, query: Hashable, token: Hashable, body: Body) -> None:
        self._drop(query)
        weight = _weight(body)
        if weight > MAX_ANSWER_WEIGHT:
            return
        self._kept[query] = _Kept(token, body, weight)
        self._queries[id(body)] = query
        self.weight += weight
        self._trim()

    def encoded(self, body: Body) -> bytes:
        """`body` as JSON text; a kept answer is encoded once and its text kept with it."""
        query = self._queries.get(id(body))
        kept = None if query is None else self._kept.get(query)
        if kept is None or kept.body is not body:
            return json.dumps(body).encode()
        if kept.text is None:
            kept.text = json.dumps(body).encode()
            kept.weight += len(kept.text)
            self.weight += len(kept.text)
            self._trim()
        return kept.text

    def _trim(self) -> None:
        while len(self._kept) > self.max_answers or self.weight > self.max_weight:
            self._drop(next(iter(self._kept)))

    def _drop(self, query: Hashable) -> None:
        kept = self._kept.pop(query, None)
        if kept is not None:
            self.weight -= kept.weight
            self._queries.pop(id(kept.body), None)

    def clear(self) -> None:
        self._kept.clear()
        self._queries.clear()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._kept)


def _weight(body: Body) -> int:
    """About the bytes a body holds: its patches and file entries count, the rest is small."""
    files = body.get("files")
    if not isinstance(files, list):
        return _BASE_WEIGHT
    patches = sum(len(f.get("patch") or "") for f in files if isinstance(f, dict))
    return _BASE_WEIGHT + 200 * len(files) + patches
