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

from tests.gitrepo import Repo, init_repo  # noqa: E402

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
