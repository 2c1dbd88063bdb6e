"""hostd's HTTP server under thousands of idle (slowloris) connections.

    .venv/bin/python benchmarks/connections.py [--connections N] [--nofile N] [--quick]

Starts hostd (no relay) as a subprocess, opens N connections that each send part of a request
head and then nothing, and meanwhile asks `/api/health` on fresh connections. Prints one table:
how long health took while the idle connections were held, how many of them the daemon kept
open at most, how long until it had closed them all, its peak descriptors and RSS, and its log
volume. Exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if not all(importlib.util.find_spec(m) for m in ("hostd", "psutil")) and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import psutil  # noqa: E402

PARTIAL_HEAD = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n"
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def health_ms(port: int) -> float | None:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.write(HEALTH)
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    except (OSError, TimeoutError):
        return None
    return (time.perf_counter() - started) * 1000 if data.startswith(b"HTTP/1.1 200") else None


async def hold(port: int, closed: list[float]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PARTIAL_HEAD)
        await reader.read()
        writer.close()
    except OSError:
        pass
    closed.append(time.monotonic())


def p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def connections_of(proc: psutil.Process) -> int:
    return sum(1 for c in proc.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)


async def measure(port: int, proc: psutil.Process, count: int) -> dict[str, str]:
    closed: list[float] = []
    started = time.monotonic()
    holders = [asyncio.create_task(hold(port, closed)) for _ in range(count)]
    samples: list[float | None] = []
    peak = {"conns": 0, "fds": 0, "rss": 0}
    while len(closed) < count and time.monotonic() - started < 120:
        samples.append(await health_ms(port))
        peak["conns"] = max(peak["conns"], connections_of(proc))
        peak["fds"] = max(peak["fds"], proc.num_fds())
        peak["rss"] = max(peak["rss"], proc.memory_info().rss)
        await asyncio.sleep(0.05)
    for task in holders:
        task.cancel()
    answered = sorted(s for s in samples if s is not None)
    return {
        "health answered / asked": f"{len(answered)} / {len(samples)}",
        "health median / p95 / max while held": " / ".join(
            f"{v:.1f} ms" for v in (statistics.median(answered), p95(answered), answered[-1])
        )
        if answered
        else "-",
        "idle connections held at most": str(peak["conns"]),
        "all idle connections closed after": f"{max(closed) - started:.1f} s" if closed else "-",
        "peak descriptors": str(peak["fds"]),
        "peak RSS": f"{peak['rss'] / 2**20:.0f} MB",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--nofile", type=int, default=1024, help="the daemon's RLIMIT_NOFILE")
    parser.add_argument("--quick", action="store_true", help="200 connections")
    args = parser.parse_args()
    count = 200 if args.quick else args.connections
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="hostd-conns-") as tmp:
        port = free_port()
        config = Path(tmp) / "hostd.yaml"
        config.write_text(
            f"base_dir: {tmp}\nstate_dir: {tmp}/state\napi:\n  listen: 127.0.0.1:{port}\n"
        )
        log_path = Path(tmp) / "hostd.log"
        nofile = args.nofile
        with open(log_path, "wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "hostd", "run", "--config", str(config)],
                stderr=log,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
            )
        try:
            while asyncio.run(health_ms(port)) is None:
                time.sleep(0.1)
            rows = asyncio.run(measure(port, psutil.Process(daemon.pid), count))
        finally:
            daemon.terminate()
            daemon.wait(30)
        text = log_path.read_text(errors="replace")
        rows["log lines (bytes)"] = f"{text.count(chr(10))} ({len(text)})"
        rows["tracebacks in the log"] = str(text.count("Traceback"))
    print(f"| {count} idle connections, RLIMIT_NOFILE {nofile} | |\n| --- | --- |")
    for name, value in rows.items():
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
