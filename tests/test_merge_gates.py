"""Land gates inside workspace.merge (rebase-ff), on real repositories; git is the oracle."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostd.commands.merge import GATES_RACED, MergeHandler
from hostd.commands.registry import Command, CommandContext
from hostd.config import Config
from hostd.gitpool import GitPool
from tests.gitrepo import Repo
from tests.relay_harness import wait_until
from tests.test_gate_runner import gone
from tests.test_merge import agent, config_for, params_for

GATE_FILE = ".agent-relay/land-gates.json"
TOKEN = "relay-token-for-gates-0123456789"


def declare(repo: Repo, *gates: dict[str, Any]) -> str:
    return repo.commit("declare gates", {GATE_FILE: json.dumps(list(gates))})


def refs(repo: Repo) -> str:
    return repo.git("for-each-ref", "--format=%(refname) %(objectname)")


async def merge(
    pool: GitPool, config: Config, progress: list[dict[str, Any]] | None = None, **params: Any
) -> dict[str, Any]:
    async def record(step: dict[str, Any]) -> None:
        if progress is not None:
            progress.append(step)

    ctx = CommandContext(config, logging.getLogger("test"), record, lambda code: None, pool)
    result = await MergeHandler().run(Command("m-gates", "workspace.merge", params), ctx)
    assert result is not None
    return result


@pytest.fixture(scope="module")
def pool() -> Iterator[GitPool]:
    workers = GitPool(1, writes=True)
    yield workers
    workers.shutdown()


@pytest.fixture
def config(base_dir: Path) -> Config:
    return config_for(base_dir)


async def test_a_passing_gate_lands(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    declare(repo, {"name": "has-feature", "command": "grep -q done feature.txt"})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "done\n"})
    steps: list[dict[str, Any]] = []
    result = await merge(pool, config, steps, **params_for(wt, repo))
    assert result["status"] == "merged" and "error" not in result, result
    assert result["gatesRan"] == 1 and "gateWarnings" not in result
    assert result["mergedSha"] == repo.git("rev-parse", "main").strip()
    gate_steps = [s for s in steps if s.get("phase") == "gates"]
    assert gate_steps == [{"phase": "gates", "gate": "has-feature", "index": 1, "of": 1}]
    assert steps.index(gate_steps[0]) < steps.index({"phase": "swapping"})
    assert list((Path(config.state_dir) / "gates" / "checkouts").iterdir()) == []


async def test_no_gate_file_lands_with_zero_gates(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "done\n"})
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["status"] == "merged" and result["gatesRan"] == 0


async def test_a_failing_required_gate_moves_nothing(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    declare(
        repo,
        {"name": "unit", "command": "echo 3 tests failed; exit 4"},
        {"name": "after", "command": "exit 0"},
    )
    wt = agent(repo, base_dir)
    head = wt.commit("feature", {"feature.txt": "x\n"})
    repo.commit("main moved", {"m.txt": "m\n"})
    before = refs(repo), repo.git("worktree", "list", "--porcelain")
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["status"] == "review_requested"
    assert result["error"] == "land gate failed: unit"
    failure = result["gateFailure"]
    assert failure["name"] == "unit" and failure["exitCode"] == 4
    assert failure["outputTail"] == "3 tests failed\n" and failure["timedOut"] is False
    assert result["gatesRan"] == 1
    assert (refs(repo), repo.git("worktree", "list", "--porcelain")) == before
    assert wt.head() == head and (wt.path / "feature.txt").exists()


async def test_an_optional_failing_gate_lands_with_a_warning(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    declare(
        repo,
        {"name": "lint", "command": "echo style; exit 1", "optional": True},
        {"name": "unit", "command": "true"},
    )
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["status"] == "merged", result
    assert result["gatesRan"] == 2
    [warning] = result["gateWarnings"]
    assert warning["name"] == "lint" and warning["exitCode"] == 1
    assert warning["command"] == "echo style; exit 1" and warning["outputTail"] == "style\n"


async def test_a_gate_past_its_timeout_ends_with_its_children(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; sleep 300"
    declare(repo, {"name": "hangs", "command": command, "timeoutMs": 300})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    before = refs(repo)
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["error"] == "land gate failed: hangs"
    assert result["gateFailure"]["timedOut"] is True and "exitCode" not in result["gateFailure"]
    assert refs(repo) == before
    spawned = [int(line) for line in pids.read_text().split()]
    assert len(spawned) == 2

    await wait_until(lambda: all(gone(pid) for pid in spawned), 10, "gate processes gone")


async def test_the_base_gate_judges_a_candidate_that_weakens_it(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    declare(repo, {"name": "no-secrets", "command": "! test -e secret.key"})
    wt = agent(repo, base_dir)
    lenient = json.dumps([{"name": "no-secrets", "command": "exit 0"}])
    wt.commit("sneaky", {"secret.key": "k\n", GATE_FILE: lenient})
    before = refs(repo)
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["error"] == "land gate failed: no-secrets"
    assert refs(repo) == before


async def test_a_malformed_gate_file_blocks_the_land(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    repo.commit("broken gates", {GATE_FILE: '[{"name": "unit"'})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    before = refs(repo)
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["status"] == "review_requested"
    assert result["error"] == "land gate failed: land-gates-config"
    assert "not JSON" in result["gateFailure"]["outputTail"]
    assert refs(repo) == before


async def test_two_branches_that_pass_alone_fail_composed(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    # The "test suite": at most one of the two handlers may claim the default route.
    gate = "test $(cat routes/* 2>/dev/null | grep -c default) -le 1"
    declare(repo, {"name": "routes", "command": gate})
    one, two = agent(repo, base_dir, "one"), agent(repo, base_dir, "two")
    one.commit("one", {"routes/one.txt": "default\n"})
    two.commit("two", {"routes/two.txt": "default\n"})
    for wt in (one, two):
        assert subprocess.run(["bash", "-c", gate], cwd=wt.path, check=False).returncode == 0
    first = await merge(pool, config, **params_for(one, repo))
    assert first["status"] == "merged" and first["gatesRan"] == 1
    landed = repo.git("rev-parse", "main").strip()
    second = await merge(pool, config, **{**params_for(two, repo), "workspaceId": "ws-2"})
    assert second["error"] == "land gate failed: routes"
    assert repo.git("rev-parse", "main").strip() == landed


async def test_untracked_files_in_the_worktree_do_not_reach_the_gate(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    repo.commit("ignore build output", {".gitignore": "build/\n"})
    declare(repo, {"name": "built", "command": "test -f build/artifact"})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    wt.write("build/artifact", "would make the gate pass\n")
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["error"] == "land gate failed: built"
    assert (wt.path / "build" / "artifact").exists()


async def test_the_token_reaches_neither_the_environment_nor_the_files_of_a_gate(
    pool: GitPool,
    repo: Repo,
    base_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_RELAY_TOKEN", TOKEN)
    monkeypatch.setenv("HOSTD_RELAY_TOKEN", TOKEN)
    config = config_for(base_dir)
    config = Config(**{**config.__dict__, "relay": type(config.relay)(token=TOKEN)})
    seen = tmp_path / "seen"
    command = f"mkdir -p {seen}; env > {seen}/env.txt; cp -a . {seen}/checkout"
    declare(repo, {"name": "spy", "command": command})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    result = await merge(pool, config, **params_for(wt, repo))
    assert result["status"] == "merged", result
    assert "PATH=" in (seen / "env.txt").read_text()
    assert (seen / "checkout" / "feature.txt").exists()
    for folder in (seen, Path(config.state_dir)):
        grep = subprocess.run(["grep", "-rF", TOKEN, str(folder)], capture_output=True)
        assert grep.returncode == 1, grep.stdout


async def test_gate_level_none_skips_and_says_why(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    declare(repo, {"name": "unit", "command": "exit 1"})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    params = params_for(wt, repo, gateLevel="none", gateReason="hotfix", requestedBy="ann")
    result = await merge(pool, config, **params)
    assert result["status"] == "merged", result
    assert result["gatesRan"] == 0
    assert result["gateSkipped"] == {"level": "none", "reason": "hotfix", "by": "ann"}


async def test_gate_level_subset_uses_the_candidates_file(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    declare(repo, {"name": "unit", "command": "exit 1"})
    wt = agent(repo, base_dir)
    own = json.dumps([{"name": "own", "command": "test -f feature.txt"}])
    wt.commit("feature", {"feature.txt": "x\n", GATE_FILE: own})
    result = await merge(pool, config, **params_for(wt, repo, gateLevel="subset"))
    assert result["status"] == "merged", result
    assert result["gatesRan"] == 1 and result["gateSkipped"] == {"level": "subset"}


async def test_a_bad_gate_level_is_refused_before_anything(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    before = refs(repo)
    result = await merge(pool, config, **params_for(wt, repo, gateLevel="off"))
    assert result["status"] == "review_requested" and "gateLevel" in result["error"]
    assert refs(repo) == before


def _waiting_gate(folder: Path) -> str:
    """A gate that counts its runs and waits, in run n, for the file go.<n>."""
    return (
        f"echo run >> {folder}/runs; n=$(wc -l < {folder}/runs); touch {folder}/started.$n; "
        f"while [ ! -e {folder}/go.$n ]; do sleep 0.02; done"
    )


async def _move_base_during_run(repo: Repo, folder: Path, run: int) -> str:
    await wait_until(lambda: (folder / f"started.{run}").exists(), 20, f"gate run {run}")
    moved = repo.commit(f"landed from outside {run}", {f"outside-{run}.txt": "o\n"})
    (folder / f"go.{run}").touch()
    return moved


async def test_base_moving_while_the_gate_runs_replays_and_gates_again(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config, tmp_path: Path
) -> None:
    declare(repo, {"name": "waits", "command": _waiting_gate(tmp_path)})
    (tmp_path / "go.2").touch()
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    task = asyncio.create_task(merge(pool, config, **params_for(wt, repo)))
    outside = await _move_base_during_run(repo, tmp_path, 1)
    result = await task
    assert result["status"] == "merged", result
    assert (tmp_path / "runs").read_text() == "run\nrun\n"
    assert result["previousBaseSha"] == outside
    assert repo.git("rev-parse", "main~1").strip() == outside
    assert result["gatesRan"] == 1


async def test_base_moving_twice_while_gates_run_asks_for_review(
    pool: GitPool, repo: Repo, base_dir: Path, config: Config, tmp_path: Path
) -> None:
    declare(repo, {"name": "waits", "command": _waiting_gate(tmp_path)})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    task = asyncio.create_task(merge(pool, config, **params_for(wt, repo)))
    await _move_base_during_run(repo, tmp_path, 1)
    outside = await _move_base_during_run(repo, tmp_path, 2)
    result = await task
    assert result["status"] == "review_requested"
    assert result["error"] == GATES_RACED
    assert repo.git("rev-parse", "main").strip() == outside
    assert (tmp_path / "runs").read_text() == "run\nrun\n"


async def test_workspaces_gate_timeout_bounds_a_gate_without_its_own(
    pool: GitPool, repo: Repo, base_dir: Path
) -> None:
    declare(repo, {"name": "hangs", "command": "sleep 300"}, {"name": "quick", "command": "true"})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    before = refs(repo)
    result = await merge(pool, config_for(base_dir, gate_timeout="300ms"), **params_for(wt, repo))
    assert result["error"] == "land gate failed: hangs"
    assert result["gateFailure"]["timedOut"] is True
    assert "timed out after 0.3s" in result["gateFailure"]["outputTail"]
    assert refs(repo) == before


async def test_the_merge_timeout_covers_the_gates(
    pool: GitPool, repo: Repo, base_dir: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    declare(repo, {"name": "hangs", "command": command})
    wt = agent(repo, base_dir)
    wt.commit("feature", {"feature.txt": "x\n"})
    before = refs(repo)
    result = await merge(pool, config_for(base_dir, merge_timeout="6s"), **params_for(wt, repo))
    assert result["status"] == "review_requested"
    assert result["error"].startswith("merge timed out")
    assert refs(repo) == before
    spawned = [int(line) for line in pids.read_text().split()]
    await wait_until(lambda: all(gone(pid) for pid in spawned), 10, "gate processes gone")
