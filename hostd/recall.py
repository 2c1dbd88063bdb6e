"""Workspace answers the daemon gives again without asking a git worker.

A worker that makes an answer from what its status watch knows hands back a ticket with it
(`hostd.answers.Ticket`). The daemon keeps the answer's text and gives it again while the
worker that made it is idle, has reported no new generation since and has no inotify event
waiting, and every file outside the watches that the answer depends on (configuration files,
global ignore and attributes files, the asked folder itself, linked worktrees' `.git` files) is
still the one it was. That is exactly when the worker would give the same answer from its own
memory, without the two process wake-ups a worker round trip costs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from hostd.answers import Ticket
from hostd.git.configkey import stamp
from hostd.git.paths import identity
from hostd.workerlink import Link

MAX_ENTRIES = 4096
MAX_BYTES = 16 * 2**20
MAX_ENTRY_BYTES = 2**20

Quiet = Callable[[Link, int], bool]


@dataclass
class _Entry:
    text: bytes
    link: Link
    ticket: Ticket


class Recall:
    """An LRU of answer texts by query, bounded in count and in bytes (one event loop)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def get(self, query: Hashable, quiet: Quiet) -> bytes | None:
        """The text kept for `query` if it is still the answer; `quiet(link, generation)` says
        whether the worker's status watch saw nothing change since `generation`."""
        entry = self._entries.get(query)
        if entry is None:
            return None
        ticket = entry.ticket
        if not (quiet(entry.link, ticket.generation) and _unchanged(ticket)):
            self._drop(query)
            return None
        self._entries.move_to_end(query)
        self.hits += 1
        return entry.text

    def put(self, query: Hashable, text: bytes, link: Link, ticket: Ticket) -> None:
        self._drop(query)
        if len(text) > MAX_ENTRY_BYTES:
            return
        self._entries[query] = _Entry(text, link, ticket)
        self.bytes += len(text)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, query: Hashable) -> None:
        entry = self._entries.pop(query, None)
        if entry is not None:
            self.bytes -= len(entry.text)

    def __len__(self) -> int:
        return len(self._entries)


def _unchanged(ticket: Ticket) -> bool:
    return all(stamp(path) == kept for path, kept in ticket.stamps) and all(
        identity(path) == kept for path, kept in ticket.identities
    )
