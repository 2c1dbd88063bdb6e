"""benchmarks/run.py end to end on a tiny repository: it runs, exits 0 and prints every row."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    "probe median (p95)",
    "state median (p95)",
    "diff median (p95)",
    "merge-preview median (p95)",
    "health p99 under 8 heavy diffs",
    "RSS idle after start",
    "RSS before the mixed requests",
    "RSS after 40 mixed requests",
    "RSS growth over 40 mixed requests",
]


def test_quick_benchmark_prints_every_row(tmp_path: Path) -> None:
    tiny = "--files 200 --commits 20 --worktrees 3 --requests 3 --mixed 40 --health-samples 30"
    script = ROOT / "benchmarks" / "run.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", *tiny.split(), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ROWS:
        assert re.search(rf"^\| {re.escape(row)}.*\|.*\d", result.stdout, re.MULTILINE), row
    assert "hostd answered with errors" not in result.stdout


def test_connections_benchmark_prints_every_row() -> None:
    script = ROOT / "benchmarks" / "connections.py"
    result = subprocess.run(
        [sys.executable, str(script), "--connections", "50", "--nofile", "256"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        "health answered / asked",
        "health median / p95 / max while held",
        "idle connections held at most",
        "all idle connections closed after",
        "peak descriptors",
        "peak RSS",
        "log lines (bytes)",
    ):
        assert re.search(rf"^\| {re.escape(row)} \|.*\d", result.stdout, re.MULTILINE), row
    assert "| tracebacks in the log | 0 |" in result.stdout


def test_big_diff_benchmark_prints_every_row(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "big_diff.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--sizes-mb",
            "2",
            "--text-mb",
            "2",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in [
        "diff of a 2 MB file, default limit (+",
        "diff of a 2 MB file, limit raised (+",
        "first probe 0 s after the API answers",
        "first probe 1 s after the API answers",
        "median of the next 20 probes",
    ]:
        assert re.search(rf"^\| {re.escape(row)}.*\|.*\d", result.stdout, re.MULTILINE), row


def test_gate_checkout_benchmark_prints_every_row(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "gate_checkout.py"
    argv = [sys.executable, str(script), "--quick", "--rounds", "1", "--workdir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        "git worktree add --detach + git worktree remove",
        "hostd throwaway checkout + removal",
        "the same with libgit2's checkout",
        "ratio hostd / git",
    ):
        assert re.search(rf"^\| {re.escape(row)}.*\|.*\d", result.stdout, re.MULTILINE), row


def test_dashboard_benchmark_prints_every_row(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "dashboard.py"
    argv = [sys.executable, str(script), "--quick", "--rounds", "1", "--requests", "400"]
    argv += ["--workdir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        "dashboard, 20 requests in 5 s: CPU",
        "dashboard, 20 requests in 5 s: median / p99",
        "whole tree RSS (PSS) with 20 worktrees",
        "growth over the first 200",
        "growth over the last 200 mixed requests",
        "benchmark repository, 40 requests in 1 s: CPU",
    ):
        assert re.search(rf"^\| {re.escape(row)}.*\|.*\d", result.stdout, re.MULTILINE), row
    assert "hostd answered with errors" not in result.stdout
