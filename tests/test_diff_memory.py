"""The diff of a file too large to read: counted as binary the way git counts a file above
core.bigFileThreshold, never read whole by the worker, and the patch stops before it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostd import queries
from hostd.gitpool import GitPool
from tests.gitrepo import Repo, init_repo

BLOB_LINES = 1_000_000  # 48 MB


def big_text(version: int) -> bytes:
    line = b"%07d version %d of a generated line, some text\n"
    return b"".join(line % (i, version if i % 3 == 0 else 0) for i in range(BLOB_LINES))


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Repo]:
    base_dir = tmp_path_factory.mktemp("big").resolve()
    repo = init_repo(base_dir / "repo")
    repo.commit("base", {"big.txt": big_text(1), "a.txt": "one\n"})
    repo.git("checkout", "-q", "-b", "work")
    repo.commit("work", {"big.txt": big_text(2), "a.txt": "two\n"})
    return base_dir, repo


def peak_rss(pid: int) -> int:
    """VmHWM of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize(("repo_threshold", "max_file"), [("16m", 2**30), (None, queries.MAX_FILE)])
async def test_a_file_above_the_limit_is_binary_and_never_read_whole(
    big_repo: tuple[Path, Repo], repo_threshold: str | None, max_file: int
) -> None:
    base_dir, repo = big_repo
    if repo_threshold is None:
        repo.git("config", "--unset-all", "core.bigFileThreshold", check=False)
    else:
        repo.git("config", "core.bigFileThreshold", repo_threshold)
    size = (repo.path / "big.txt").stat().st_size
    assert size > max(16 * 2**20, queries.MAX_FILE)
    pool = GitPool(1)
    try:
        key = str(repo.path)
        pid = await pool.run(os.getpid, key=key)
        before = peak_rss(pid)
        body = await pool.run(
            queries.diff_body, key, str(base_dir), "main", None, True, max_file, key=key
        )
        assert await pool.run(os.getpid, key=key) == pid
        grown = peak_rss(pid) - before
    finally:
        pool.shutdown()
    assert grown < size // 4, f"the worker's peak grew by {grown >> 20} MB"

    limit = repo_threshold or f"{max_file}"
    numstat = repo.git("-c", f"core.bigFileThreshold={limit}", "diff", "--numstat", "main", "HEAD")
    assert [(f["path"], f.get("additions"), f.get("deletions")) for f in body["files"]] == [
        (path, None if adds == "-" else int(adds), None if dels == "-" else int(dels))
        for adds, dels, path in (line.split("\t") for line in numstat.splitlines())
    ]
    assert [f["binary"] for f in body["files"]] == [False, True]
    patch = repo.git("-c", f"core.bigFileThreshold={limit}", "diff", "--binary", "main", "HEAD")
    assert body["truncated"] is True
    assert patch.startswith(body["patch"]) and "a/a.txt" in body["patch"]
    assert "big.txt" not in body["patch"]


async def test_an_uncommitted_file_above_the_limit_is_not_read_whole(
    big_repo: tuple[Path, Repo],
) -> None:
    base_dir, repo = big_repo
    repo.git("config", "--unset-all", "core.bigFileThreshold", check=False)
    repo.write("big.txt", big_text(3) + b"one more line\n")
    size = (repo.path / "big.txt").stat().st_size
    pool = GitPool(1)
    try:
        key = str(repo.path)
        pid = await pool.run(os.getpid, key=key)
        before = peak_rss(pid)
        body = await pool.run(queries.diff_body, key, str(base_dir), None, None, key=key)
        grown = peak_rss(pid) - before
        threshold = f"core.bigFileThreshold={queries.MAX_FILE}"
        numstat = repo.git("-c", threshold, "diff", "--numstat", "HEAD")
    finally:
        pool.shutdown()
        repo.git("checkout", "--", "big.txt")
    assert grown < size // 4, f"the worker's peak grew by {grown >> 20} MB"
    assert body["files"] == [{"path": "big.txt", "binary": True, "newPath": "big.txt"}]
    assert body["truncated"] is True and "patch" not in body
    assert numstat == "-\t-\tbig.txt\n"
