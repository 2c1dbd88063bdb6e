"""`hostd merge` on the command line: rebase-ff, the pr strategy against a fake `gh` put first
on PATH and a local bare origin, and two merges of one repository serialized by its file lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.gitrepo import Repo, clone_with_origin, git
from tests.procs import hostd_command, run_hostd, wait_for

FAKE_GH = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "cwd": os.getcwd()}}) + "\\n")
url = "https://github.example/acme/app/pull/7"
if args[:2] == ["pr", "create"]:
    if os.environ.get("FAKE_GH_FAIL"):
        sys.exit("HTTP 422: Validation Failed")
    if os.environ.get("FAKE_GH_EXISTS"):
        sys.exit('a pull request for branch "agent/one" into branch "main" already exists:\\n'
                 + url)
    print(url)
elif args[:2] == ["pr", "view"]:
    print(json.dumps({{"url": url, "number": 7, "state": "OPEN"}}))
elif args[:2] == ["pr", "merge"]:
    if os.environ.get("FAKE_GH_REFUSE_AUTO"):
        sys.exit("auto-merge is not allowed for this repository")
"""


def fake_gh(tmp: Path) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable))
    gh.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GH_LOG": str(tmp / "gh.log")}


def gh_calls(tmp: Path) -> list[list[str]]:
    log = tmp / "gh.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line)["args"] for line in lines]


def hostd_merge(base_dir: Path, path: Path, *args: str, env: dict[str, str] | None = None):
    proc = run_hostd("merge", "--base-dir", str(base_dir), str(path), *args, env=env)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else proc.stderr


def agent(repo: Repo, base_dir: Path, name: str = "one") -> Repo:
    return repo.worktree(base_dir / ".agent-relay" / "workspaces" / name, f"agent/{name}", "main")


def test_merge_lands_and_exits_zero(repo: Repo, base_dir: Path) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "1\n"})
    repo.commit("m1", {"m.txt": "m\n"})
    code, result = hostd_merge(base_dir, wt.path, "--base", "main")
    assert code == 0, result
    assert result["status"] == "merged" and result["strategy"] == "rebase-ff"
    assert result["mergedSha"] == repo.git("rev-parse", "main").strip()
    assert not wt.path.exists()


def test_merge_without_base_uses_the_default_branch_and_keep_branch(
    repo: Repo, base_dir: Path
) -> None:
    wt = agent(repo, base_dir)
    wt.commit("f1", {"f.txt": "1\n"})
    code, result = hostd_merge(base_dir, wt.path, "--keep-branch")
    assert code == 0, result
    assert result["status"] == "active" and result["baseRef"] == "main"
    assert result["branchAdvanced"] is True and wt.path.exists()


def test_conflict_exits_non_zero(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"s.txt": "1\n2\n"})
    wt = agent(repo, base_dir)
    wt.commit("f1", {"s.txt": "agent\n2\n"})
    repo.commit("m1", {"s.txt": "main\n2\n"})
    code, result = hostd_merge(base_dir, wt.path, "--base", "main")
    assert code == 1
    assert result["status"] == "conflict" and result["conflictFiles"] == ["s.txt"]


def _pr_repo(tmp: Path, base_dir: Path) -> tuple[Repo, Path, Repo, str]:
    repo, origin = clone_with_origin(base_dir, "app")
    wt = agent(repo, base_dir)
    head = wt.commit("Add the feature", {"f.txt": "1\n"})
    return repo, origin, wt, head


def test_pr_pushes_the_pinned_head_opens_the_pr_and_arms_auto_merge(
    tmp_path: Path, base_dir: Path
) -> None:
    repo, origin, wt, head = _pr_repo(tmp_path, base_dir)
    env = fake_gh(tmp_path)
    code, result = hostd_merge(base_dir, wt.path, "--base", "main", env=env)
    assert code == 0, result
    assert result["status"] == "merge_planned" and result["strategy"] == "pr"
    assert result["merged"] is False and result["pushed"] is True
    assert result["prUrl"] == "https://github.example/acme/app/pull/7"
    assert result["prNumber"] == 7 and result["autoMergeArmed"] is True
    assert git(origin, "rev-parse", "refs/heads/agent/one").strip() == head
    calls = gh_calls(tmp_path)
    assert calls[0][:6] == ["pr", "create", "--head", "agent/one", "--base", "main"]
    assert calls[0][6:8] == ["--title", "Add the feature"]
    assert calls[-1] == ["pr", "merge", "--auto", "--merge", "agent/one"]
    assert wt.path.exists() and repo.git("rev-parse", "main").strip() != head


