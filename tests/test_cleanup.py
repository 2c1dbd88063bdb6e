"""workspace.cleanup against real repositories, every safety rule tried to break it; git is the
oracle: refs, reachable objects, the worktree list and the worktree's files before and after."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hostd.commands.cleanup import CleanupHandler, cleanup_in_worker, cleanup_params
from hostd.commands.local import run_locally
from hostd.commands.target import Environment
from hostd.config import load_config
from hostd.git.cleanproof import MIN_INDEX_BYTES
from tests.gitrepo import Repo, clone_with_origin, git, init_repo

COMMITTER = "hostd <hostd@localhost>"


def env_for(base_dir: Path) -> Environment:
    return Environment(str(base_dir), str(base_dir / ".agent-relay" / "workspaces"), COMMITTER)


def cleanup(base_dir: Path, **params: Any) -> dict[str, Any]:
    return cleanup_in_worker(cleanup_params(params), env_for(base_dir))


def workspace(repo: Repo, base_dir: Path, name: str = "ws1", branch: str = "agent/one") -> Repo:
    return repo.worktree(base_dir / ".agent-relay" / "workspaces" / name / "wt", branch)


def tree_files(root: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    if not root.exists():
        return found
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            full = Path(folder, name)
            found[str(full.relative_to(root))] = full.read_bytes()
    return found


def fingerprint(repo: Repo, *worktrees: Path) -> tuple[Any, ...]:
    """Refs, every reachable object, the worktree list and the worktrees' files."""
    return (
        repo.git("for-each-ref", "--format=%(refname) %(objectname)"),
        sorted(repo.git("rev-list", "--all", "--objects").splitlines()),
        repo.git("worktree", "list", "--porcelain"),
        [tree_files(w) for w in worktrees],
    )


