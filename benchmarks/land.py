"""Landing speed: `workspace.merge` (rebase-ff, worktree removed) against the git CLI.

    .venv/bin/python benchmarks/land.py [--quick] [--files N] [--repeat N] [--workdir DIR]

hostd runs as a daemon registered with the development relay (both subprocesses); a land is
timed from the command's creation at the relay to the base ref advanced on disk, and to the
command's outcome. The git CLI does the same land: `git rebase main` in the worktree,
`git update-ref`, `git worktree remove`, `git branch -D`. Branches are 1, 10 and 50 commits
ahead and 3 behind, without conflicts; the base is not checked out anywhere (neither side then
updates a base worktree); one land warms hostd up first. `/api/health` is sampled every 5 ms
during the 50-commit lands. Prints one table and exits 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if not all(importlib.util.find_spec(m) for m in ("hostd", "pygit2")) and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import pygit2  # noqa: E402
from run import bench_env, percentile  # noqa: E402

from hostd.relay.journal import FAILED, SUCCEEDED  # noqa: E402

SIZES = (1, 10, 50)
BEHIND = 3
HOST_ID = "land-bench"
AUTHOR = pygit2.Signature("Bench Agent", "agent@example.com")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)
    return proc.stdout.decode()


def make_repo(root: Path, files: int, env: dict[str, str]) -> Path:
    """`main` with `files` files in 100 folders and BEHIND more commits; reused when present."""
    repo = root / f"repo-{files}"
    if (repo / ".bench-ready").exists():
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main", env=env)
    for n in range(files):
        path = repo / f"d{n % 100:03}" / f"f{n:05}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"file {n} line {i}\n" for i in range(20)))
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", "initial", env=env)
    git(repo, "tag", "start", env=env)
    for n in range(BEHIND):
        (repo / "d000" / "f00000.txt").write_text(f"main moved {n}\n")
        git(repo, "commit", "-qam", f"main {n}", env=env)
    git(repo, "checkout", "-q", "--detach", env=env)
    (repo / ".bench-ready").write_text("")
    return repo


def make_branch(repo: Path, name: str, commits: int, env: dict[str, str]) -> Path:
    """`agent/<name>`: `commits` commits on `start`, each editing a file main leaves alone;
    checked out in a linked worktree."""
    r = pygit2.Repository(str(repo))
    parent = r.revparse_single("start").peel(pygit2.Commit)
    for n in range(commits):
        index = pygit2.Index()
        index.read_tree(parent.tree)
        path = f"d{1 + n % 99:03}/f{1 + n % 99:05}-{name}.txt"
        blob = r.create_blob(f"{name} commit {n}\n".encode())
        index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(r)
        oid = r.create_commit(None, AUTHOR, AUTHOR, f"{name} {n}\n", tree, [parent.id])
        parent = r[oid].peel(pygit2.Commit)
    r.branches.local.create(f"agent/{name}", parent)
    worktree = repo.parent / "workspaces" / name
    git(repo, "worktree", "add", "-q", str(worktree), f"agent/{name}", env=env)
    return worktree


def main_tip(repo: Path) -> str:
    ref = repo / ".git" / "refs" / "heads" / "main"
    with contextlib.suppress(OSError):
        return ref.read_text().strip()
    return ""


def git_land(repo: Path, worktree: Path, name: str, env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the base advanced, seconds to the end) of the git CLI's land."""
    started = time.perf_counter()
    old = git(repo, "rev-parse", "main", env=env).strip()
    git(worktree, "rebase", "-q", "main", env=env)
    new = git(worktree, "rev-parse", "HEAD", env=env).strip()
    git(repo, "update-ref", "refs/heads/main", new, old, env=env)
    advanced = time.perf_counter() - started
    git(repo, "worktree", "remove", str(worktree), env=env)
    git(repo, "branch", "-q", "-D", f"agent/{name}", env=env)
    return advanced, time.perf_counter() - started


