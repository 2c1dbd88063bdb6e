"""The diff of one large modified text file, and the first workspace request after start-up.

    .venv/bin/python benchmarks/big_diff.py [--sizes-mb 400,1024] [--text-mb 400] [--workdir DIR]

For each size: a repository whose branch rewrites every third line of one generated file;
the diff (with the patch) runs in a git worker, and the worker's peak RSS (VmHWM) and the wall
time are printed, with hostd's default file limit (the file counts as binary, unread) and, for
`--text-mb`, with the limit raised so the file is diffed as text. Then hostd runs as a
subprocess and the latency of its first `probe`, at once and 1 s after its API answers, is
printed next to the median of the next 20.
Prints one table; it measures, it does not assert.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hostd import queries  # noqa: E402
from hostd.gitpool import GitPool  # noqa: E402

LINE = b"%09d version %d of a generated line, with some more text\n"


def git(cwd: Path, *args: str) -> None:
    fast = ["-c", "core.compression=0", "-c", "core.bigFileThreshold=4g"]
    subprocess.run(["git", *fast, *args], cwd=cwd, check=True, capture_output=True)


def write_big(path: Path, size: int, version: int) -> None:
    lines = size // len(LINE % (0, 0))
    with path.open("wb") as out:
        for start in range(0, lines, 100_000):
            stop = min(lines, start + 100_000)
            out.write(
                b"".join(LINE % (i, version if i % 3 == 0 else 0) for i in range(start, stop))
            )


def big_repo(workdir: Path, size_mb: int) -> Path:
    repo = workdir / f"big-{size_mb}"
    if (repo / ".done").exists():
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    write_big(repo / "big.txt", size_mb * 2**20, 1)
    git(repo, "add", "big.txt")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "base")
    git(repo, "checkout", "-q", "-b", "work")
    write_big(repo / "big.txt", size_mb * 2**20, 2)
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "work")
    (repo / ".done").touch()
    return repo


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure_diff(repo: Path, max_file: int) -> tuple[float, float, str]:
    pool = GitPool(1, memory_limit=0)
    try:
        key = str(repo)
        pid = await pool.run(os.getpid, key=key)
        started = time.perf_counter()
        body = await pool.run(
            queries.diff_body, key, str(repo.parent), "main", None, True, max_file, key=key
        )
        elapsed = time.perf_counter() - started
        files = body.get("files") or [{}]
        kind = "binary" if files[0].get("binary") else f"+{files[0].get('additions')}"
        return elapsed, peak_rss_mb(pid), kind
    finally:
        pool.shutdown()


def first_request(workdir: Path, delay: float) -> tuple[float, float]:
    """Latency of hostd's first probe `delay` seconds after its API answers, and the median of
    the next 20."""
    base = workdir / "latency"
    (base / "r").mkdir(parents=True, exist_ok=True)
    git(base / "r", "init", "-q", "-b", "main")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = workdir / "latency.yaml"
    config.write_text(
        f"base_dir: {base}\nstate_dir: {workdir / 'state'}\napi:\n  listen: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostd", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/api/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.02)

        def probe() -> float:
            started = time.perf_counter()
            urllib.request.urlopen(url + "/api/workspace/probe?path=r", timeout=10).read()
            return time.perf_counter() - started

        time.sleep(delay)
        first = probe()
        rest = [probe() for _ in range(20)]
        return first, statistics.median(rest)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", default="400,1024")
    parser.add_argument("--text-mb", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hostd-bigdiff-"))
    rows = []
    for size_mb in [int(s) for s in args.sizes_mb.split(",") if s]:
        repo = big_repo(workdir, size_mb)
        runs = [("default limit", queries.MAX_FILE)]
        if size_mb == args.text_mb:
            runs.append(("limit raised", 2**40))
        for label, max_file in runs:
            elapsed, rss, kind = asyncio.run(measure_diff(repo, max_file))
            rows.append(
                (
                    f"diff of a {size_mb} MB file, {label} ({kind})",
                    f"{elapsed:.2f} s",
                    f"{rss:.0f} MB",
                )
            )
    for delay in (0.0, 1.0):
        first, median = first_request(workdir, delay)
        rows.append(
            (f"first probe {delay:.0f} s after the API answers", f"{first * 1000:.1f} ms", "")
        )
        rows.append(("median of the next 20 probes", f"{median * 1000:.1f} ms", ""))
    print("| measurement | time | worker peak RSS |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
