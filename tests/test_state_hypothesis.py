"""Random commit graphs and worktree edits: workspace_state must agree with the git CLI."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gitrepo import Repo, git_rc, init_repo
from tests.test_state import check

FILES = ["a.txt", "b.txt", "dir/c.txt", "bin.dat"]
LINES = ["alpha", "beta", "gamma", "delta", "  spaced", "\tindented"]

edit = st.tuples(st.sampled_from(FILES), st.lists(st.sampled_from(LINES), min_size=0, max_size=4))
step = st.one_of(
    st.tuples(st.sampled_from(["main", "work", "work", "side"]), edit),
    st.tuples(st.sampled_from(["main", "work"]), edit),
    st.tuples(st.sampled_from(["merge main into work", "merge work into main"]), st.none()),
    st.tuples(st.just("pick"), st.integers(0, 6)),
    st.tuples(st.just("pick"), st.integers(0, 6)),
)
worktree_edit = st.tuples(
    st.sampled_from(["modify", "untracked", "stage new", "delete", "rename"]),
    st.sampled_from(FILES),
)


@contextmanager
def commit_dates() -> Iterator[list[int]]:
    """Commit dates come from the yielded clock; several commits share a second."""
    saved = {k: os.environ.get(k) for k in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")}
    clock = [1_700_000_000]
    try:
        yield clock
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tick(clock: list[int], delta: int) -> None:
    clock.append(clock[-1] + delta)
    stamp = f"@{clock[-1]} +0000"
    os.environ["GIT_AUTHOR_DATE"] = os.environ["GIT_COMMITTER_DATE"] = stamp


def _content(name: str, lines: list[str]) -> str | bytes:
    text = "".join(line + "\n" for line in lines)
    return b"\0" + text.encode() if name.endswith(".dat") else text


def _try(repo: Repo, *args: str, abort: str) -> None:
    if git_rc(repo.path, *args)[0] != 0:
        git_rc(repo.path, abort, "--abort")


def _apply(trees: dict[str, Repo], kind: str, arg: object) -> None:
    main, work = trees["main"], trees["work"]
    if kind in trees:
        name, lines = arg  # type: ignore[misc]
        trees[kind].commit(f"{kind} {name}", {name: _content(name, lines)}, allow_empty=True)
    elif kind == "merge main into work":
        _try(work, "merge", "-q", "--no-edit", "-X", "theirs", "main", abort="merge")
    elif kind == "merge work into main":
        _try(main, "merge", "-q", "--no-edit", "--no-ff", "-X", "theirs", "agent/w", abort="merge")
    else:
        shas = work.git("rev-list", "--no-merges", "main..agent/w").split()
        if shas:
            sha = shas[int(arg) % len(shas)]  # type: ignore[call-overload]
            _try(main, "cherry-pick", "-X", "theirs", sha, abort="cherry-pick")


def _edit_worktree(work: Repo, kind: str, name: str) -> None:
    path = work.path / name
    if kind == "modify" and path.exists():
        work.write(name, _content(name, ["modified"]))
    elif kind == "untracked":
        work.write(f"new/{name}", "untracked\n")
    elif kind == "stage new":
        work.write(f"staged-{Path(name).name}", "staged\n")
        work.git("add", f"staged-{Path(name).name}")
    elif kind == "delete" and path.exists():
        path.unlink()
    elif kind == "rename" and path.exists() and not (work.path / f"{name}.moved").exists():
        work.git("mv", name, f"{name}.moved")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    steps=st.lists(step, max_size=10),
    ticks=st.lists(st.integers(-1, 2), min_size=12, max_size=12),  # -1: clock skew
    edits=st.lists(worktree_edit, max_size=4),
)
def test_random_graphs_agree_with_git(steps, ticks, edits) -> None:
    with tempfile.TemporaryDirectory() as tmp, commit_dates() as clock:
        _tick(clock, 0)
        base = Path(tmp).resolve()
        main = init_repo(base / "repo")
        main.commit("seed", {name: _content(name, ["seed"]) for name in FILES})
        trees = {
            "main": main,
            "work": main.worktree(base / "work", "agent/w"),
            "side": main.worktree(base / "side", "agent/w-1"),
        }
        for (kind, arg), delta in zip(steps, ticks, strict=False):
            _tick(clock, delta)
            _apply(trees, kind, arg)
        for kind, name in edits:
            _edit_worktree(trees["work"], kind, name)
        for spec in ("main", "agent/w-1"):
            check(trees["work"].path, spec)
        check(trees["side"].path, "main")