class Relay:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostd", "dev-relay", "--listen", f"127.0.0.1:{self.port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as res:
                return res.status, json.loads(res.read() or b"null")
        except (OSError, ValueError):
            return 0, None


def start_hostd(workdir: Path, relay: Relay, env: dict[str, str]) -> tuple[Any, int]:
    port = free_port()
    config = workdir / "hostd-land.json"
    config.write_text(
        json.dumps(
            {
                "id": HOST_ID,
                "base_dir": str(workdir),
                "state_dir": str(workdir / "state-land"),
                "api": {"listen": f"127.0.0.1:{port}"},
                "relay": {"url": relay.url, "poll_interval": "50ms", "heartbeat_interval": "5s"},
                "workspaces": {"fetch_interval": 0},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostd", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while relay.call("GET", f"/api/orchestrators/{HOST_ID}")[0] != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("hostd did not register with the development relay")
        time.sleep(0.05)
    return proc, port


def health_sampler(port: int, stop: threading.Event, out: list[float]) -> threading.Thread:
    def sample() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5).read()
            out.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    return thread


def hostd_land(
    relay: Relay, repo: Path, worktree: Path, name: str, health: list[float] | None, port: int
) -> tuple[float, float]:
    """(seconds to the base advanced, seconds to the outcome) from the command's creation."""
    old = main_tip(repo)
    params = {
        "workspaceId": f"ws-{name}",
        "repoRoot": str(repo),
        "worktreePath": str(worktree),
        "branch": f"agent/{name}",
        "baseRef": "main",
        "strategy": "rebase-ff",
    }
    stop = threading.Event()
    sampler = health_sampler(port, stop, health) if health is not None else None
    started = time.perf_counter()
    body = {"type": "workspace.merge", "target": f"orchestrator-{HOST_ID}", "params": params}
    _, command = relay.call("POST", "/api/commands", body)
    while main_tip(repo) == old:
        time.sleep(0.001)
    advanced = time.perf_counter() - started
    while relay.call("GET", f"/api/commands/{command['id']}")[1]["status"] not in (
        SUCCEEDED,
        FAILED,
    ):
        time.sleep(0.005)
    finished = time.perf_counter() - started
    stop.set()
    if sampler is not None:
        sampler.join()
    return advanced, finished


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 files, one land per size")
    parser.add_argument("--files", type=int, default=None, help="default 20000")
    parser.add_argument("--repeat", type=int, default=None, help="lands per size, default 3")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work" / "land")
    args = parser.parse_args(argv)
    files = args.files or (500 if args.quick else 20_000)
    repeat = args.repeat or (1 if args.quick else 3)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = bench_env(workdir) | {
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    repo = make_repo(workdir, files, env)
    base = git(repo, "rev-parse", "main", env=env).strip()
    relay = Relay(env)
    daemon, port = start_hostd(workdir, relay, env)
    rows = []
    health: list[float] = []
    try:
        warm = f"warm-up-{time.time_ns()}"
        hostd_land(relay, repo, make_branch(repo, warm, 1, env), warm, None, port)
        for size in SIZES:
            ours, theirs = [], []
            for n in range(repeat):
                for side in ("git", "hostd"):
                    git(repo, "update-ref", "refs/heads/main", base, env=env)
                    name = f"{side}-{size}-{n}-{time.time_ns()}"
                    worktree = make_branch(repo, name, size, env)
                    if side == "git":
                        theirs.append(git_land(repo, worktree, name, env))
                    else:
                        sample = health if size == max(SIZES) else None
                        ours.append(hostd_land(relay, repo, worktree, name, sample, port))
            rows.append((size, ours, theirs))
    finally:
        daemon.terminate()
        daemon.wait(60)
        relay.proc.terminate()
        relay.proc.wait(10)
        git(repo, "update-ref", "refs/heads/main", base, env=env)
        git(repo, "worktree", "prune", env=env)
    print(f"| land ({files} files, {repeat} per size) | hostd | git CLI | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for size, ours, theirs in rows:
        for label, k in (("base advanced", 0), ("worktree removed", 1)):
            mine, git_s = median([o[k] for o in ours]), median([t[k] for t in theirs])
            print(
                f"| {size}-commit branch, {label} | {mine * 1000:.0f} ms | {git_s * 1000:.0f} ms"
                f" | {mine / git_s:.2f} | ≤ 1.0 |"
            )
    if health:
        print(f"| /api/health p99 during {max(SIZES)}-commit lands | {percentile(health, 0.99):.1f}"
              f" ms ({len(health)} samples) | | | < 25 ms |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
