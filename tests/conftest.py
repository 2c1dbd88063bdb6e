"""Test isolation: git and pygit2 see only a private HOME with a fixed identity."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="hostd-test-home-"))
(_HOME / ".gitconfig").write_text(
    "[user]\n\tname = Test Author\n\temail = author@example.com\n"
    "[init]\n\tdefaultBranch = main\n"
    '[protocol "file"]\n\tallow = always\n'
    "[advice]\n\tdetachedHead = false\n"
)
os.environ.update(
    {
        "HOME": str(_HOME),
        "XDG_CONFIG_HOME": str(_HOME / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "TZ": "UTC",
    }
)
for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "HOSTD_CONFIG"):
    os.environ.pop(name, None)

import pytest  # noqa: E402

from tests.gitrepo import Repo, clone_with_origin, init_repo  # noqa: E402

pytest_plugins = ["tests.relay_harness"]


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """The folder hostd serves; tests build repositories inside it."""
    base = tmp_path / "base"
    base.mkdir()
    return base.resolve()


@pytest.fixture
def repo(base_dir: Path) -> Repo:
    return init_repo(base_dir / "repo")


@pytest.fixture
def work(base_dir: Path) -> tuple[Repo, Repo]:
    """A clone whose `main` tracks `origin/main`, and its worktree on `agent/one`, one commit
    ahead and dirty."""
    main, _ = clone_with_origin(base_dir)
    main.commit("base", {"src/a.txt": "a\n", "src/b.txt": "b\n", "data.dat": "1\n2\n"})
    main.git("push", "-q", "origin", "main")
    agent = main.worktree(base_dir / "agent", "agent/one")
    agent.commit("work", {"src/a.txt": "a2\n", "data.dat": "1\n3\n"})
    agent.write("notes.txt", "untracked\n")
    main.git("config", "core.excludesFile", str(base_dir / "excludes"))
    return main, agent
