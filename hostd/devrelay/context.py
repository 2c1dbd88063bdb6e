"""Settings, application keys and the clock shared by the development relay's modules."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import ClientSession, web

from hostd.devrelay.faults import Faults
from hostd.devrelay.requestlog import RequestLog
from hostd.devrelay.store import Store


@dataclass(frozen=True)
class RelaySettings:
    """Tunables of the development relay; the defaults match the real relay."""

    stale_ms: int = 90_000
    upgrade_deadline_ms: int = 5 * 60_000
    host_timeout_s: float = 10.0
    request_log_size: int = 1000
    runtime_tokens: bool = False


STORE = web.AppKey("store", Store)
TOKEN: web.AppKey[str | None] = web.AppKey("token")
SETTINGS = web.AppKey("settings", RelaySettings)
FAULTS = web.AppKey("faults", Faults)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
HTTP = web.AppKey("http", ClientSession)


def now_ms() -> int:
    return int(time.time() * 1000)
