"""Benchmark hostd against the git CLI on a generated repository with agent worktrees.

    .venv/bin/python benchmarks/run.py [--quick] [--files N --dirs N --commits N --worktrees N]
                                       [--requests N --mixed N --workdir DIR]

Prints one table with the targets next to the measurements and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import importlib.util
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if not all(importlib.util.find_spec(m) for m in ("hostd", "psutil")) and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import psutil  # noqa: E402
from genrepo import Layout, Spec, ensure_repo  # noqa: E402

BASE = "main"
HEAVY_CONCURRENCY = 8
FULL = {"files": 20_000, "dirs": 200, "commits": 2_000, "worktrees": 20, "requests": 40}
FULL |= {"mixed": 1_000, "health_samples": 300}
QUICK = {"files": 2_000, "dirs": 200, "commits": 200, "worktrees": 5, "requests": 10}
QUICK |= {"mixed": 200, "health_samples": 100}
EDIT_LINE = b"edited by the benchmark\n"
RSS_GROWTH_LIMIT_MB = 2.0  # below this, growth is allocator noise rather than a leak
ENDPOINTS = {
    "probe": "/api/workspace/probe",
    "state": "/api/workspace/state",
    "diff": "/api/workspace/diff",
    "merge-preview": "/api/workspace/merge-preview",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    for name in FULL:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, help=f"default {FULL[name]}, {QUICK[name]} quick")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep-status",
        choices=("on", "off"),
        default="on",
        help="workspaces.keep_status of the daemon (off: every query counts the status afresh)",
    )
    parser.add_argument(
        "--edit",
        action="store_true",
        help="edit a tracked file of the worktree before every request, hostd's and git's",
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def bench_env(workdir: Path) -> dict[str, str]:
    """A private HOME and no system git config, for git and hostd alike; no relay."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "HOSTD_", "AGENT_RELAY_"))
    }
    return env | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
        "TZ": "UTC",
    }


# --- the git CLI baseline: the command sequences the earlier host ran per request ---


def git_sequence(name: str, tree: Path, env: dict[str, str]) -> None:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=tree, env=env, capture_output=True, check=False)
        return proc.stdout.decode(errors="replace")

    def state() -> None:
        git("status", "--porcelain")
        git("symbolic-ref", "-q", "--short", "HEAD")
        git("log", "-1", "--format=%H%x00%s%x00%ct")
        git("rev-parse", "--verify", BASE)
        git("rev-list", "--left-right", "--count", f"{BASE}...HEAD")
        git("cherry", BASE, "HEAD")

    if name == "probe":
        git("rev-parse", "--show-toplevel")
        git("symbolic-ref", "-q", "--short", "HEAD")
        git("rev-parse", "HEAD")
        git("status", "--porcelain")
        git("worktree", "list", "--porcelain")
    elif name == "state":
        state()
    elif name == "diff":
        git("status", "--porcelain")
        git("rev-list", "--count", f"{BASE}..HEAD")
        merge_base = git("merge-base", BASE, "HEAD").strip()
        git("diff", "--numstat", merge_base, "HEAD")
        git("diff", merge_base, "HEAD")
    else:
        state()
        git("remote", "get-url", "origin")
        git("merge-tree", "--write-tree", BASE, "HEAD")


# --- hostd over HTTP ---


