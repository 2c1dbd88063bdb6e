"""The relay dashboard's load on hostd: many worktrees asked for their state every few seconds.

    .venv/bin/python benchmarks/dashboard.py [--quick] [--rounds N] [--requests N]

Prints one table with the targets next to the measurements and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if not all(importlib.util.find_spec(m) for m in ("hostd", "psutil")) and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import psutil  # noqa: E402
from genrepo import Spec, ensure_repo  # noqa: E402
from run import (  # noqa: E402
    ENDPOINTS,
    Client,
    Daemon,
    bench_env,
    check,
    edit_tracked_file,
    format_table,
    percentile,
    query_url,
)

CONCURRENCY = 8
# The dashboard's repository: 2 000 files, 200 worktrees, each round every worktree once.
DASHBOARD = Spec(files=2_000, dirs=20, commits=200, worktrees=200)
# The benchmark repository of run.py: 20 000 files, 20 worktrees, 40 requests a second.
BENCHMARK = Spec()


@dataclass
class Load:
    name: str
    spec: Spec
    period: float  # seconds between the starts of two rounds
    per_round: int  # state requests a round, over the worktrees in turn
    change_every: int  # one worktree edited every this many rounds


@dataclass
class Measured:
    latencies: list[float]
    cpu_share: float  # of one core, the whole process tree, exited workers included
    seconds: float


def tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of a process and all its descendants, living and reaped."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_memory(root: psutil.Process) -> tuple[float, float]:
    """RSS and PSS (MB) summed over a process and its descendants."""
    rss = pss = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
    return rss / 2**20, pss / 2**20


class Clients:
    """CONCURRENCY keep-alive connections, one per thread, sending a list of URLs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(CONCURRENCY)
        self.errors: Counter[str] = Counter()

    def _get(self, url: str) -> float:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = Client(self.port)
        seconds, status, body = client.get(url)
        check(self.errors, url.split("?")[0], status, body)
        return seconds

    def send(self, urls: list[str]) -> list[float]:
        return list(self.pool.map(self._get, urls))

    def close(self) -> None:
        self.pool.shutdown()


