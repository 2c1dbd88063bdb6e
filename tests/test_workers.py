"""The daemon's git workers: what they import, how a broken pool shows, the request deadline
freeing a worker, and hostd's total of inotify watches."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.gitrepo import Repo, init_repo
from tests.relay_harness import Hostd, wait_until


async def get(host: Hostd, route: str, **query: str) -> tuple[int, dict[str, Any]]:
    async with host.session.get(host.url + route, params=query) as res:
        return res.status, await res.json()


def workers_of(host: Hostd) -> list[psutil.Process]:
    """The git worker processes: children of the daemon's fork server."""
    daemon = psutil.Process(host.pid)
    servers = [p for p in daemon.children() if "forkserver" in " ".join(p.cmdline())]
    return [child for server in servers for child in server.children()]


@pytest.mark.parametrize("entry", ["installed script", "python -m"])
async def test_workers_ignore_modules_in_the_current_directory(
    hostd: Callable[[str], Hostd], repo: Repo, tmp_path: Path, entry: str
) -> None:
    cwd = tmp_path / "cwd"
    (cwd / "hostd").mkdir(parents=True)  # as in the parent folder of a clone
    marker = tmp_path / "psutil-ran"
    (cwd / "psutil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    host = hostd("")
    host.cwd = cwd
    if entry == "installed script":
        host.argv = [str(Path(sys.executable).with_name("hostd"))]
    await host.start()

    status, body = await get(host, "/api/workspace/probe", path=str(repo.path))
    assert (status, body["isGitRepo"], body["headSha"]) == (200, True, repo.head())
    status, body = await get(host, "/api/workspace/state", path=str(repo.path))
    assert (status, body["dirtyCount"]) == (200, 0)
    health = await host.health()
    assert health is not None and health["gitWorkers"]["degraded"] is False
    assert not marker.exists()
    assert not host.log_matches("Traceback|SEMVER")


async def test_a_pool_that_cannot_start_shows_in_health_and_the_log_once(
    hostd: Callable[[str], Hostd], repo: Repo
) -> None:
    host = await hostd("").configure(workspaces={"worker_memory_mb": 1}).start()
    health = await host.wait_health(lambda h: h["gitWorkers"]["degraded"], what="pool degraded")
    assert health["degraded"] is True and health["status"] == "ok"
    assert "memory limit (1 MB) is below" in health["gitWorkers"]["error"]
    for route in ("probe", "state", "diff", "merge-preview"):
        status, body = await get(host, f"/api/workspace/{route}", path=str(repo.path))
        assert status == 503, body
        assert "memory limit (1 MB) is below" in body["error"]
    assert len(host.log_matches("git workers unavailable")) == 1
    assert not host.log_matches("Traceback|internal error")


def slow_diff_repo(path: Path) -> Repo:
    """A branch whose diff against main costs xdiff many seconds though the file is small:
    two unrelated random sequences of two distinct lines."""
    repo = init_repo(path)
    rng = random.Random(7)
    repo.commit("base", {"f.txt": "".join(c + "\n" for c in rng.choices("ab", k=1_000_000))})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("work", {"f.txt": "".join(c + "\n" for c in rng.choices("ab", k=1_000_000))})
    return repo


async def test_a_request_past_its_deadline_frees_its_worker(
    hostd: Callable[[str], Hostd], base_dir: Path
) -> None:
    slow = slow_diff_repo(base_dir / "slow")
    fast = init_repo(base_dir / "fast")
    host = await hostd("").configure(api={"request_timeout": "4s"}).start()
    await wait_until(lambda: len(workers_of(host)) == 2, what="workers started at start-up")
    started = {p.pid for p in workers_of(host)}
    diff = {"path": str(slow.path), "baseRef": "main"}
    slow_diffs = [asyncio.create_task(get(host, "/api/workspace/diff", **diff)) for _ in "ab"]
    await host.wait_health(lambda h: h["gitWorkers"]["busy"] == 2, what="both workers busy")
    status, body = await get(host, "/api/workspace/probe", path=str(fast.path))
    assert (status, body["headSha"]) == (200, fast.head())
    assert not all(task.done() for task in slow_diffs)
    assert [status for status, _ in await asyncio.gather(*slow_diffs)] == [504, 504]

    health = await host.wait_health(
        lambda h: h["gitWorkers"]["busy"] == 0 and h["gitWorkers"]["extra"] == 0, what="freed"
    )
    assert health["gitWorkers"]["degraded"] is False
    await wait_until(lambda: not started & {p.pid for p in workers_of(host)}, what="ended")
    status, body = await get(host, "/api/workspace/probe", path=str(slow.path))
    assert (status, body["headSha"]) == (200, slow.head())


def inotify_watches(pid: int) -> int:
    """Watches held by the inotify descriptors of one process."""
    total = 0
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            total += fdinfo.read_text().count("inotify wd:")
        except OSError:  # closed meanwhile
            continue
    return total


def porcelain_count(repo: Repo) -> int:
    return len(repo.git("status", "--porcelain").splitlines())


async def test_inotify_watches_stay_within_hostd_total_and_counts_stay_right(
    hostd: Callable[[str], Hostd], base_dir: Path
) -> None:
    repos = [init_repo(base_dir / f"r{i}") for i in range(4)]
    for i, repo in enumerate(repos):
        repo.commit("folders", {f"d{j}/f.txt": "x\n" for j in range(i * 2)} | {"top.txt": "t\n"})
    probe = await hostd("").start()
    workers = (await probe.health() or {})["gitWorkers"]["workers"]
    await probe.kill()
    budget = 4 * workers  # room for one worktree without folders in each worker
    host = await hostd("").configure(workspaces={"max_watches": budget}).start()

    async def check_counts() -> None:
        for repo in repos:
            for _ in range(2):  # the second query may be answered from the kept count
                status, body = await get(host, "/api/workspace/state", path=str(repo.path))
                assert (status, body["dirtyCount"]) == (200, porcelain_count(repo)), repo.path

    await check_counts()
    for i, repo in enumerate(repos):
        repo.write("top.txt", f"changed {i}\n")
        repo.write(f"d{i}/new.txt" if i else "new.txt", "untracked\n")
    await check_counts()
    held = [inotify_watches(p.pid) for p in workers_of(host)]
    assert 0 < sum(held) <= budget, held
    assert host.log_matches("share of inotify watches")