class Client:
    """One persistent keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, url: str) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        self.conn.request("GET", url)
        resp = self.conn.getresponse()
        body = resp.read()
        return time.perf_counter() - started, resp.status, body

    def close(self) -> None:
        self.conn.close()


def query_url(endpoint: str, tree: Path) -> str:
    params = {"path": str(tree)} | ({} if endpoint == "probe" else {"baseRef": BASE})
    return f"{ENDPOINTS[endpoint]}?{urlencode(params)}"


class Daemon:
    def __init__(self, workdir: Path, env: dict[str, str], keep_status: bool = True) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = workdir / "hostd.yaml"
        config.write_text(
            f"base_dir: {json.dumps(str(workdir))}\n"
            f"state_dir: {json.dumps(str(workdir / 'state'))}\n"
            f"api:\n  listen: 127.0.0.1:{self.port}\n  request_timeout: 60s\n"
            "log:\n  level: warning\n"
            "workspaces:\n  fetch_interval: 0s\n"
            f"  keep_status: {'true' if keep_status else 'false'}\n"
        )
        self.log = workdir / "hostd.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hostd", "run", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.ps = psutil.Process(self.proc.pid)

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                client = Client(self.port)
                _, status, _ = client.get("/api/health")
                if status == 200:
                    version = json.loads(client.get("/api/version")[2])
                    client.close()
                    return version
            except OSError:
                pass
            time.sleep(0.05)
        log = self.log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"hostd did not become healthy within {timeout:.0f}s:\n{log}")

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def workers_rss_mb(self) -> float:
        """The git worker processes (and the fork server) together."""
        total = 0
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Results:
    hostd: dict[str, list[float]]
    git: dict[str, list[float]]
    health: list[float]
    heavy_done: int
    rss_idle: float
    rss_warm: float
    rss_after: float
    workers_warm: float
    workers_after: float
    errors: Counter[str]
    version: dict[str, str]


def check(errors: Counter[str], endpoint: str, status: int, body: bytes) -> None:
    if status != 200:
        errors[f"{endpoint}: HTTP {status}"] += 1
    elif (message := json.loads(body).get("error")) is not None:
        errors[f"{endpoint}: {message}"] += 1


def measure(
    client: Client,
    endpoint: str,
    trees: list[Path],
    n: int,
    env: dict[str, str],
    errors: Counter[str],
    edit: bool = False,
) -> tuple[list[float], list[float]]:
    """hostd and git latencies, alternating so both see the same background load."""
    urls = [query_url(endpoint, tree) for tree in trees]
    for url, tree in zip(urls, trees, strict=True):  # warm-up, one each per worktree
        client.get(url)
        git_sequence(endpoint, tree, env)
    mine, theirs = [], []
    for i in range(n):
        tree = trees[i % len(trees)]
        if edit:
            edit_tracked_file(tree)
        seconds, status, body = client.get(urls[i % len(urls)])
        mine.append(seconds)
        check(errors, endpoint, status, body)
        if edit:
            edit_tracked_file(tree)
        started = time.perf_counter()
        git_sequence(endpoint, tree, env)
        theirs.append(time.perf_counter() - started)
    return mine, theirs


@functools.cache
def tracked_text_file(tree: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "*.txt"], cwd=tree, capture_output=True, text=True)
    return tree / next(p for p in listed.stdout.splitlines() if (tree / p).is_file())


def edit_tracked_file(tree: Path) -> None:
    """Append a line to, or take it back from, a tracked text file of the worktree."""
    target = tracked_text_file(tree)
    data = target.read_bytes()
    target.write_bytes(data[: -len(EDIT_LINE)] if data.endswith(EDIT_LINE) else data + EDIT_LINE)


def health_under_load(port: int, heavy_url: str, samples: int) -> tuple[list[float], int]:
    """/api/health latencies while HEAVY_CONCURRENCY clients keep requesting `heavy_url`."""
    stop = threading.Event()
    done = [0] * HEAVY_CONCURRENCY

    def load(k: int) -> None:
        client = Client(port)
        while not stop.is_set():
            client.get(heavy_url)
            done[k] += 1
        client.close()

    threads = [threading.Thread(target=load, args=(k,)) for k in range(HEAVY_CONCURRENCY)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    client = Client(port)
    latencies = []
    try:
        for _ in range(samples):
            latencies.append(client.get("/api/health")[0])
            time.sleep(0.005)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        client.close()
    return latencies, sum(done)


def run_benchmark(args: argparse.Namespace, layout: Layout, env: dict[str, str]) -> Results:
    workdir: Path = args.workdir
    daemon = Daemon(workdir, env, keep_status=args.keep_status == "on")
    try:
        version = daemon.wait_healthy()
        time.sleep(1.0)
        rss_idle = daemon.rss_mb()
        client = Client(daemon.port)
        errors: Counter[str] = Counter()
        hostd_samples, git_samples = {}, {}
        for endpoint in ENDPOINTS:
            hostd_samples[endpoint], git_samples[endpoint] = measure(
                client, endpoint, layout.worktrees, args.requests, env, errors, args.edit
            )
        heavy = query_url("diff", layout.largest)
        health, heavy_done = health_under_load(daemon.port, heavy, args.health_samples)
        rss_warm, workers_warm = daemon.rss_mb(), daemon.workers_rss_mb()
        names = list(ENDPOINTS)
        for i in range(args.mixed):
            endpoint = names[i % len(names)]
            tree = layout.worktrees[(i // len(names)) % len(layout.worktrees)]
            _, status, body = client.get(query_url(endpoint, tree))
            check(errors, endpoint, status, body)
        rss_after, workers_after = daemon.rss_mb(), daemon.workers_rss_mb()
        client.close()
    finally:
        daemon.stop()
    return Results(
        hostd_samples,
        git_samples,
        health,
        heavy_done,
        rss_idle,
        rss_warm,
        rss_after,
        workers_warm,
        workers_after,
        errors,
        {k: str(version.get(k)) for k in ("version", "pygit2", "libgit2")},
    )


def render_table(args: argparse.Namespace, r: Results) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    header = ("measurement", "hostd", "git CLI", "hostd/git", "target", "met")
    rows: list[tuple[str, ...]] = []
    for endpoint in ENDPOINTS:
        mine, theirs = r.hostd[endpoint], r.git[endpoint]
        ratio = statistics.median(mine) / statistics.median(theirs)
        rows.append(
            (
                f"{endpoint} median (p95), {len(mine)} requests",
                f"{ms(statistics.median(mine))} ({ms(percentile(mine, 0.95))})",
                ms(statistics.median(theirs)),
                f"{ratio:.2f}",
                "≤ 1.0",
                met(ratio <= 1.0),
            )
        )
    p99 = percentile(r.health, 0.99)
    growth = r.rss_after - r.rss_warm
    rows += [
        (
            f"health p99 under {HEAVY_CONCURRENCY} heavy diffs, {len(r.health)} samples",
            ms(p99),
            "",
            "",
            "< 25 ms",
            met(p99 < 0.025),
        ),
        ("RSS idle after start", f"{r.rss_idle:.1f} MB", "", "", "< 80 MB", met(r.rss_idle < 80)),
        ("RSS before the mixed requests", f"{r.rss_warm:.1f} MB", "", "", "", ""),
        (f"RSS after {args.mixed} mixed requests", f"{r.rss_after:.1f} MB", "", "", "", ""),
        (
            "git workers' RSS before / after the mixed requests",
            f"{r.workers_warm:.0f} / {r.workers_after:.0f} MB",
            "",
            "",
            "",
            "",
        ),
        (
            f"RSS growth over {args.mixed} mixed requests",
            f"{growth:+.1f} MB",
            "",
            "",
            f"none (< {RSS_GROWTH_LIMIT_MB:g} MB)",
            met(growth < RSS_GROWTH_LIMIT_MB),
        ),
    ]
    return format_table(header, rows)


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table with aligned columns."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = bench_env(args.workdir)
    if args.edit:
        # git would rewrite each edited worktree's index, and hostd count it whole again.
        env["GIT_OPTIONAL_LOCKS"] = "0"
    spec = Spec(args.files, args.dirs, args.commits, args.worktrees, args.seed)
    started = time.perf_counter()
    layout, generated = ensure_repo(args.workdir, spec, env)
    made = f"generated in {generated:.1f} s" if generated is not None else "reused"
    results = run_benchmark(args, layout, env)
    v = results.version
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    print(
        f"hostd benchmark: {spec.files} files in {spec.dirs} dirs, {spec.commits} commits, "
        f"{spec.worktrees} worktrees (seed {spec.seed}), baseRef={BASE}\n"
        f"repository: {layout.root} ({made}); largest diff: {layout.largest.name}\n"
        f"machine: {os.cpu_count()} CPUs, {git_version.strip()}, Python {sys.version.split()[0]}, "
        f"hostd {v['version']} (pygit2 {v['pygit2']}, libgit2 {v['libgit2']})\n"
        f"workspaces.keep_status: {args.keep_status}; "
        f"{'a tracked file edited before every request; ' if args.edit else ''}"
        f"hostd latency over one keep-alive HTTP connection; git CLI: the earlier host's "
        f"command sequence per request, run as subprocesses one after another\n"
    )
    print(render_table(args, results))
    print(
        f"\n{results.heavy_done} heavy diffs completed while sampling health; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    if results.errors:
        print("hostd answered with errors:")
        for message, count in results.errors.most_common(10):
            print(f"  {count} x {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
