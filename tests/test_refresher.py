"""The background upstream refresher against real repositories with a local bare origin."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import yaml

from hostd.config import load_config
from hostd.refresher import UpstreamRefresher, repositories_with_worktrees
from hostd.relay.locks import RepositoryLocks
from tests.gitrepo import Repo, clone_with_origin, git
from tests.procs import free_port
from tests.relay_harness import wait_until


def with_worktree(base_dir: Path, name: str) -> tuple[Repo, Path, Repo]:
    """A clone with an origin and a linked agent worktree under the workspaces root, and a
    second clone (outside base_dir) that moves origin."""
    repo, origin = clone_with_origin(base_dir, name)
    repo.worktree(base_dir / ".agent-relay" / "workspaces" / name / "wt", f"agent/{name}")
    other = Repo(base_dir.parent / f"{name}-other")
    git(base_dir.parent, "clone", "-q", str(origin), str(other.path))
    return repo, origin, other


def move_origin(other: Repo, label: str) -> str:
    sha = other.commit(label, {f"{label}.txt": label})
    other.git("push", "-q", "origin", "HEAD:main")
    return sha


def tracking(repo: Repo) -> str:
    return repo.git("rev-parse", "refs/remotes/origin/main").strip()


def test_repositories_are_found_from_their_linked_worktrees(base_dir: Path, repo: Repo) -> None:
    root = base_dir / ".agent-relay" / "workspaces"
    repo.worktree(root / "a" / "wt", "agent/a")
    repo.worktree(root / "b", "agent/b")
    init_only = Repo(base_dir / "no-worktrees")
    git(base_dir, "init", "-q", str(init_only.path))
    assert repositories_with_worktrees(str(root), str(base_dir)) == [str(repo.path / ".git")]


async def test_refresh_fetches_and_backs_off_a_failing_repository(base_dir: Path) -> None:
    good, _, good_other = with_worktree(base_dir, "good")
    bad, bad_origin, _ = with_worktree(base_dir, "bad")
    config = load_config(None, env={}, overrides={"base_dir": str(base_dir)})
    refresher = UpstreamRefresher(config, RepositoryLocks())
    moved = move_origin(good_other, "moved")
    bad_origin.rename(bad_origin.with_suffix(".gone"))
    fetched = await refresher.refresh_once()
    assert fetched == [str(good.path / ".git")]
    assert tracking(good) == moved
    assert refresher.trouble[str(bad.path / ".git")].failures == 1
    bad_origin.with_suffix(".gone").rename(bad_origin)
    again = move_origin(good_other, "again")
    assert await refresher.refresh_once() == [str(good.path / ".git")]
    assert tracking(good) == again
    assert refresher.trouble[str(bad.path / ".git")].failures == 1


async def test_the_daemon_refreshes_in_the_background(tmp_path: Path, base_dir: Path) -> None:
    repo, _, other = with_worktree(base_dir, "app")
    port = free_port()
    config = tmp_path / "hostd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_dir": str(base_dir),
                "state_dir": str(tmp_path / "state"),
                "api": {"listen": f"127.0.0.1:{port}"},
                "workspaces": {"fetch_interval": "200ms"},
            }
        )
    )
    moved = move_origin(other, "moved")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hostd",
        "run",
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_until(lambda: tracking(repo) == moved, 30, "origin/main refreshed")
    finally:
        proc.terminate()
        await proc.wait()