def test_pr_redelivered_reuses_the_existing_pr_and_auto_merge_refusal_is_no_error(
    tmp_path: Path, base_dir: Path
) -> None:
    _, origin, wt, head = _pr_repo(tmp_path, base_dir)
    env = fake_gh(tmp_path)
    assert hostd_merge(base_dir, wt.path, "--base", "main", env=env)[0] == 0
    again = {**env, "FAKE_GH_EXISTS": "1", "FAKE_GH_REFUSE_AUTO": "1"}
    code, result = hostd_merge(base_dir, wt.path, "--base", "main", "--strategy", "pr", env=again)
    assert code == 0, result
    assert result["status"] == "merge_planned" and result["prNumber"] == 7
    assert result["autoMergeArmed"] is False and "error" not in result
    assert ["pr", "view", "agent/one", "--json", "url,number,state"] in gh_calls(tmp_path)
    assert git(origin, "rev-parse", "refs/heads/agent/one").strip() == head


def test_pr_refused_by_gh_is_review_requested_with_its_message(
    tmp_path: Path, base_dir: Path
) -> None:
    _, _, wt, _ = _pr_repo(tmp_path, base_dir)
    env = {**fake_gh(tmp_path), "FAKE_GH_FAIL": "1"}
    code, result = hostd_merge(base_dir, wt.path, "--base", "main", "--strategy", "pr", env=env)
    assert code == 1
    assert result["status"] == "review_requested" and "HTTP 422" in result["error"]


def test_auto_without_gh_is_rebase_ff(tmp_path: Path, base_dir: Path) -> None:
    repo, origin, wt, _ = _pr_repo(tmp_path, base_dir)
    path = ":".join(p for p in os.environ["PATH"].split(":") if not Path(p, "gh").exists())
    code, result = hostd_merge(base_dir, wt.path, "--base", "main", env={"PATH": path})
    assert code == 0, result
    assert result["strategy"] == "rebase-ff" and result["pushed"] is True
    assert git(origin, "rev-parse", "main").strip() == repo.git("rev-parse", "main").strip()


def test_two_merges_of_one_repository_are_serialized(tmp_path: Path, base_dir: Path) -> None:
    """The first merge is held at its swap; the second waits for the repository's file lock
    until the first process is gone, then lands on a base the first left consistent."""
    repo = Repo(base_dir / "repo")
    git(base_dir, "init", "-q", "-b", "main", str(repo.path))
    repo.commit("initial", {"README.md": "hello\n"})
    first, second = agent(repo, base_dir, "one"), agent(repo, base_dir, "two")
    first.commit("one", {"one.txt": "1\n"})
    second.commit("two", {"two.txt": "2\n"})
    before = repo.head()
    marker = tmp_path / "paused"
    env: dict[str, Any] = {
        **os.environ,
        "HOSTD_TEST_HANDLERS": "1",
        "HOSTD_TEST_PAUSE": "merge:swapping",
        "HOSTD_TEST_PAUSE_FILE": str(marker),
    }
    args = ["merge", "--base-dir", str(base_dir), "--base", "main"]
    held = subprocess.Popen(hostd_command(*args, str(first.path)), env=env, stderr=subprocess.PIPE)
    waiting = None
    try:
        wait_for(marker.exists, 30)
        waiting = subprocess.Popen(
            hostd_command(*args, str(second.path)),
            env={k: v for k, v in env.items() if not k.startswith("HOSTD_TEST_PAUSE")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert waiting.stderr is not None
        line = waiting.stderr.readline().decode()
        assert "held by another process" in line, line
        assert repo.head() == before
        held.kill()
        held.wait(30)
        out, _ = waiting.communicate(timeout=60)
    finally:
        for proc in (held, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
    result = json.loads(out)
    assert waiting.returncode == 0, result
    assert result["previousBaseSha"] == before
    assert repo.git("show", "main:two.txt") == "2\n"
    assert first.path.exists() and repo.git("fsck", "--no-progress") == ""
