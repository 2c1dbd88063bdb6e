"""What `/api/health` reports about the relay link; the daemon's relay parts update it."""

from __future__ import annotations

from typing import Any, Protocol


class LinkStatus(Protocol):
    def health(self) -> dict[str, Any]:
        """`{degraded, relay, registration, commandLoop}` as `/api/health` shows them."""
        ...


class NoRelay:
    """The link status of a hostd that has no relay configured."""

    def health(self) -> dict[str, Any]:
        return {
            "degraded": False,
            "relay": {
                "connected": False,
                "degraded": False,
                "consecutiveHeartbeatFailures": 0,
                "linkRestarts": 0,
            },
            "registration": {"registered": False, "degraded": False, "consecutiveFailures": 0},
            "commandLoop": {"inFlight": 0, "running": [], "stalled": False},
        }
