"""Benchmark workspace.cleanup and workspace.reconcile against the git CLI doing the same.

    .venv/bin/python benchmarks/cleanup.py [--quick] [--files N] [--rounds N] [--workdir DIR]

Cleanup: hostd's cleanup (the git-worker function, proofs included) of a clean worktree whose
branch sits on `main`, against `git worktree remove` + `git branch -d`. Reconcile: hostd's
reconcile of an unchanged worktree holding an unlanded commit (it stays), against the git
commands that decide the same (`status --porcelain`, `rev-list --left-right --count`,
`cherry`). Prints medians and ratios (hostd / git); exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from genrepo import Spec, ensure_repo
from run import ROOT, bench_env

BRANCHES = "refs/heads/agent/bench-"
FULL = {"files": 20_000, "rounds": 9}
QUICK = {"files": 2_000, "rounds": 3}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)
    return proc.stdout.decode(errors="replace")


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    env = bench_env(args.workdir)
    os.environ.update(env)
    from hostd.commands.cleanup import cleanup_in_worker, cleanup_params
    from hostd.commands.reconcile import reconcile_in_worker
    from hostd.commands.target import Environment, workspace_params

    spec = Spec(files=args.files, dirs=200, commits=200, worktrees=1, seed=7)
    layout, _ = ensure_repo(args.workdir, spec, env)
    main_tree, scratch = layout.main, layout.root / "bench-cleanup"
    hostd_env = Environment(str(layout.root), str(scratch), "hostd <hostd@localhost>")
    shutil.rmtree(scratch, ignore_errors=True)
    git(main_tree, "worktree", "prune", env=env)
    for ref in git(main_tree, "for-each-ref", "--format=%(refname)", BRANCHES, env=env).split():
        git(main_tree, "update-ref", "-d", ref, env=env)

    def add(name: str) -> Path:
        path = scratch / name / "wt"
        git(
            main_tree,
            "worktree",
            "add",
            "-q",
            "-b",
            f"agent/bench-{name}",
            str(path),
            "main",
            env=env,
        )
        return path

    def git_cleanup(path: Path, name: str) -> None:
        git(main_tree, "worktree", "remove", str(path), env=env)
        git(main_tree, "branch", "-q", "-d", f"agent/bench-{name}", env=env)

    def hostd_cleanup(path: Path) -> None:
        result = cleanup_in_worker(cleanup_params({"worktreePath": str(path)}), hostd_env)
        assert result.get("branchDeleted") is True, result

    cleanup_git, cleanup_hostd = [], []
    for i in range(args.rounds):
        path = add(f"git-{i}")
        cleanup_git.append(timed(lambda p=path, n=f"git-{i}": git_cleanup(p, n)))
        path = add(f"hostd-{i}")
        cleanup_hostd.append(timed(lambda p=path: hostd_cleanup(p)))

    kept = add("kept")
    (kept / "bench.txt").write_text("unlanded\n")
    git(kept, "add", "bench.txt", env=env)
    git(
        kept,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "-q",
        "-m",
        "unlanded",
        env=env,
    )
    target = workspace_params({"worktreePath": str(kept), "baseRef": "main"})

    def git_reconcile() -> None:
        git(kept, "status", "--porcelain", env=env)
        git(kept, "rev-list", "--left-right", "--count", "main...HEAD", env=env)
        git(kept, "cherry", "main", "HEAD", env=env)

    def hostd_reconcile() -> None:
        assert reconcile_in_worker(target, hostd_env)["status"] == "review_requested"

    hostd_reconcile()
    reconcile_git = [timed(git_reconcile) for _ in range(args.rounds)]
    reconcile_hostd = [timed(hostd_reconcile) for _ in range(args.rounds)]
    git(main_tree, "worktree", "remove", "--force", str(kept), env=env)
    git(main_tree, "branch", "-q", "-D", "agent/bench-kept", env=env)

    print(f"{args.files} files, {args.rounds} rounds, medians")
    print(f"{'measure':<34}{'hostd ms':>10}{'git ms':>10}{'ratio':>8}  target")
    for name, ours, theirs in (
        ("cleanup of a clean worktree", cleanup_hostd, cleanup_git),
        ("reconcile of an unchanged worktree", reconcile_hostd, reconcile_git),
    ):
        a, b = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
        print(f"{name:<34}{a:>10.1f}{b:>10.1f}{a / b:>8.2f}  <= 1.0")


if __name__ == "__main__":
    main()
