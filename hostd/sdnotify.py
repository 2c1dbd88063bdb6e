"""systemd's notify protocol: datagrams to $NOTIFY_SOCKET (path or abstract `@name`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("hostd.sdnotify")


class Notifier:
    """Sends `READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`; a no-op outside systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            self._address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self._address = path
        self._socket: socket.socket | None = None
        self._watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between `WATCHDOG=1` pings (half the timeout systemd set), or None."""
        if not self.enabled or not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, *assignments: str) -> bool:
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", assignments, exc)
            return False
        return True

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    async def run_watchdog(self) -> None:
        """Ping from the event loop, so a blocked loop lets systemd's watchdog fire."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("NOTIFY_SOCKET") or env.get("INVOCATION_ID"))
