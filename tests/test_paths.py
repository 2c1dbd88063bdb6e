"""`real_path` resolves exactly as `os.path.realpath` does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostd.git.paths import real_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "up").symlink_to("..")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a" / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "a" / "fifo")
    return tmp_path


@pytest.mark.parametrize(
    "rel",
    [
        "a/b/file",
        "link/b",
        "link/b/../b/file",
        "a/up/link/up",
        "loop",
        "dangling",
        "dangling/below",
        "missing/deeper",
        "a/fifo",
        "a/b/file/",
        ".",
    ],
)
def test_real_path_is_realpath(tree: Path, rel: str) -> None:
    path = os.path.join(tree, rel)
    assert real_path(path) == os.path.realpath(path)


def test_a_relative_path_resolves_from_the_current_directory(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree / "link")
    assert real_path("b") == os.path.realpath("b") == str(tree / "a" / "b")