def run_load(
    daemon: Daemon, clients: Clients, load: Load, trees: list[Path], rounds: int
) -> Measured:
    urls = [query_url("state", tree) for tree in trees]
    clients.send(urls)  # every answer known once before measuring
    latencies: list[float] = []
    started, cpu_before = time.monotonic(), tree_cpu(daemon.ps)
    for r in range(rounds):
        due = started + r * load.period
        time.sleep(max(0.0, due - time.monotonic()))
        if r % load.change_every == 0:
            edit_tracked_file(trees[(r // load.change_every) % len(trees)])
        first = r * load.per_round
        latencies += clients.send([urls[(first + k) % len(urls)] for k in range(load.per_round)])
    time.sleep(max(0.0, started + rounds * load.period - time.monotonic()))
    seconds = time.monotonic() - started
    return Measured(latencies, (tree_cpu(daemon.ps) - cpu_before) / seconds, seconds)


def mixed_requests(clients: Clients, trees: list[Path], n: int, start: int = 0) -> None:
    """`n` requests of every endpoint over the worktrees, one worktree edited every 200;
    `start`: where in that sequence to begin."""
    names = list(ENDPOINTS)
    batch = 200
    for first in range(start, start + n, batch):
        edit_tracked_file(trees[(first // batch) % len(trees)])
        count = min(batch, start + n - first)
        clients.send(
            [
                query_url(names[i % len(names)], trees[(i // len(names)) % len(trees)])
                for i in range(first, first + count)
            ]
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small repositories, few rounds")
    parser.add_argument("--rounds", type=int, help="rounds of each load (default 12, quick 2)")
    parser.add_argument(
        "--requests", type=int, help="mixed requests for the memory check (default 20 000)"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 12)
    args.requests = args.requests or (400 if args.quick else 20_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = bench_env(args.workdir)
    quick = {"files": 200, "dirs": 10, "commits": 40}
    dashboard_spec = Spec(**quick, worktrees=20) if args.quick else DASHBOARD
    benchmark_spec = Spec(**quick, worktrees=5) if args.quick else BENCHMARK
    loads = [
        Load("dashboard", dashboard_spec, 5.0, dashboard_spec.worktrees, 1),
        Load("benchmark repository", benchmark_spec, 1.0, 40, 5),
    ]
    header = ("measurement", "hostd", "target", "met")
    rows: list[tuple[str, ...]] = []
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    for load in loads:
        layout, _ = ensure_repo(args.workdir, load.spec, env)
        daemon = Daemon(args.workdir, env)
        clients = Clients(daemon.port)
        try:
            daemon.wait_healthy()
            m = run_load(daemon, clients, load, layout.worktrees, args.rounds)
            rows += load_rows(load, m)
            if load is loads[0]:
                rows += memory_rows(daemon, clients, layout.worktrees, args.requests)
            errors += clients.errors
        finally:
            clients.close()
            daemon.stop()
    print(
        f"hostd dashboard benchmark: {CONCURRENCY} requests in flight; CPU of hostd's whole "
        f"process tree (exited git workers included) per second of wall time\n"
        f"dashboard: {dashboard_spec.files} files, {dashboard_spec.worktrees} worktrees, state "
        f"of every worktree every 5 s, one edited per round; benchmark repository: "
        f"{benchmark_spec.files} files, {benchmark_spec.worktrees} worktrees, 40 state "
        f"requests a second, one worktree edited every 5 s\n"
    )
    print(format_table(header, rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if errors:
        print("hostd answered with errors:")
        for message, count in errors.most_common(10):
            print(f"  {count} x {message}")
    return 0


def load_rows(load: Load, m: Measured) -> list[tuple[str, ...]]:
    p99 = percentile(m.latencies, 0.99)
    what = f"{load.name}, {len(m.latencies)} requests in {m.seconds:.0f} s"
    return [
        (f"{what}: CPU", f"{m.cpu_share:.1%} of a core", "< 20 %", met(m.cpu_share < 0.2)),
        (
            f"{what}: median / p99",
            f"{statistics.median(m.latencies) * 1000:.1f} / {p99 * 1000:.1f} ms",
            "p99 < 50 ms" if load.name == "dashboard" else "",
            met(p99 < 0.05) if load.name == "dashboard" else "",
        ),
    ]


def memory_rows(
    daemon: Daemon, clients: Clients, trees: list[Path], n: int
) -> list[tuple[str, ...]]:
    # Every worktree asked every endpoint twice first: the caches fill in the first passes.
    warm = max(n // 10, 2 * len(ENDPOINTS) * len(trees))
    mixed_requests(clients, trees, warm)
    rss_before, pss_before = tree_memory(daemon.ps)
    own_before = daemon.ps.memory_info().rss / 2**20
    pids_before = {p.pid for p in daemon.ps.children(recursive=True)}
    quarter = max(200, -(-n // 4 // 200) * 200)
    rss = [rss_before]
    pss_after = pss_before
    for start in range(0, n, quarter):
        mixed_requests(clients, trees, min(quarter, n - start), start)
        rss_now, pss_after = tree_memory(daemon.ps)
        rss.append(rss_now)
    rss_after = rss[-1]
    own_after = daemon.ps.memory_info().rss / 2**20
    replaced = len(pids_before - {p.pid for p in daemon.ps.children(recursive=True)})
    # The first half shows the caches filling to their bounds; growth after that is a leak.
    mid = (len(rss) - 1) // 2
    half = min(mid * quarter, n)
    first_half, last_half = rss[mid] - rss_before, rss_after - rss[mid]
    series = " / ".join(f"{r - rss_before:+.1f}" for r in rss[1:])
    return [
        (
            f"whole tree RSS (PSS) with {len(trees)} worktrees, after {warm} mixed requests",
            f"{rss_before:.0f} ({pss_before:.0f}) MB",
            "< 400 MB",
            met(rss_before < 400),
        ),
        (
            f"… after {n} more (processes replaced meanwhile: {replaced})",
            f"{rss_after:.0f} ({pss_after:.0f}) MB",
            "< 400 MB",
            met(rss_after < 400),
        ),
        (f"growth over the first {half} (caches filling)", f"{first_half:+.1f} MB", "", ""),
        (
            f"growth over the last {n - half} mixed requests",
            f"{last_half:+.1f} MB",
            "none (< 2 MB)",
            met(last_half < 2),
        ),
        (f"growth after each {quarter} of them", series + " MB", "", ""),
        ("of which the daemon, before / after", f"{own_before:.0f} / {own_after:.0f} MB", "", ""),
    ]


def met(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    sys.exit(main())
