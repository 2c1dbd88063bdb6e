"""The upgrade record, `<state_dir>/upgrade.json`: the last upgrade and the cool-downs.

Phases: `installing` → `trial` → `ok`, or `failed` (nothing switched) or `rolled-back`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hostd.upgrade.layout import write_atomic

RECORD_FILE = "upgrade.json"
INSTALLING, TRIAL, OK, FAILED, ROLLED_BACK = "installing", "trial", "ok", "failed", "rolled-back"
IN_PROGRESS = (INSTALLING, TRIAL)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Record:
    command_id: str = ""
    phase: str = ""
    to: str = ""
    previous: str = ""
    attempts: int = 0
    deadline: int = 0
    reason: str = ""
    reported: bool = False
    at: int = 0
    cooldowns: dict[str, int] = field(default_factory=dict)
    """Rolled-back targets and the epoch-ms time until which they are refused."""

    @property
    def in_progress(self) -> bool:
        return self.phase in IN_PROGRESS

    def cooldown_until(self, version: str) -> int | None:
        until = self.cooldowns.get(version)
        return until if until is not None and until > now_ms() else None

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        return {_JSON_NAMES.get(name, name): value for name, value in body.items()}


_JSON_NAMES = {"command_id": "commandId", "previous": "from"}


def record_path(state_dir: str) -> Path:
    return Path(state_dir) / RECORD_FILE


def load(state_dir: str) -> Record:
    """The record, or an empty one when there is none or it cannot be read."""
    try:
        raw = json.loads(record_path(state_dir).read_text())
    except (OSError, ValueError):
        return Record()
    if not isinstance(raw, dict):
        return Record()
    names = {json_name: name for name, json_name in _JSON_NAMES.items()}
    known = {f.name for f in fields(Record)}
    values = {names.get(k, k): v for k, v in raw.items()}
    record = Record(**{k: v for k, v in values.items() if k in known})
    if not isinstance(record.cooldowns, dict):
        record.cooldowns = {}
    return record


def save(state_dir: str, record: Record) -> None:
    record.at = now_ms()
    expired = [v for v, until in record.cooldowns.items() if until <= record.at]
    for version in expired:
        del record.cooldowns[version]
    write_atomic(record_path(state_dir), json.dumps(record.as_json(), indent=2) + "\n")
