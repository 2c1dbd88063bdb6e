"""hostd's relay link: command pick-up latency, idle CPU and RSS, idle requests per hour.

    .venv/bin/python benchmarks/relay_idle.py [--samples N] [--idle-seconds S] [--quick]

Runs the development relay and hostd as subprocesses on loopback. Pick-up latency is measured on
the relay's clock, from the request that queues a command to hostd's `accepted` PATCH, with the
command queued at a random moment of the poll cycle. Prints one table; exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if not all(importlib.util.find_spec(m) for m in ("hostd", "psutil")) and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import psutil  # noqa: E402

POLL_INTERVALS = (3.0, 0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as res:
        return json.loads(res.read())


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"benchmark: {what} did not happen within {timeout}s")


def start_hostd(work: Path, relay: str, poll: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = work / "base"
    base.mkdir(exist_ok=True)
    config = work / f"hostd-{poll}.yaml"
    config.write_text(
        json.dumps(
            {
                "id": "bench",
                "base_dir": str(base),
                "state_dir": str(work / f"state-{poll}"),
                "api": {"listen": f"127.0.0.1:{port}"},
                "relay": {"url": relay, "poll_interval": f"{poll}s"},
                "log": {"level": "warning"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID")}
    env["HOSTD_TEST_HANDLERS"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostd", "run", "--config", str(config)],
        env=env,
        stderr=open(work / f"hostd-{poll}.log", "wb"),  # noqa: SIM115
    )
    api = f"http://127.0.0.1:{port}"
    wait_for(lambda: call(api + "/api/health")["registration"]["registered"], 20, "registration")
    return proc, api


def pickup_latencies(relay: str, work: Path, poll: float, samples: int) -> list[float]:
    latencies = []
    for _ in range(samples):
        time.sleep(random.uniform(0, poll))
        command = call(
            relay + "/api/commands",
            "POST",
            {
                "type": "hostd.test.counter",
                "target": "orchestrator-bench",
                "params": {"file": str(work / "count")},
            },
        )
        cid = command["id"]

        def accepted(cid: str = cid) -> dict[str, Any] | None:
            entries = call(f"{relay}/api/_dev/requests?method=PATCH&path=/api/commands/{cid}")
            hits = [e for e in entries["requests"] if e.get("json", {}).get("status") == "accepted"]
            return hits[0] if hits else None

        patch = wait_for(accepted, poll + 10, "accepted PATCH")
        latencies.append((patch["time"] - command["createdAt"]) / 1000)
    return latencies


def idle_profile(relay: str, pid: int, seconds: float) -> dict[str, float]:
    proc = psutil.Process(pid)
    before = call(relay + "/api/_dev/requests")["lastSeq"]
    cpu0, wall0 = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = sum(proc.cpu_times()[:2]), time.monotonic()
    after = call(relay + "/api/_dev/requests")["lastSeq"]
    elapsed = wall1 - wall0
    return {
        "cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
        "rss_mb": proc.memory_info().rss / 2**20,
        "requests_per_hour": (after - before) * 3600 / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="pick-ups per poll interval")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="3 samples, 10 s idle")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.idle_seconds = 3, 10.0
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hostd-relay-bench-") as tmp:
        work = Path(tmp)
        relay_port = free_port()
        relay = f"http://127.0.0.1:{relay_port}"
        relay_proc = subprocess.Popen(
            [sys.executable, "-m", "hostd", "dev-relay", "--listen", f"127.0.0.1:{relay_port}"],
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: call(relay + "/api/_dev/faults"), 20, "dev relay")
            for poll in POLL_INTERVALS:
                proc, _ = start_hostd(work, relay, poll)
                try:
                    idle = idle_profile(relay, proc.pid, args.idle_seconds)
                    lat = pickup_latencies(relay, work, poll, args.samples)
                finally:
                    proc.terminate()
                    proc.wait(30)
                label = f"poll {poll:g}s, heartbeat 30s"
                rows.append(
                    (
                        f"pick-up latency ({label}) median / max",
                        f"{statistics.median(lat) * 1000:.0f} ms / {max(lat) * 1000:.0f} ms",
                    )
                )
                rows.append((f"idle CPU ({label})", f"{idle['cpu_percent']:.2f} %"))
                rows.append((f"idle RSS ({label})", f"{idle['rss_mb']:.1f} MB"))
                rows.append(
                    (f"idle requests/hour to relay ({label})", f"{idle['requests_per_hour']:.0f}")
                )
        finally:
            relay_proc.terminate()
            relay_proc.wait(30)
    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement':<{width}} | value |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
