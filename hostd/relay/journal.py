"""The durable command journal: SQLite in state_dir, one row per command.

A row moves `new` (seen, accept not yet confirmed) → `accepted` (relay confirmed, not started) →
`running` (handler started) → `done` (outcome recorded; `reported` once the relay has it).
SQLite runs on one dedicated thread so the event loop never waits on disk. WAL with
synchronous=NORMAL: every commit survives a crash of hostd; a power cut may lose the last ones.

Every failure (a full disk, an unwritable file) surfaces as a JournalError, shows in `health()`
and is logged once per episode. A journal file deleted or replaced while open is noticed at the
next operation; a deleted one is written again from the open database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from hostd.relay.quiet import QuietLog

log = logging.getLogger("hostd.journal")

NEW, ACCEPTED, RUNNING, DONE = "new", "accepted", "running", "done"
UNFINISHED = (NEW, ACCEPTED, RUNNING)

SUCCEEDED, FAILED = "succeeded", "failed"
SETTLED = "settled"
"""Outcome of a command the relay settles itself (an upgrade): nothing is PATCHed."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    digest TEXT NOT NULL,
    params TEXT NOT NULL,
    phase TEXT NOT NULL,
    status TEXT,
    result TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_open ON commands (phase, reported);
"""
_COLUMNS = "id, type, digest, params, phase, status, result, reported, created_at, updated_at"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    id: str
    type: str
    digest: str
    params: dict[str, Any]
    phase: str
    status: str | None
    result: dict[str, Any] | None
    reported: bool
    created_at: int
    updated_at: int


class JournalError(Exception):
    """The journal could not read or write; the message says why."""


def params_digest(params: Any) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        id=row[0],
        type=row[1],
        digest=row[2],
        params=json.loads(row[3]),
        phase=row[4],
        status=row[5],
        result=json.loads(row[6]) if row[6] is not None else None,
        reported=bool(row[7]),
        created_at=row[8],
        updated_at=row[9],
    )


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hostd-journal")
        self._db: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self.failing = False
        self.failures = 0
        self.last_error: str | None = None
        self._trouble = QuietLog(log, f"journal {path}")

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": not self.failing, "failures": self.failures}
        if self.last_error is not None:
            body["lastError"] = self.last_error
        return body

    async def open(self) -> None:
        await self._call(self._open)

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close, check=False)
            self._db = None
        self._executor.shutdown(wait=True)

    async def get(self, command_id: str) -> Entry | None:
        return await self._call(self._get, command_id, reads_only=True)

    async def add(self, command_id: str, command_type: str, params: dict[str, Any]) -> Entry:
        """Record a newly seen command (phase `new`); an existing row is returned unchanged."""
        encoded = json.dumps(params, separators=(",", ":"), default=str)

        def add() -> Entry:
            now = _now_ms()
            self._execute(
                "INSERT OR IGNORE INTO commands (id, type, digest, params, phase, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                command_id,
                command_type,
                params_digest(params),
                encoded,
                NEW,
                now,
                now,
            )
            entry = self._get(command_id)
            assert entry is not None
            return entry

        return await self._call(add)

    async def set_phase(self, command_id: str, phase: str) -> None:
        await self._update(command_id, "phase = ?", phase)

    async def record_outcome(
        self, command_id: str, status: str, result: dict[str, Any] | None, reported: bool = False
    ) -> None:
        encoded = json.dumps(result, separators=(",", ":")) if result is not None else None
        await self._update(
            command_id,
            "phase = ?, status = ?, result = ?, reported = ?",
            DONE,
            status,
            encoded,
            int(reported),
        )

    async def mark_reported(self, command_id: str) -> None:
        await self._update(command_id, "reported = 1")

    async def forget(self, command_id: str) -> None:
        await self._call(self._execute, "DELETE FROM commands WHERE id = ?", command_id)

    async def unreported(self) -> list[Entry]:
        return await self._select("phase = ? AND reported = 0", DONE)

    async def unfinished(self) -> list[Entry]:
        return await self._select("phase IN (?, ?, ?)", *UNFINISHED)

    async def prune(self, older_than_ms: int) -> int:
        """Drop reported outcomes older than the given age; returns how many went."""
        cutoff = _now_ms() - older_than_ms
        return await self._call(
            self._execute,
            "DELETE FROM commands WHERE phase = ? AND reported = 1 AND updated_at < ?",
            DONE,
            cutoff,
        )

    async def _update(self, command_id: str, assignments: str, *values: Any) -> None:
        await self._call(
            self._execute,
            f"UPDATE commands SET {assignments}, updated_at = ? WHERE id = ?",
            *values,
            _now_ms(),
            command_id,
        )

    async def _select(self, where: str, *values: Any) -> list[Entry]:
        def select() -> list[Entry]:
            rows = self._db_or_fail().execute(
                f"SELECT {_COLUMNS} FROM commands WHERE {where} ORDER BY created_at, id", values
            )
            return [_entry(row) for row in rows.fetchall()]

        return await self._call(select, reads_only=True)

    async def _call(
        self, fn: Callable[..., T], *args: Any, check: bool = True, reads_only: bool = False
    ) -> T:
        """Run `fn` on the journal thread; a failure marks the journal failing until a write
        succeeds (reads keep working on a full disk, so they prove nothing)."""

        def guarded() -> T:
            if check:
                self._check_file()
            return fn(*args)

        try:
            value = await asyncio.get_running_loop().run_in_executor(self._executor, guarded)
        except (sqlite3.Error, OSError) as exc:
            self.failing = True
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._trouble.problem(self.last_error, type(exc).__name__)
            raise JournalError(self.last_error) from exc
        if self.failing and not reads_only:
            self.failing = False
            self._trouble.resolved()
        return value

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        db = _connect(self.path)
        db.executescript(_SCHEMA)
        db.execute("PRAGMA user_version = 1")
        self._db = db
        self._file_id = _file_id(self.path)

    def _check_file(self) -> None:
        if self._db is None or self._file_id is None:
            return
        try:
            current: tuple[int, int] | None = _file_id(self.path)
        except FileNotFoundError:
            current = None
        if current == self._file_id:
            return
        if current is not None:
            raise OSError(f"{self.path} was replaced by another file while hostd runs")
        try:
            fresh = self._write_again()
        except (OSError, sqlite3.Error) as exc:
            message = f"{self.path} was deleted while hostd runs; cannot write it again: {exc}"
            raise OSError(message) from exc
        self.failures += 1
        self.last_error = f"{self.path} was deleted while hostd runs; written again"
        log.error(
            "journal %s was deleted while hostd runs; written again from the open database",
            self.path,
        )
        self._db.close()
        self._db = fresh
        self._file_id = _file_id(self.path)

    def _write_again(self) -> sqlite3.Connection:
        """Copy the open database to a new file at the journal's path and open that."""
        assert self._db is not None
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        partial = self.path + ".restoring"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        copy = sqlite3.connect(partial)
        try:
            self._db.backup(copy)
        finally:
            copy.close()
        os.replace(partial, self.path)
        return _connect(self.path)

    def _db_or_fail(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def _execute(self, sql: str, *values: Any) -> int:
        return self._db_or_fail().execute(sql, values).rowcount

    def _get(self, command_id: str) -> Entry | None:
        row = (
            self._db_or_fail()
            .execute(f"SELECT {_COLUMNS} FROM commands WHERE id = ?", (command_id,))
            .fetchone()
        )
        return _entry(row) if row else None
