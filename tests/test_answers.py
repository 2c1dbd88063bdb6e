"""Answers given again from memory are exactly what git says after every kind of change.

Each change below is one thing an answer depends on; the answer asked after it must be
recomputed and agree with the git CLI, and an answer asked again with nothing changed must come
from memory.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostd import queries
from hostd.answers import Answers
from hostd.git import memo
from hostd.git.repocache import DEFAULT_AWAKE
from hostd.git.status import keep_counts
from tests.gitrepo import Repo, git, init_repo
from tests.test_diff import git_numstat, numstat


@pytest.fixture
def kept() -> Iterator[None]:
    """This process keeps counts and answers, as a git worker does."""
    keep_counts(True)
    queries.answers.clear()
    memo.forget()
    yield
    keep_counts(False)
    queries.answers.clear()
    memo.forget()


class Asker:
    """Asks the read queries about one worktree, telling answers from memory apart."""

    def __init__(self, agent: Repo, base_dir: Path) -> None:
        self.agent = agent
        self.base_dir = str(base_dir)

    def ask(self, endpoint: str, base: str | None = "main") -> tuple[dict[str, Any], bool]:
        path = str(self.agent.path)
        before = queries.answers.hits
        if endpoint == "probe":
            body = queries.probe_body(path, self.base_dir)
        elif endpoint == "state":
            body = queries.state_body(path, self.base_dir, base, None)
        elif endpoint == "diff":
            body = queries.diff_body(path, self.base_dir, base, None)
        else:
            body = queries.preview_body(path, self.base_dir, base, None, "rebase-ff")
        return body, queries.answers.hits > before


def oracle_state(agent: Repo, base: str = "main") -> dict[str, Any]:
    status = agent.git("--no-optional-locks", "status", "--porcelain").splitlines()
    behind, ahead = agent.git("rev-list", "--left-right", "--count", f"{base}...HEAD").split()
    branch = agent.git("symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
    return {
        "dirtyCount": len(status),
        "ahead": int(ahead),
        "behind": int(behind),
        "branch": branch or None,
        "sha": agent.head(),
    }


def seen_state(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "dirtyCount": body["dirtyCount"],
        "ahead": body.get("ahead"),
        "behind": body.get("behind"),
        "branch": body.get("branch"),
        "sha": body["lastCommit"]["sha"],
    }


def cherry_all_landed(agent: Repo, upstream: str) -> bool:
    lines = agent.git("cherry", upstream, "HEAD").splitlines()
    return bool(lines) and all(line.startswith("-") for line in lines)


Change = Callable[[Repo, Repo, Path], None]


def _edit(main: Repo, agent: Repo, base_dir: Path) -> None:
    agent.write("src/b.txt", "b changed\n")


def _untracked_folder(main: Repo, agent: Repo, base_dir: Path) -> None:
    agent.write("new/deeper/file.txt", "x\n")


def _stage(main: Repo, agent: Repo, base_dir: Path) -> None:
    agent.git("add", "notes.txt")


def _commit(main: Repo, agent: Repo, base_dir: Path) -> None:
    agent.commit("more", {"c.txt": "c\n"})


def _switch_branch(main: Repo, agent: Repo, base_dir: Path) -> None:
    agent.git("switch", "-q", "-c", "agent/two", "HEAD~1")


def _base_moves(main: Repo, agent: Repo, base_dir: Path) -> None:
    main.commit("main moves", {"m.txt": "m\n"})


def _base_moves_in_packed_refs(main: Repo, agent: Repo, base_dir: Path) -> None:
    main.git("pack-refs", "--all")
    tip = main.head()
    main.commit("main moves", {"m.txt": "m\n"})
    main.git("pack-refs", "--all")
    assert main.git("rev-parse", "main~1").strip() == tip


def _upstream_has_the_work(main: Repo, agent: Repo, base_dir: Path) -> None:
    main.commit("elsewhere", {"o.txt": "o\n"})
    main.git("cherry-pick", "agent/one")
    main.git("update-ref", "refs/remotes/origin/main", "main")


def _config_hides_untracked(main: Repo, agent: Repo, base_dir: Path) -> None:
    main.git("config", "status.showUntrackedFiles", "no")


def _global_ignore(main: Repo, agent: Repo, base_dir: Path) -> None:
    (base_dir / "excludes").write_text("notes.txt\n")


def _gitignore(main: Repo, agent: Repo, base_dir: Path) -> None:
    agent.write(".gitignore", "notes.txt\n")


def _base_in_a_new_ref_folder(main: Repo, agent: Repo, base_dir: Path) -> None:
    main.git("branch", "release/v1/main", "main")


CHANGES: dict[str, Change] = {
    "a tracked file is edited": _edit,
    "an untracked folder appears": _untracked_folder,
    "a file is staged": _stage,
    "the worktree commits": _commit,
    "the worktree switches branch": _switch_branch,
    "the base moves": _base_moves,
    "the base moves inside packed-refs": _base_moves_in_packed_refs,
    "the upstream gets the work": _upstream_has_the_work,
    "the configuration changes": _config_hides_untracked,
    "the global ignore file changes": _global_ignore,
    "a .gitignore appears": _gitignore,
    "the base is created in a new ref folder": _base_in_a_new_ref_folder,
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_every_change_is_seen_by_the_next_answer(
    kept: None, work: tuple[Repo, Repo], base_dir: Path, name: str
) -> None:
    main, agent = work
    asker = Asker(agent, base_dir)
    base = "release/v1/main" if "new ref folder" in name else "main"
    first, _ = asker.ask("state", base)
    again, from_memory = asker.ask("state", base)
    assert from_memory and again == first
    CHANGES[name](main, agent, base_dir)
    body, from_memory = asker.ask("state", base)
    assert not from_memory
    assert body.get("baseRef") == base
    assert seen_state(body) == oracle_state(agent, base)
    if name == "the upstream gets the work":
        assert body.get("landed") is True and cherry_all_landed(agent, "origin/main")
    assert asker.ask("state", base) == (body, True)


@pytest.mark.parametrize("endpoint", ["probe", "state", "diff", "merge-preview"])
def test_an_unchanged_worktree_is_answered_from_memory(
    kept: None, work: tuple[Repo, Repo], base_dir: Path, endpoint: str
) -> None:
    _, agent = work
    asker = Asker(agent, base_dir)
    first, from_memory = asker.ask(endpoint)
    assert not from_memory
    for _ in range(3):
        assert asker.ask(endpoint) == (first, True)
    agent.git("--no-optional-locks", "status")
    assert asker.ask(endpoint) == (first, True)


def test_a_sibling_branch_with_work_is_seen(
    kept: None, work: tuple[Repo, Repo], base_dir: Path
) -> None:
    main, _ = work
    agent = main.worktree(base_dir / "three", "agent/three")
    asker = Asker(agent, base_dir)
    assert "strandedBranches" not in asker.ask("state")[0]
    main.git("checkout", "-q", "-b", "agent/three-2")
    main.commit("stranded", {"s.txt": "s\n"})
    main.git("checkout", "-q", "main")
    body, from_memory = asker.ask("state")
    assert not from_memory
    assert [s["branch"] for s in body["strandedBranches"]] == ["agent/three-2"]
    main.git("pack-refs", "--all")
    main.git("branch", "-q", "-D", "agent/three-2")
    body, from_memory = asker.ask("state")
    assert not from_memory and "strandedBranches" not in body


def test_attributes_change_the_diff(kept: None, work: tuple[Repo, Repo], base_dir: Path) -> None:
    _, agent = work
    asker = Asker(agent, base_dir)
    merge_base = agent.git("merge-base", "main", "HEAD").strip()
    body, _ = asker.ask("diff")
    assert numstat(body) == git_numstat(agent, merge_base, "HEAD")
    agent.write(".gitattributes", "*.dat binary\n")
    body, from_memory = asker.ask("diff")
    assert not from_memory
    assert numstat(body) == git_numstat(agent, merge_base, "HEAD")
    assert "-\t-\tdata.dat" in numstat(body)


def test_a_conflict_appears_when_the_base_moves(
    kept: None, work: tuple[Repo, Repo], base_dir: Path
) -> None:
    main, agent = work
    (agent.path / "notes.txt").unlink()
    asker = Asker(agent, base_dir)
    assert asker.ask("merge-preview")[0]["conflict"] is False
    main.commit("clash", {"src/a.txt": "main's a\n"})
    body, from_memory = asker.ask("merge-preview")
    assert not from_memory
    rc = git(agent.path, "merge-tree", "--write-tree", "main", "HEAD", check=False)
    assert body["conflict"] is True and "src/a.txt" in rc
    assert body["conflictFiles"] == ["src/a.txt"]


def test_the_worktree_list_follows_worktrees(
    kept: None, work: tuple[Repo, Repo], base_dir: Path
) -> None:
    main, agent = work
    asker = Asker(agent, base_dir)

    def listed(body: dict[str, Any]) -> list[tuple[str, bool]]:
        return [(w["path"], bool(w.get("prunable"))) for w in body["worktrees"]]

    def git_listed() -> list[tuple[str, bool]]:
        entries = main.git("worktree", "list", "--porcelain").split("\n\n")
        return [
            (e.split("\n")[0].removeprefix("worktree "), "\nprunable" in e)
            for e in entries
            if e.strip()
        ]

    body, _ = asker.ask("probe")
    assert listed(body) == git_listed()
    other = main.worktree(base_dir / "other", "agent/other")
    body, from_memory = asker.ask("probe")
    assert not from_memory and listed(body) == git_listed()
    shutil.rmtree(other.path)
    body, from_memory = asker.ask("probe")
    assert not from_memory and listed(body) == git_listed()
    assert (str(other.path), True) in listed(body)
    other.path.mkdir()
    (other.path / ".git").write_text("gitdir: elsewhere\n")
    body, from_memory = asker.ask("probe")
    assert not from_memory and listed(body) == git_listed()


def test_a_folder_replaced_by_a_symlink_is_not_answered_from_memory(
    kept: None, work: tuple[Repo, Repo], base_dir: Path
) -> None:
    _, agent = work
    asker = Asker(agent, base_dir)
    asker.ask("state")
    moved = base_dir / "moved"
    agent.path.rename(moved)
    agent.path.symlink_to(base_dir / "elsewhere")
    body, from_memory = asker.ask("state")
    assert not from_memory and "error" in body


ACTIONS = st.lists(
    st.sampled_from(["edit", "add", "commit", "base", "stage", "clean", "branch", "ignore"]),
    min_size=1,
    max_size=6,
)


def act(main: Repo, agent: Repo, step: int, action: str) -> None:
    """One of ACTIONS, at `step` of a sequence."""
    if action == "edit":
        agent.write("README.md", f"edit {step}\n")
    elif action == "add":
        agent.write(f"dir{step % 2}/f{step}.txt", "new\n")
    elif action == "commit":
        agent.commit(f"c{step}", {f"c{step}.txt": "c\n"})
    elif action == "base":
        main.commit(f"b{step}", {f"b{step}.txt": "b\n"})
    elif action == "stage":
        agent.git("add", "-A")
    elif action == "clean":
        agent.git("reset", "-q", "--hard")
        agent.git("clean", "-qfd")
    elif action == "branch":
        agent.git("switch", "-q", "-C", f"agent/s{step}")
    else:
        agent.write(".gitignore", "dir0/\n" if step % 2 else "")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(actions=ACTIONS)
def test_random_changes_between_answers_match_git(
    kept: None, tmp_path_factory: pytest.TempPathFactory, actions: list[str]
) -> None:
    base_dir = tmp_path_factory.mktemp("base").resolve()
    main = init_repo(base_dir / "repo")
    agent = main.worktree(base_dir / "agent", "agent/one")
    asker = Asker(agent, base_dir)
    for step, action in enumerate(actions):
        act(main, agent, step, action)
        body, _ = asker.ask("state")
        assert seen_state(body) == oracle_state(agent)
        assert asker.ask("state") == (body, True)


@pytest.mark.parametrize(
    "name", ["a tracked file is edited", "a file is staged", "the worktree switches branch",
             "the configuration changes"],
)  # fmt: skip
def test_a_change_is_seen_when_the_repository_handle_slept_meanwhile(
    kept: None, work: tuple[Repo, Repo], base_dir: Path, name: str
) -> None:
    main, agent = work
    siblings = [main.worktree(base_dir / f"s{i}", f"agent/s{i}") for i in range(DEFAULT_AWAKE)]
    asker = Asker(agent, base_dir)
    asker.ask("state")
    for sibling in siblings:
        Asker(sibling, base_dir).ask("state")
    assert asker.ask("state")[1]
    CHANGES[name](main, agent, base_dir)
    for sibling in siblings:
        Asker(sibling, base_dir).ask("state")
    body, from_memory = asker.ask("state")
    assert not from_memory
    assert seen_state(body) == oracle_state(agent)


def test_the_worktrees_of_one_repository_share_their_probe_list(
    kept: None, work: tuple[Repo, Repo], base_dir: Path
) -> None:
    main, agent = work
    other = main.worktree(base_dir / "other", "agent/other")
    mine, theirs = Asker(agent, base_dir).ask("probe")[0], Asker(other, base_dir).ask("probe")[0]
    assert mine["worktrees"] is theirs["worktrees"]
    assert [w["path"] for w in mine["worktrees"]] == [
        line.removeprefix("worktree ")
        for line in main.git("worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def test_a_kept_answer_is_encoded_once_and_its_text_counts_in_the_bound() -> None:
    kept = Answers()
    body: dict[str, Any] = {"files": [{"path": "a.txt", "patch": "+a\n"}], "dirtyCount": 1}
    kept.put("query", "token", body)
    weight = kept.weight
    text = kept.encoded(body)
    assert json.loads(text) == body
    assert kept.encoded(body) is text
    assert kept.weight == weight + len(text)
    fresh = kept.encoded(dict(body))
    assert fresh == text and fresh is not text
    kept.put("query", "token 2", {"dirtyCount": 0})
    assert kept.encoded(body) is not text
