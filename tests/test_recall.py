"""Answers the daemon gives again without a git worker are exactly what git says.

The real daemon application with its real worker pool, over HTTP on loopback: an unchanged
worktree is answered from the daemon's memory, and after each kind of change (the ones the
workers' own memory is tested with, and those of files no watch covers) the next answer is made
afresh and agrees with the git CLI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings

from hostd.api import create_app
from hostd.api.handlers import pool_key, recall_key
from tests.gitrepo import Repo, init_repo
from tests.test_answers import (
    ACTIONS,
    CHANGES,
    Change,
    act,
    oracle_state,
    seen_state,
)
from tests.test_api import TOKEN, make_config

ROUTES = ["probe", "state", "diff", "merge-preview"]


class Daemon:
    """Asks one running application about a worktree, telling recalled answers apart."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.app = client.server.app
        assert self.app is not None

    async def ask(self, route: str, path: Path, **params: str) -> tuple[dict[str, Any], bool]:
        recall = self.app[recall_key]
        before = recall.hits
        resp = await self.client.get(
            f"/api/workspace/{route}",
            params={"path": str(path), **params},
            headers={"X-Agent-Relay-Token": TOKEN},
        )
        assert resp.status == 200
        return await resp.json(), recall.hits > before

    async def state(self, path: Path, base: str = "main") -> tuple[dict[str, Any], bool]:
        return await self.ask("state", path, baseRef=base)


@pytest.fixture
async def daemon(aiohttp_client: Any, base_dir: Path) -> Daemon:
    return Daemon(await aiohttp_client(create_app(make_config(base_dir))))