def listed_paths(repo: Repo) -> list[str]:
    out = repo.git("worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def branches(repo: Repo) -> list[str]:
    return repo.git("for-each-ref", "--format=%(refname:short)", "refs/heads").split()


def assert_removed(repo: Repo, wt: Repo) -> None:
    assert not wt.path.exists()
    assert str(wt.path) not in listed_paths(repo)
    assert repo.git("worktree", "prune", "--dry-run", "-v") == ""
    repo.git("fsck", "--no-progress")


def assert_refused(
    base_dir: Path, repo: Repo, paths: list[Path], message: str, **params: Any
) -> dict[str, Any]:
    before = fingerprint(repo, *paths)
    result = cleanup(base_dir, **params)
    assert result["removed"] is False
    assert message in result["error"], result
    assert fingerprint(repo, *paths) == before
    return result


def test_clean_agent_worktree_goes_with_its_branch(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    objects = sorted(repo.git("rev-list", "--all", "--objects").splitlines())
    result = cleanup(
        base_dir, workspaceId="ws1", worktreePath=str(wt.path), repoRoot=str(repo.path)
    )
    assert result == {"removed": True, "branchDeleted": True, "containerRemoved": True}
    assert_removed(repo, wt)
    assert branches(repo) == ["main"]
    assert sorted(repo.git("rev-list", "--all", "--objects").splitlines()) == objects
    assert not wt.path.parent.exists() and wt.path.parent.parent.exists()


def test_removal_deletes_every_folder_and_follows_no_symlink(
    base_dir: Path, repo: Repo, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the worktree's\n")
    wt = workspace(repo, base_dir)
    files = {f"d{i}/sub{j}/f{k}.txt": f"{i} {j} {k}\n" for i in range(6) for j in range(3)
             for k in range(4)}  # fmt: skip
    os.symlink(outside, wt.path / "linked-folder")
    wt.commit("folders and links", files)
    os.symlink(outside / "keep.txt", wt.path / "d0" / "linked-file")
    wt.commit("a link to a file outside", {})
    repo.git("merge", "-q", "--ff-only", "agent/one")
    (wt.path / "d1" / "ignored-build").mkdir()
    (wt.path / ".gitignore").write_text("ignored-build/\n")
    wt.git("add", ".gitignore")
    wt.git("commit", "-q", "-m", "ignore")
    repo.git("merge", "-q", "--ff-only", "agent/one")
    (wt.path / "d1" / "ignored-build" / "out.o").write_bytes(b"\0")
    result = cleanup(base_dir, worktreePath=str(wt.path))
    assert result["removed"] is True, result
    assert_removed(repo, wt)
    assert tree_files(outside) == {"keep.txt": b"not the worktree's\n"}
    assert not any(p.name.startswith(".hostd-removing-") for p in wt.path.parent.parent.iterdir())


def test_landed_commits_are_safe(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.commit("agent work", {"a.txt": "a\n"})
    repo.git("merge", "-q", "--ff-only", "agent/one")
    result = cleanup(base_dir, worktreePath=str(wt.path))
    assert result["removed"] is True and result["branchDeleted"] is True
    assert_removed(repo, wt)


@pytest.mark.parametrize("how", ["squash", "cherry-pick", "squash-on-origin"])
def test_squashed_and_cherry_picked_work_is_safe(base_dir: Path, how: str) -> None:
    repo, origin = clone_with_origin(base_dir)
    wt = workspace(repo, base_dir)
    wt.commit("one", {"a.txt": "a\n"})
    wt.commit("two", {"b.txt": "b\n", "a.txt": "a2\n"})
    repo.commit("unrelated on main", {"m.txt": "m\n"})
    if how == "cherry-pick":
        repo.git("cherry-pick", "agent/one~1", "agent/one")
    elif how == "squash":
        repo.git("merge", "-q", "--squash", "agent/one")
        repo.git("commit", "-q", "-m", "squashed")
    else:
        scratch = base_dir / "scratch"
        git(base_dir, "clone", "-q", str(origin), str(scratch))
        git(scratch, "fetch", "-q", str(repo.path), "agent/one")
        git(scratch, "merge", "-q", "--squash", "FETCH_HEAD")
        git(scratch, "commit", "-q", "-m", "squashed on the forge")
        git(scratch, "push", "-q", "origin", "main")
        repo.git("fetch", "-q", "origin")
    landing = "origin/main" if how == "squash-on-origin" else "main"
    merged = repo.git("merge-tree", "--write-tree", landing, "agent/one").split()[0]
    assert merged == repo.git("rev-parse", f"{landing}^{{tree}}").strip()
    result = cleanup(base_dir, worktreePath=str(wt.path))
    assert result["removed"] is True and result["branchDeleted"] is True, result
    assert_removed(repo, wt)


def test_unlanded_commits_are_refused_with_their_count(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.commit("one", {"a.txt": "a\n"})
    wt.commit("two", {"b.txt": "b\n"})
    cherry = repo.git("cherry", "main", "agent/one").count("+")
    assert cherry == 2
    assert_refused(
        base_dir,
        repo,
        [wt.path],
        f"refusing to remove {wt.path}: 2 unlanded commit(s)",
        worktreePath=str(wt.path),
    )


def test_unrelated_history_is_unknown_and_refused(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.git("checkout", "-q", "--orphan", "agent/orphan")
    wt.git("rm", "-q", "-rf", ".")
    wt.commit("unrelated root", {"README.md": "another project\n"})
    assert git(wt.path, "merge-base", "main", "HEAD", check=False) == ""
    assert_refused(base_dir, repo, [wt.path], "unlanded commit(s)", worktreePath=str(wt.path))


@pytest.mark.parametrize(
    "dirty",
    [
        lambda wt: wt.write("untracked.txt", "u\n"),
        lambda wt: (wt.write("README.md", "staged\n"), wt.git("add", "README.md")),
        lambda wt: wt.write("README.md", "unstaged\n"),
        lambda wt: (wt.git("config", "status.showUntrackedFiles", "no"), wt.write("u/x", "x")),
    ],
    ids=["untracked", "staged", "unstaged", "untracked-hidden-by-config"],
)
def test_dirty_worktree_is_refused(base_dir: Path, repo: Repo, dirty: Any) -> None:
    wt = workspace(repo, base_dir)
    dirty(wt)
    assert_refused(base_dir, repo, [wt.path], "1 uncommitted change(s)", worktreePath=str(wt.path))


@pytest.fixture
def large_workspace(base_dir: Path, repo: Repo) -> Repo:
    """A workspace whose index passes the size where the threaded clean proof is used."""
    files = {f"folder-{n % 40:02}/sub-{n % 7}/file-number-{n:05}.txt": "" for n in range(4_000)}
    repo.commit("many files", files)
    wt = workspace(repo, base_dir)
    assert (Path(wt.git("rev-parse", "--git-dir").strip()) / "index").stat().st_size > (
        MIN_INDEX_BYTES
    )
    return wt


@pytest.mark.parametrize(
    "dirty",
    [
        lambda wt: wt.write("folder-07/sub-3/new.txt", "u\n"),
        lambda wt: wt.write("folder-39/sub-1/file-number-00039.txt", "edited\n"),
    ],
    ids=["untracked", "unstaged"],
)
def test_a_large_dirty_worktree_is_refused(
    base_dir: Path, repo: Repo, large_workspace: Repo, dirty: Any
) -> None:
    dirty(large_workspace)
    paths = [large_workspace.path]
    assert_refused(base_dir, repo, paths, "1 uncommitted change(s)", worktreePath=str(paths[0]))


def test_a_large_clean_worktree_goes(base_dir: Path, repo: Repo, large_workspace: Repo) -> None:
    result = cleanup(base_dir, worktreePath=str(large_workspace.path))
    assert result["removed"] is True, result
    assert_removed(repo, large_workspace)


def test_ignored_files_count_as_clean(base_dir: Path, repo: Repo) -> None:
    repo.commit("ignore logs", {".gitignore": "*.log\nbuild/\n"})
    wt = workspace(repo, base_dir)
    wt.write("debug.log", "noise\n")
    wt.write("build/out.o", "obj\n")
    assert wt.git("status", "--porcelain") == ""
    result = cleanup(base_dir, worktreePath=str(wt.path))
    assert result["removed"] is True
    assert_removed(repo, wt)


def test_force_needs_a_reason(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.write("untracked.txt", "u\n")
    for reason in (None, "", "   ", 7):
        params: dict[str, Any] = {"worktreePath": str(wt.path), "force": True}
        if reason is not None:
            params["reason"] = reason
        if reason == 7:
            with pytest.raises(ValueError, match="reason: expected a string"):
                cleanup(base_dir, **params)
            continue
        assert_refused(base_dir, repo, [wt.path], "force needs a non-empty reason", **params)
    assert_refused(
        base_dir,
        repo,
        [wt.path],
        "uncommitted",
        worktreePath=str(wt.path),
        force="true",
        reason="r",
    )


def test_force_with_reason_snapshots_and_keeps_the_branch(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.commit("unlanded", {"work.txt": "w\n"})
    wt.write("work.txt", "changed\n")
    wt.write("new/untracked.txt", "u\n")
    head = wt.head()
    result = cleanup(
        base_dir, workspaceId="ws/1", worktreePath=str(wt.path), force=True, reason="agent crashed"
    )
    snapshot = result["snapshotRef"]
    assert snapshot.startswith("refs/hostd/snapshots/ws-1-")
    assert result["removed"] is True and result["branchDeleted"] is False
    assert result["branchPreservedReason"] == "kept by a forced cleanup"
    assert_removed(repo, wt)
    assert repo.git("rev-parse", "agent/one").strip() == head
    assert repo.git("show", f"{snapshot}:work.txt") == "changed\n"
    assert repo.git("show", f"{snapshot}:new/untracked.txt") == "u\n"
    assert repo.git("rev-parse", f"{snapshot}^1").strip() == head
    assert "agent crashed" in repo.git("log", "-1", "--format=%B", snapshot)


def test_force_keeps_detached_commits_reachable(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.git("checkout", "-q", "--detach")
    detached = wt.commit("detached work", {"d.txt": "d\n"})
    result = cleanup(base_dir, worktreePath=str(wt.path), force=True, reason="abandoned")
    assert result["removed"] is True
    assert detached in repo.git("rev-list", result["snapshotRef"])


def test_main_worktree_is_never_removed(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    assert_refused(
        base_dir,
        repo,
        [repo.path, wt.path],
        "it is the main worktree",
        worktreePath=str(repo.path),
        repoRoot=str(repo.path),
    )


def test_paths_outside_base_dir(base_dir: Path, repo: Repo, tmp_path: Path) -> None:
    outside = init_repo(tmp_path / "outside")
    far = outside.worktree(tmp_path / "far" / "wt", "agent/far")
    os.symlink(tmp_path / "far", base_dir / "via-link")
    crafted = base_dir / "crafted"
    crafted.mkdir()
    (crafted / ".git").write_text(f"gitdir: {outside.path / '.git' / 'worktrees' / 'wt'}\n")
    inside_from_outside = outside.worktree(base_dir / "planted", "agent/planted")
    wt = workspace(repo, base_dir)
    for path, root in [
        (far.path, repo.path),
        (base_dir / "via-link" / "wt", repo.path),
        (base_dir / ".." / "far" / "wt", repo.path),
        (wt.path, tmp_path / "outside"),
        (crafted, repo.path),
        (inside_from_outside.path, repo.path),
    ]:
        before = fingerprint(outside, far.path, inside_from_outside.path)
        assert_refused(
            base_dir,
            repo,
            [wt.path],
            "path outside base_dir",
            worktreePath=str(path),
            repoRoot=str(root),
        )
        assert fingerprint(outside, far.path, inside_from_outside.path) == before


def test_symlinked_worktree_is_refused(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    os.symlink(wt.path, base_dir / "alias")
    assert_refused(base_dir, repo, [wt.path], "symbolic link", worktreePath=str(base_dir / "alias"))


def test_repo_root_of_another_repository_is_not_trusted(base_dir: Path, repo: Repo) -> None:
    other = init_repo(base_dir / "other")
    other_wt = other.worktree(base_dir / "other-wt", "agent/one")
    wt = workspace(repo, base_dir)
    before = fingerprint(other, other_wt.path)
    result = cleanup(base_dir, worktreePath=str(wt.path), repoRoot=str(other.path))
    assert result["removed"] is True and result["branchDeleted"] is True
    assert_removed(repo, wt)
    assert fingerprint(other, other_wt.path) == before


def test_non_agent_branch_is_kept(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir, branch="feature/x")
    result = cleanup(base_dir, workspaceId="ws1", worktreePath=str(wt.path))
    assert result["removed"] is True
    assert result["branchDeleted"] is False
    assert result["branchPreservedReason"] == "not an agent branch"
    assert "feature/x" in branches(repo)


def test_delete_branch_false_keeps_it(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    result = cleanup(base_dir, worktreePath=str(wt.path), deleteBranch=False)
    assert result["branchDeleted"] is False and result["removed"] is True
    assert "agent/one" in branches(repo)
    wt2 = workspace(repo, base_dir, "ws2", "agent/two")
    assert cleanup(base_dir, worktreePath=str(wt2.path), deleteBranch="false")["branchDeleted"]


def test_reclaim_refuses_non_agent_branches(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir, branch="feature/x")
    assert_refused(
        base_dir,
        repo,
        [wt.path],
        "not an agent branch",
        worktreePath=str(wt.path),
        reclaim=True,
        branch="agent/claimed",
    )
    agent = workspace(repo, base_dir, "ws2", "agent/two")
    result = cleanup(base_dir, worktreePath=str(agent.path), reclaim=True)
    assert result["removed"] is True and result["branchDeleted"] is True


def test_already_gone_prunes_metadata_and_releases_the_branch(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    shutil.rmtree(wt.path)
    assert "prunable" in repo.git("worktree", "list", "--porcelain")
    result = cleanup(base_dir, worktreePath=str(wt.path), repoRoot=str(repo.path))
    assert result == {
        "removed": True,
        "alreadyGone": True,
        "branchDeleted": True,
        "containerRemoved": True,
    }
    assert_removed(repo, wt)
    assert cleanup(base_dir, worktreePath=str(wt.path), repoRoot=str(repo.path))["alreadyGone"]


def test_already_gone_keeps_an_unlanded_branch(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.commit("unlanded", {"u.txt": "u\n"})
    shutil.rmtree(wt.path)
    result = cleanup(base_dir, worktreePath=str(wt.path), repoRoot=str(repo.path))
    assert result["alreadyGone"] and result["branchPreservedReason"] == "unlanded commits"
    assert "agent/one" in branches(repo)


def test_locked_worktree_is_refused(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    repo.git("worktree", "lock", "--reason", "on a USB disk", str(wt.path))
    assert_refused(base_dir, repo, [wt.path], "locked (on a USB disk)", worktreePath=str(wt.path))


def test_branch_checked_out_elsewhere_is_kept(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    wt.git("checkout", "-q", "--detach")
    repo.git("checkout", "-q", "agent/one")
    result = cleanup(base_dir, worktreePath=str(wt.path), branch="agent/one", baseRef="main")
    assert result["removed"] is True
    assert result["branchPreservedReason"] == f"checked out in {repo.path}"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"worktreePath": 3}, "worktreePath: expected a string, got int"),
        ({"worktreePath": "{wt}\0"}, "worktreePath: must not contain NUL bytes"),
        ({"worktreePath": "{wt}", "branch": "agent/../../main"}, "branch: not a valid"),
        ({"worktreePath": "{wt}", "baseRef": "--output=/tmp/x"}, "baseRef: must not start"),
        ({"worktreePath": "{wt}", "reason": "r" * (1 << 20)}, "reason: longer than"),
        ({"worktreePath": "{wt}", "workspaceId": ["ws1"]}, "workspaceId: expected a string"),
        ({"repoRoot": "{wt}"}, "worktreePath: required"),
    ],
)
async def test_hostile_params_through_the_handler(
    base_dir: Path, repo: Repo, params: dict[str, Any], message: str
) -> None:
    wt = workspace(repo, base_dir)
    params = {
        k: v.format(wt=wt.path) if isinstance(v, str) and len(v) < 5000 else v
        for k, v in params.items()
    }
    before = fingerprint(repo, wt.path)
    config = load_config(env={}, overrides={"base_dir": str(base_dir)})
    result = await run_locally(CleanupHandler(), {"workspaceId": "ws1", **params}, config)
    assert message in result["error"]
    assert result["status"] == "cleanup_requested"
    if isinstance(params.get("workspaceId", "ws1"), str):
        assert result["workspaceId"] == "ws1"
    assert fingerprint(repo, wt.path) == before


async def test_handler_result_shape(base_dir: Path, repo: Repo) -> None:
    wt = workspace(repo, base_dir)
    config = load_config(env={}, overrides={"base_dir": str(base_dir)})
    params = {
        "workspaceId": "ws1",
        "worktreePath": str(wt.path),
        "repoRoot": str(repo.path),
        "action": "cleanup",
        "requestedBy": "dashboard",
        "queued": False,
    }
    result = await run_locally(CleanupHandler(), params, config)
    assert result == {
        "workspaceId": "ws1",
        "status": "cleaned",
        "worktreePath": str(wt.path),
        "removed": True,
        "branchDeleted": True,
        "containerRemoved": True,
    }
    assert_removed(repo, wt)
