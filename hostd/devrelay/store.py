"""SQLite persistence of the development relay: orchestrators, commands, workspaces."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

Record = dict[str, Any]

TERMINAL_COMMAND_STATUSES = frozenset({"succeeded", "failed", "timed_out", "rejected", "canceled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orchestrators (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    upgrade TEXT,
    runtime_token TEXT,
    registered_at INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    correlation_id TEXT,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    ttl_ms INTEGER,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_target_status ON commands (target, status);
CREATE TABLE IF NOT EXISTS workspaces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    source_cwd TEXT,
    repo_root TEXT,
    worktree_path TEXT,
    branch TEXT,
    base_ref TEXT,
    base_sha TEXT,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"""

_WORKSPACE_COLUMNS = {
    "sourceCwd": "source_cwd",
    "repoRoot": "repo_root",
    "worktreePath": "worktree_path",
    "branch": "branch",
    "baseRef": "base_ref",
    "baseSha": "base_sha",
}


def agent_id(orchestrator_id: str) -> str:
    return f"orchestrator-{orchestrator_id}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _without_none(record: Record) -> Record:
    return {key: value for key, value in record.items() if value is not None}


class Store:
    """One SQLite connection; every method is a short transaction."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # orchestrators

    def register_orchestrator(self, oid: str, info: Record, now: int) -> Record:
        """Insert or replace the registration; an upgrade in flight survives a re-register."""
        self._db.execute(
            "INSERT INTO orchestrators (id, info, registered_at, last_heartbeat_at)"
            " VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET info = excluded.info,"
            " registered_at = excluded.registered_at,"
            " last_heartbeat_at = excluded.last_heartbeat_at",
            (oid, _dumps(info), now, now),
        )
        return self.get_orchestrator(oid)  # type: ignore[return-value]

    def heartbeat_orchestrator(self, oid: str, fields: Record, now: int) -> Record | None:
        row = self._db.execute("SELECT info FROM orchestrators WHERE id = ?", (oid,)).fetchone()
        if row is None:
            return None
        info = {**json.loads(row["info"]), **fields}
        self._db.execute(
            "UPDATE orchestrators SET info = ?, last_heartbeat_at = ? WHERE id = ?",
            (_dumps(info), now, oid),
        )
        return self.get_orchestrator(oid)

    def get_orchestrator(self, oid: str) -> Record | None:
        row = self._db.execute("SELECT * FROM orchestrators WHERE id = ?", (oid,)).fetchone()
        return None if row is None else self._orchestrator(row)

    def list_orchestrators(self) -> list[Record]:
        rows = self._db.execute("SELECT * FROM orchestrators ORDER BY registered_at, id")
        return [self._orchestrator(row) for row in rows]

    def set_upgrade(self, oid: str, upgrade: Record) -> None:
        self._db.execute(
            "UPDATE orchestrators SET upgrade = ? WHERE id = ?", (_dumps(upgrade), oid)
        )

    def set_runtime_token(self, oid: str, token: str) -> None:
        self._db.execute("UPDATE orchestrators SET runtime_token = ? WHERE id = ?", (token, oid))

    def runtime_token_known(self, token: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM orchestrators WHERE runtime_token = ?", (token,)
        ).fetchone()
        return row is not None

    def forget_orchestrators(self) -> int:
        return self._db.execute("DELETE FROM orchestrators").rowcount

    @staticmethod
    def _orchestrator(row: sqlite3.Row) -> Record:
        record: Record = {
            **json.loads(row["info"]),
            "id": row["id"],
            "agentId": agent_id(row["id"]),
            "registeredAt": row["registered_at"],
            "lastHeartbeatAt": row["last_heartbeat_at"],
        }
        if row["upgrade"] is not None:
            record["upgrade"] = json.loads(row["upgrade"])
        return record

    # commands

    def create_command(
        self,
        type_: str,
        target: str,
        params: Record,
        now: int,
        *,
        source: str = "system",
        correlation_id: str | None = None,
        ttl_ms: int | None = None,
    ) -> Record:
        cid = f"cmd-{uuid.uuid4().hex[:16]}"
        expires_at = now + ttl_ms if ttl_ms is not None else None
        self._db.execute(
            "INSERT INTO commands (id, type, source, target, correlation_id, params, status,"
            " ttl_ms, expires_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (
                cid,
                type_,
                source,
                target,
                correlation_id,
                _dumps(params),
                ttl_ms,
                expires_at,
                now,
                now,
            ),
        )
        return self.get_command(cid)  # type: ignore[return-value]

    def get_command(self, cid: str) -> Record | None:
        row = self._db.execute("SELECT * FROM commands WHERE id = ?", (cid,)).fetchone()
        return None if row is None else self._command(row)

    def list_commands(self, target: str | None, status: str | None, limit: int) -> list[Record]:
        clauses, args = [], []
        if target is not None:
            clauses.append("target = ?")
            args.append(target)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT * FROM commands {where} ORDER BY seq LIMIT ?", (*args, limit)
        )
        return [self._command(row) for row in rows]

    def update_command(
        self,
        cid: str,
        status: str,
        now: int,
        result: Record | None = None,
        error: str | None = None,
    ) -> Record | None:
        """Set status, and result/error when given (earlier values are kept otherwise)."""
        self._db.execute(
            "UPDATE commands SET status = ?, result = COALESCE(?, result),"
            " error = COALESCE(?, error), updated_at = ? WHERE id = ?",
            (status, None if result is None else _dumps(result), error, now, cid),
        )
        return self.get_command(cid)

    def expire_commands(self, now: int) -> int:
        return self._db.execute(
            "UPDATE commands SET status = 'timed_out', error = 'command ttl expired',"
            " updated_at = ? WHERE status = 'pending' AND expires_at IS NOT NULL"
            " AND expires_at <= ?",
            (now, now),
        ).rowcount

    @staticmethod
    def _command(row: sqlite3.Row) -> Record:
        return _without_none(
            {
                "id": row["id"],
                "type": row["type"],
                "source": row["source"],
                "target": row["target"],
                "correlationId": row["correlation_id"],
                "params": json.loads(row["params"]),
                "status": row["status"],
                "result": _loads(row["result"]),
                "error": row["error"],
                "ttlMs": row["ttl_ms"],
                "expiresAt": row["expires_at"],
                "createdAt": row["created_at"],
                "updatedAt": row["updated_at"],
            }
        )

    # workspaces

    def create_workspace(self, record: Record, now: int) -> Record:
        """`record` holds id, mode, status, metadata and the camelCase path fields."""
        columns = {_WORKSPACE_COLUMNS[key]: record.get(key) for key in _WORKSPACE_COLUMNS}
        self._db.execute(
            f"INSERT INTO workspaces (id, mode, status, metadata, created_at, updated_at,"
            f" {', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?{', ?' * len(columns)})",
            (
                record["id"],
                record["mode"],
                record["status"],
                _dumps(record["metadata"]),
                now,
                now,
                *columns.values(),
            ),
        )
        return self.get_workspace(record["id"])  # type: ignore[return-value]

    def get_workspace(self, wid: str) -> Record | None:
        row = self._db.execute("SELECT * FROM workspaces WHERE id = ?", (wid,)).fetchone()
        return None if row is None else self._workspace(row)

    def list_workspaces(self) -> list[Record]:
        return [
            self._workspace(row)
            for row in self._db.execute("SELECT * FROM workspaces ORDER BY seq")
        ]

    def update_workspace_status(
        self, wid: str, status: str, metadata: Record, now: int
    ) -> Record | None:
        """Set the status and merge `metadata` into the workspace's metadata."""
        current = self.get_workspace(wid)
        if current is None:
            return None
        merged = {**current["metadata"], **metadata}
        self._db.execute(
            "UPDATE workspaces SET status = ?, metadata = ?, updated_at = ? WHERE id = ?",
            (status, _dumps(merged), now, wid),
        )
        return self.get_workspace(wid)

    def delete_workspace(self, wid: str) -> bool:
        return self._db.execute("DELETE FROM workspaces WHERE id = ?", (wid,)).rowcount > 0

    @staticmethod
    def _workspace(row: sqlite3.Row) -> Record:
        record: Record = {"id": row["id"], "mode": row["mode"], "status": row["status"]}
        for key, column in _WORKSPACE_COLUMNS.items():
            record[key] = row[column]
        record.update(
            metadata=json.loads(row["metadata"]),
            createdAt=row["created_at"],
            updatedAt=row["updated_at"],
        )
        return _without_none(record)