@pytest.fixture
def xdg_ignore() -> Iterator[Path]:
    """The global ignore file every test process shares, removed afterwards."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "ignore"
    path.parent.mkdir(parents=True, exist_ok=True)
    yield path
    path.unlink(missing_ok=True)


def _included_config(main: Repo, agent: Repo, base_dir: Path) -> None:
    (base_dir / "included").write_text("[status]\n\tshowUntrackedFiles = no\n")


UNWATCHED: dict[str, Change] = {"an included configuration file changes": _included_config}


@pytest.mark.parametrize("name", [*CHANGES, *UNWATCHED])
async def test_every_change_is_seen_by_the_next_answer(
    daemon: Daemon, work: tuple[Repo, Repo], base_dir: Path, name: str
) -> None:
    main, agent = work
    (base_dir / "included").write_text("")
    main.git("config", "include.path", str(base_dir / "included"))
    base = "release/v1/main" if "new ref folder" in name else "main"
    first, _ = await daemon.state(agent.path, base)
    again, recalled = await daemon.state(agent.path, base)
    assert recalled and again == first
    {**CHANGES, **UNWATCHED}[name](main, agent, base_dir)
    body, recalled = await daemon.state(agent.path, base)
    assert not recalled
    assert seen_state(body) == oracle_state(agent, base)
    assert await daemon.state(agent.path, base) == (body, True)


async def test_the_global_ignore_file_appearing_is_seen(
    daemon: Daemon, work: tuple[Repo, Repo], xdg_ignore: Path
) -> None:
    _, agent = work
    await daemon.state(agent.path)
    assert (await daemon.state(agent.path))[1]
    xdg_ignore.write_text("notes.txt\n")
    body, recalled = await daemon.state(agent.path)
    assert not recalled and seen_state(body) == oracle_state(agent)


@pytest.mark.parametrize("route", ROUTES)
async def test_an_unchanged_worktree_is_answered_by_the_daemon(
    daemon: Daemon, work: tuple[Repo, Repo], route: str
) -> None:
    _, agent = work
    first, recalled = await daemon.ask(route, agent.path, baseRef="main")
    assert not recalled
    for _ in range(3):
        assert await daemon.ask(route, agent.path, baseRef="main") == (first, True)
    agent.git("--no-optional-locks", "status")
    assert await daemon.ask(route, agent.path, baseRef="main") == (first, True)
    metrics = await (await daemon.client.get("/metrics")).text()
    assert "hostd_workspace_answers_recalled_total 4.0" in metrics


async def test_git_taking_and_dropping_its_index_lock_changes_nothing(
    daemon: Daemon, work: tuple[Repo, Repo]
) -> None:
    """`git status` takes `index.lock` even to change nothing; the daemon drops those events
    for the worker (which would ignore them) and still answers from memory."""
    _, agent = work
    lock = Path(agent.git("rev-parse", "--absolute-git-dir").strip()) / "index.lock"
    first, _ = await daemon.state(agent.path)
    for _ in range(3):
        lock.write_text("")
        lock.unlink()
        assert await daemon.state(agent.path) == (first, True)


async def test_a_lock_file_in_the_worktree_is_a_change(
    daemon: Daemon, work: tuple[Repo, Repo]
) -> None:
    _, agent = work
    await daemon.state(agent.path)
    assert (await daemon.state(agent.path))[1]
    agent.write("src/build.lock", "x\n")
    body, recalled = await daemon.state(agent.path)
    assert not recalled and seen_state(body) == oracle_state(agent)
    assert body["dirtyCount"] == len(agent.git("status", "--porcelain").splitlines())


async def test_a_removed_sibling_worktree_is_seen_by_the_probe(
    daemon: Daemon, work: tuple[Repo, Repo], base_dir: Path
) -> None:
    main, agent = work
    other = main.worktree(base_dir / "other", "agent/other")
    await daemon.ask("probe", agent.path)
    assert (await daemon.ask("probe", agent.path))[1]
    shutil.rmtree(other.path)
    body, recalled = await daemon.ask("probe", agent.path)
    assert not recalled
    assert [w["path"] for w in body["worktrees"] if w.get("prunable")] == [str(other.path)]
    assert "prunable" in main.git("worktree", "list", "--porcelain")


async def test_a_folder_replaced_under_a_moved_parent_is_not_recalled(
    daemon: Daemon, base_dir: Path
) -> None:
    """Moving a parent folder raises no event on the watched worktree inside it."""
    first = init_repo(base_dir / "group" / "repo")
    await daemon.state(first.path)
    assert (await daemon.state(first.path))[1]
    (base_dir / "group").rename(base_dir / "moved")
    second = init_repo(base_dir / "group" / "repo")
    second.write("untracked.txt", "x\n")
    body, recalled = await daemon.state(second.path)
    assert not recalled and seen_state(body) == oracle_state(second)


async def test_a_retargeted_symlink_is_not_recalled(daemon: Daemon, base_dir: Path) -> None:
    one, two = init_repo(base_dir / "one"), init_repo(base_dir / "two")
    two.write("untracked.txt", "x\n")
    link = base_dir / "link"
    link.symlink_to(one.path)
    await daemon.state(link)
    assert (await daemon.state(link))[1]
    link.unlink()
    link.symlink_to(two.path)
    body, recalled = await daemon.state(link)
    assert not recalled and seen_state(body) == oracle_state(two)


async def test_a_folder_inside_a_worktree_is_always_asked_of_a_worker(
    daemon: Daemon, repo: Repo
) -> None:
    sub = repo.write("sub/file.txt", "x\n").parent
    for _ in range(3):
        body, recalled = await daemon.state(sub)
        assert not recalled and seen_state(body) == oracle_state(repo)


async def test_nothing_is_recalled_without_kept_status(
    aiohttp_client: Any, base_dir: Path, repo: Repo
) -> None:
    config = make_config(base_dir, **{"workspaces.keep_status": "false"})
    daemon = Daemon(await aiohttp_client(create_app(config)))
    for step in range(3):
        body, recalled = await daemon.state(repo.path)
        assert not recalled and seen_state(body) == oracle_state(repo)
        repo.write(f"new-{step}.txt", "x\n")


async def test_a_killed_worker_does_not_hide_a_change(daemon: Daemon, repo: Repo) -> None:
    """The inotify descriptor outlives the worker: its watches still report changes."""
    await daemon.state(repo.path)
    for pid in daemon.app[pool_key].pids():
        os.kill(pid, 9)
    assert (await daemon.state(repo.path))[1]
    repo.write("new.txt", "x\n")
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        resp = await daemon.client.get(
            "/api/workspace/state",
            params={"path": str(repo.path), "baseRef": "main"},
            headers={"X-Agent-Relay-Token": TOKEN},
        )
        if resp.status == 200:
            break
        assert resp.status == 503 and asyncio.get_running_loop().time() < deadline
    assert seen_state(await resp.json()) == oracle_state(repo)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS)
def test_random_changes_between_answers_match_git(
    tmp_path_factory: pytest.TempPathFactory, actions: list[str]
) -> None:
    base_dir = tmp_path_factory.mktemp("base").resolve()
    main = init_repo(base_dir / "repo")
    agent = main.worktree(base_dir / "agent", "agent/one")

    async def scenario() -> None:
        async with TestClient(TestServer(create_app(make_config(base_dir)))) as client:
            daemon = Daemon(client)
            for step, action in enumerate(actions):
                act(main, agent, step, action)
                body, _ = await daemon.state(agent.path)
                assert seen_state(body) == oracle_state(agent)
                assert await daemon.state(agent.path) == (body, True)

    asyncio.run(scenario())
