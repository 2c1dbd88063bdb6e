"""`gateLevel`: which declaration judges a land, and the `gateSkipped` record of a weaker one.

`full` (default) reads the gates of the base commit the replay was built on, `subset` the
candidate's own file, `none` runs nothing. A level other than `full` is recorded with the
`gateReason` and the `requestedBy` of the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostd.commands.params import ParamError

LEVELS = ("full", "subset", "none")
MAX_REASON_CHARS = 500
MAX_BY_CHARS = 200


class GateParamError(ParamError):
    """A gate param the merge cannot act on; the message names it."""


@dataclass(frozen=True)
class GateLevel:
    level: str = "full"
    reason: str | None = None
    by: str | None = None

    @classmethod
    def parse(cls, params: dict[str, Any]) -> GateLevel:
        level = params.get("gateLevel")
        if level is None:
            level = "full"
        if level not in LEVELS:
            raise GateParamError(f"gateLevel: expected full, subset or none, got {level!r}")
        reason = _text(params, "gateReason", MAX_REASON_CHARS)
        return cls(level, reason, _text(params, "requestedBy", MAX_BY_CHARS))

    def declaring_commit(self, base_sha: str, candidate_sha: str) -> str | None:
        """The commit whose `.agent-relay/land-gates.json` applies; None: no gates."""
        return {"full": base_sha, "subset": candidate_sha}.get(self.level)

    def skipped(self) -> dict[str, Any] | None:
        """The `gateSkipped` result field; None at `full`."""
        if self.level == "full":
            return None
        record: dict[str, Any] = {"level": self.level}
        if self.reason:
            record["reason"] = self.reason
        if self.by:
            record["by"] = self.by
        return record


def _text(params: dict[str, Any], key: str, limit: int) -> str | None:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.replace("\0", "")[:limit]
