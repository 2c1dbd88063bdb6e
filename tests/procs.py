"""Helpers for tests that run hostd as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def hostd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hostd", *args]


def run_hostd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hostd_command(*args),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def http_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def health_or_none(base_url: str) -> dict[str, Any] | None:
    try:
        return http_json(f"{base_url}/api/health")[1]
    except (OSError, ValueError):
        return None


def start_daemon(
    config_path: Path, env: dict[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    log = open(log_path or config_path.with_suffix(".log"), "wb")  # noqa: SIM115
    return subprocess.Popen(
        hostd_command("run", "--config", str(config_path)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def session_processes(session_id: int) -> list[str]:
    """Live (not zombie) processes of a session, as `pid command` lines."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == session_id and state != "Z":
            shown = command.replace(b"\0", b" ").decode(errors="replace")[:160]
            found.append(f"{entry} {shown}")
    return found


def read_until(stream: IO[str] | None, marker: str) -> str:
    """Lines of a child's output up to and including the first one holding `marker`."""
    assert stream is not None
    lines = []
    for line in stream:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"output ended before {marker!r}:\n" + "".join(lines))
