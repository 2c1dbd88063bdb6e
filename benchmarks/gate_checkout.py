"""The land gates' throwaway checkout against `git worktree add --detach` + `git worktree remove`.

Both materialise `main`'s tip of the benchmark repository in a new folder and delete it again;
rounds alternate between the two so that both see the same page cache. Prints the medians and
their ratio (target: hostd / git <= 1.0). Measures, never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genrepo import Spec, ensure_repo
from run import FULL, QUICK, ROOT, bench_env  # re-runs itself with the venv when needed

from hostd.gates.checkout import materialise, remove


def git_round(main: Path, sha: str, scratch: Path, env: dict[str, str]) -> float:
    target = scratch / "git-worktree"
    started = time.perf_counter()
    for args in (
        ["worktree", "add", "-q", "--detach", str(target), sha],
        ["worktree", "remove", "--force", str(target)],
    ):
        subprocess.run(["git", *args], cwd=main, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def hostd_round(common_dir: str, sha: str, scratch: Path, filtered: bool | None) -> float:
    started = time.perf_counter()
    remove(materialise(common_dir, sha, str(scratch / "gates"), filtered))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick benchmark repository")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    spec = Spec(sizes["files"], sizes["dirs"], sizes["commits"], sizes["worktrees"])
    env = bench_env(args.workdir)
    os.environ.update(env)
    layout, _ = ensure_repo(args.workdir, spec, env)
    sha = (
        subprocess.run(
            ["git", "rev-parse", "main"], cwd=layout.main, env=env, check=True, capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    common_dir = str(layout.main / ".git")
    times: dict[str, list[float]] = {"git": [], "hostd": [], "libgit2": []}
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        for _ in range(args.rounds):
            times["git"].append(git_round(layout.main, sha, Path(scratch), env))
            times["hostd"].append(hostd_round(common_dir, sha, Path(scratch), None))
            times["libgit2"].append(hostd_round(common_dir, sha, Path(scratch), True))
    git, hostd, libgit2 = (statistics.median(times[k]) for k in ("git", "hostd", "libgit2"))
    print(f"| repository | {spec.files} files, {args.rounds} rounds each, medians |")
    print("| --- | --- |")
    print(f"| git worktree add --detach + git worktree remove | {git * 1000:.0f} ms |")
    print(f"| hostd throwaway checkout + removal | {hostd * 1000:.0f} ms |")
    print(f"| the same with libgit2's checkout (when filters apply) | {libgit2 * 1000:.0f} ms |")
    print(f"| ratio hostd / git (target <= 1.0) | {hostd / git:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
