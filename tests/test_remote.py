"""Fetch and push with the git executable against a local bare origin; timeouts end the group."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pygit2
import pytest

from hostd.git.remote import RemoteError, branch_upstream, fetch, push, remote_sha, run_tool
from tests.gitrepo import Repo, clone_with_origin, git


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child-started"
    child = f"import time, pathlib; pathlib.Path({str(marker)!r}).write_text('x'); time.sleep(60)"
    script = (
        "import pathlib, subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); "
        f"[time.sleep(0.01) for _ in iter(lambda: pathlib.Path({str(marker)!r}).exists(), True)]; "
        "time.sleep(60)"
    )
    with pytest.raises(RemoteError, match="timed out after 10s"):
        run_tool([sys.executable, "-c", script], None, 10.0, "slow tool")
    assert marker.exists()
    left = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(str(marker) in part for part in p.info["cmdline"] or [])
    ]
    assert left == []


def test_upstream_fetch_and_leased_push(tmp_path: Path) -> None:
    repo, origin = clone_with_origin(tmp_path)
    real = pygit2.Repository(str(repo.path))
    up = branch_upstream(real, "main")
    assert up is not None
    assert (up.remote, up.merge_ref, up.tracking_ref) == (
        "origin",
        "refs/heads/main",
        "refs/remotes/origin/main",
    )
    other = Repo(tmp_path / "other")
    git(tmp_path, "clone", "-q", str(origin), str(other.path))
    moved = other.commit("moved", {"m.txt": "m\n"})
    other.git("push", "-q", "origin", "HEAD:main")
    fetch(str(real.path), up, 30)
    assert repo.git("rev-parse", "origin/main").strip() == moved
    assert remote_sha(str(real.path), "origin", "refs/heads/main", 30) == moved
    assert remote_sha(str(real.path), "origin", "refs/heads/nope", 30) is None
    local = repo.commit("local", {"l.txt": "l\n"})
    stale = push(str(real.path), "origin", local, "refs/heads/main", local, 30)
    assert not stale.ok and stale.rejected
    assert git(origin, "rev-parse", "main").strip() == moved
    new = push(str(real.path), "origin", local, "refs/heads/topic", "", 30)
    assert new.ok and git(origin, "rev-parse", "topic").strip() == local
    assert push(str(real.path), "origin", local, "refs/heads/topic", "", 30).ok  # up to date
    later = repo.commit("later", {"l.txt": "later\n"})
    again = push(str(real.path), "origin", later, "refs/heads/topic", "", 30)
    assert not again.ok and again.rejected
    assert git(origin, "rev-parse", "topic").strip() == local


def test_no_upstream_and_local_upstream(repo: Repo) -> None:
    real = pygit2.Repository(str(repo.path))
    assert branch_upstream(real, "main") is None
    repo.git("branch", "topic")
    repo.git("branch", "--set-upstream-to=main", "topic")
    assert branch_upstream(real, "topic") is None
    assert branch_upstream(real, "no-such-branch") is None


def test_fetch_of_a_missing_remote_is_a_clear_error(tmp_path: Path) -> None:
    repo, origin = clone_with_origin(tmp_path)
    real = pygit2.Repository(str(repo.path))
    up = branch_upstream(real, "main")
    assert up is not None
    origin.rename(tmp_path / "moved-away.git")
    with pytest.raises(RemoteError, match=r"does not appear to be a git repository|not found"):
        fetch(str(real.path), up, 30)
