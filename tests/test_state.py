"""workspace_state and the landing primitives, checked field by field against the git CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pygit2
import pytest

from hostd.git.discover import open_workspace
from hostd.git.errors import GitError
from hostd.git.landing import contained, patch_id, tree_changes, unmerged_commits
from hostd.git.state import subject, workspace_state
from tests.gitrepo import Repo, clone_with_origin, git, git_rc, init_repo

# ---------------------------------------------------------------- the oracle: git itself


def _rev(path: Path, spec: str) -> str | None:
    if not spec or spec.startswith("-"):
        return None
    rc, out = git_rc(path, "rev-parse", "-q", "--verify", spec + "^{commit}")
    return out.strip() if rc == 0 else None


def _cherry_plus(path: Path, upstream: str, head: str) -> list[str]:
    lines = git(path, "cherry", upstream, head).splitlines()
    return [line[2:] for line in lines if line.startswith("+ ")]


def _tree(path: Path, sha: str) -> str:
    return git(path, "rev-parse", sha + "^{tree}").strip()


def _git_unlanded(path: Path, landing: str, tip: str) -> list[str]:
    return [] if _tree(path, landing) == _tree(path, tip) else _cherry_plus(path, landing, tip)


def porcelain_count(path: Path) -> int:
    return len([line for line in git(path, "status", "--porcelain").split("\n") if line])


def expected_state(path: Path, base_ref: str | None = None, base_sha: str | None = None) -> dict:
    """The state body assembled from git CLI answers only."""
    count = porcelain_count(path)
    body: dict[str, Any] = {"dirty": count > 0, "dirtyCount": count}
    rc, ref = git_rc(path, "symbolic-ref", "-q", "HEAD")
    branch = ref.strip().removeprefix("refs/heads/") if rc == 0 else None
    if branch is not None:
        body["branch"] = branch
    rc, out = git_rc(path, "log", "-1", "--format=%H%x00%ct%x00%s")
    head = None
    if rc == 0:
        head, at, message = out.rstrip("\n").split("\0")
        body["lastCommit"] = {"sha": head, "message": message, "at": int(at) * 1000}
    spec = next((s for s in (base_ref, base_sha) if s and _rev(path, s)), None)
    if spec is None:
        return body
    base = _rev(path, spec)
    assert base is not None
    body["baseRef"] = spec
    if head is None:
        return body
    landing = base
    if _rev(path, "refs/heads/" + spec.removeprefix("refs/heads/")):
        short = spec.removeprefix("refs/heads/")
        landing = _rev(path, f"{short}@{{upstream}}") or base
    counts = git(path, "rev-list", "--left-right", "--count", f"{base}...HEAD")
    behind, ahead = map(int, counts.split())
    body["behind"], body["ahead"] = behind, ahead
    unmerged: list[str] = []
    if ahead > 0:
        unmerged = _git_unlanded(path, landing, head)
        body["unmergedAhead"] = len(unmerged)
        if unmerged:
            body["unmergedShas"] = [sha[:8] for sha in unmerged[:20]]
        else:
            body["landed"], body["landedSha"] = True, base
    if branch is not None and not unmerged:
        stranded = _git_stranded(path, branch, landing)
        if stranded:
            body["strandedBranches"] = stranded
            body["strandedUnmergedCommits"] = sum(s["unmergedAhead"] for s in stranded)
    return body


def _git_stranded(path: Path, branch: str, landing: str) -> list[dict]:
    stem = re.sub(r"-[0-9]+$", "", branch)
    found = []
    for name in git(path, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/").split():
        if name != stem and not re.fullmatch(re.escape(stem) + r"-[0-9]+", name):
            continue
        if git_rc(path, "merge-base", "--is-ancestor", name, "HEAD")[0] == 0:
            continue
        unmerged = _git_unlanded(path, landing, _rev(path, name) or "")
        if unmerged and len(found) < 10:
            shas = [sha[:8] for sha in unmerged[:20]]
            found.append({"branch": name, "unmergedAhead": len(unmerged), "unmergedShas": shas})
    return found


def state(path: Path, base_ref: str | None = None, base_sha: str | None = None) -> dict:
    ws = open_workspace(str(path), str(path.parent))
    return workspace_state(ws, base_ref, base_sha)


def check(path: Path, base_ref: str | None = None, base_sha: str | None = None) -> dict:
    """hostd's body equals git's, and computing it changed nothing in the repository."""
    before = Repo(path).state_fingerprint()
    got = state(path, base_ref, base_sha)
    assert Repo(path).state_fingerprint() == before
    assert got == expected_state(path, base_ref, base_sha)
    return got


def commit_oid(path: Path, spec: str) -> pygit2.Commit:
    repo = pygit2.Repository(str(path))
    return repo.revparse_single(spec).peel(pygit2.Commit)


# ---------------------------------------------------------------- shapes


@pytest.fixture
def agent(repo: Repo, base_dir: Path) -> Repo:
    """A linked worktree on `agent/x`, two commits ahead of main, main one commit ahead."""
    wt = repo.worktree(base_dir / "wt", "agent/x")
    wt.commit("first", {"a.txt": "one\n"})
    wt.commit("second", {"b.txt": "two\n"})
    repo.commit("main moves", {"m.txt": "m\n"})
    return wt


def test_linear_branch(agent: Repo) -> None:
    got = check(agent.path, "main")
    assert (got["ahead"], got["behind"], got["unmergedAhead"]) == (2, 1, 2)
    assert got["branch"] == "agent/x" and "landed" not in got


def test_no_base_and_garbage_base(agent: Repo) -> None:
    got = check(agent.path)
    assert set(got) == {"dirty", "dirtyCount", "branch", "lastCommit"}
    assert check(agent.path, "no-such-ref", "also-garbage") == got


@pytest.mark.parametrize("spec", ["main", "refs/heads/main", "main~1", "HEAD~2"])
def test_base_ref_spellings(agent: Repo, spec: str) -> None:
    assert check(agent.path, spec)["baseRef"] == spec


def test_base_sha_and_fallback(repo: Repo, agent: Repo) -> None:
    sha = repo.head()
    assert check(agent.path, None, sha)["baseRef"] == sha
    assert check(agent.path, "garbage", sha)["baseRef"] == sha
    assert check(agent.path, "garbage", sha[:10])["baseRef"] == sha[:10]


def test_dash_refs_never_resolve(repo: Repo, agent: Repo) -> None:
    repo.git("update-ref", "refs/heads/-main", "main")
    assert repo.git("rev-parse", "--verify", "refs/heads/-main").strip() == repo.head()
    got = check(agent.path, "-main", "--all")
    assert "baseRef" not in got
    assert check(agent.path, "-main", "main")["baseRef"] == "main"


def test_cherry_picked_commits(repo: Repo, agent: Repo) -> None:
    first = agent.git("rev-parse", "HEAD~1").strip()
    repo.git("cherry-pick", first)
    got = check(agent.path, "main")
    assert got["unmergedAhead"] == 1
    repo.git("cherry-pick", agent.head())
    got = check(agent.path, "main")
    assert got["landed"] is True and got["landedSha"] == repo.head()
    assert got["unmergedAhead"] == 0 and "unmergedShas" not in got


def test_whitespace_only_difference_still_lands(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"f.py": "def f():\n    return 1\n"})
    wt = repo.worktree(base_dir / "wt", "agent/ws")
    wt.commit("change", {"f.py": "def f():\n    return 2\n"})
    repo.commit("reindented", {"f.py": "def f():\n\treturn  2\n"})
    assert check(wt.path, "main")["unmergedAhead"] == 0


@pytest.mark.parametrize(("attributes", "unmerged"), [("", 0), ("*.txt -diff\n", 1)])
def test_same_hunk_on_other_base_and_binary_attribute(
    repo: Repo, base_dir: Path, attributes: str, unmerged: int
) -> None:
    lines = [f"line {i}\n" for i in range(40)]
    repo.commit("attributes", {".gitattributes": attributes, "f.txt": "".join(lines)})
    wt = repo.worktree(base_dir / "wt", "agent/attr")
    wt.commit("near the top", {"f.txt": "".join(lines).replace("line 5\n", "five\n")})
    repo.commit("far below", {"f.txt": "".join(lines).replace("line 35\n", "35\n")})
    repo.git("cherry-pick", wt.head())
    assert check(wt.path, "main")["unmergedAhead"] == unmerged


def test_merges_on_both_sides(repo: Repo, base_dir: Path) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/m")
    side = repo.worktree(base_dir / "side", "side")
    wt.commit("w1", {"w.txt": "1\n"})
    side.commit("s1", {"s.txt": "1\n"})
    repo.git("merge", "-q", "--no-edit", "--no-ff", "side")
    wt.git("merge", "-q", "--no-edit", "main")
    wt.commit("w2", {"w.txt": "2\n"})
    repo.commit("m1", {"m.txt": "1\n"})
    got = check(wt.path, "main")
    assert got["ahead"] == 3 and got["unmergedAhead"] == 2
    repo.git("merge", "-q", "--no-edit", "--no-ff", "agent/m")
    got = check(wt.path, "main")
    assert got["ahead"] == 0 and "unmergedAhead" not in got


def test_branch_merged_into_base(repo: Repo, agent: Repo) -> None:
    repo.git("merge", "-q", "--no-edit", "agent/x")
    repo.commit("after", {"z.txt": "z\n"})
    got = check(agent.path, "main")
    assert got["ahead"] == 0 and got["behind"] == 3


def test_squash_landed_on_upstream(tmp_path: Path) -> None:
    work, origin = clone_with_origin(tmp_path)
    wt = work.worktree(tmp_path / "wt", "agent/sq", "main")
    wt.commit("one", {"a.txt": "a\n"})
    wt.commit("two", {"b.txt": "b\n"})
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    git(other, "pull", "-q", str(work.path), "agent/sq", "--squash")
    git(other, "commit", "-q", "-m", "squashed")
    git(other, "push", "-q", "origin", "main")
    assert check(wt.path, "main")["unmergedAhead"] == 2  # origin/main not fetched yet
    work.git("fetch", "-q")
    got = check(wt.path, "main")
    assert got["landed"] is True and got["landedSha"] == work.head()
    assert check(wt.path, "origin/main")["landed"] is True
    assert check(wt.path, "refs/heads/main")["landed"] is True
    Repo(other).commit("later", {"later.txt": "l\n"})
    git(other, "push", "-q", "origin", "main")
    work.git("fetch", "-q")
    assert check(wt.path, "main")["unmergedAhead"] == 2  # as git cherry sees it


def test_upstream_single_commit_squash_after_more_work(tmp_path: Path) -> None:
    work, origin = clone_with_origin(tmp_path)
    wt = work.worktree(tmp_path / "wt", "agent/one", "main")
    wt.commit("only", {"a.txt": "a\n"})
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    Repo(other).commit("unrelated", {"u.txt": "u\n"})
    git(other, "pull", "-q", "--no-rebase", str(work.path), "agent/one", "--squash")
    git(other, "commit", "-q", "-m", "squashed")
    git(other, "push", "-q", "origin", "main")
    work.git("fetch", "-q")
    got = check(wt.path, "main")
    assert got["landed"] is True and got["behind"] == 0


def test_detached_head(repo: Repo, agent: Repo) -> None:
    agent.git("checkout", "-q", "--detach", "HEAD~1")
    got = check(agent.path, "main")
    assert "branch" not in got and got["ahead"] == 1


def test_unborn_branch(repo: Repo, base_dir: Path) -> None:
    repo.git("checkout", "-q", "--orphan", "fresh")
    repo.git("rm", "-q", "-r", "--cached", ".")
    got = check(repo.path, "refs/heads/main")
    assert got["branch"] == "fresh" and got["baseRef"] == "refs/heads/main"
    assert "lastCommit" not in got and "ahead" not in got
    empty = init_repo(base_dir / "empty", initial=False)
    assert check(empty.path, "main") == {"dirty": False, "dirtyCount": 0, "branch": "main"}


def test_binary_changes(repo: Repo, base_dir: Path) -> None:
    repo.commit("blob", {"img.bin": b"\0\1\2base"})
    wt = repo.worktree(base_dir / "wt", "agent/bin")
    wt.commit("bin change", {"img.bin": b"\0\1\2mine"})
    repo.commit("other bin change", {"img.bin": b"\0\1\2theirs"})
    assert check(wt.path, "main")["unmergedAhead"] == 1
    repo.git("checkout", "-q", "main~1", "--", "img.bin")
    repo.commit("revert")
    repo.git("cherry-pick", wt.head())
    repo.commit("extra", {"x.txt": "x\n"})
    assert check(wt.path, "main")["landed"] is True


def test_renames(repo: Repo, base_dir: Path) -> None:
    repo.commit("file", {"old.txt": "".join(f"line {i}\n" for i in range(20))})
    wt = repo.worktree(base_dir / "wt", "agent/mv")
    wt.git("mv", "old.txt", "new.txt")
    wt.commit("rename")
    wt.git("mv", "new.txt", "newer.txt")
    assert check(wt.path, "main")["dirtyCount"] == 1
    repo.commit("main moves", {"m.txt": "m\n"})
    repo.git("cherry-pick", wt.head())
    repo.commit("extra", {"x.txt": "x\n"})
    assert check(wt.path, "main")["landed"] is True


def test_modified_and_staged_rename(repo: Repo) -> None:
    repo.commit("file", {"r.txt": "".join(f"row {i}\n" for i in range(30))})
    repo.git("mv", "r.txt", "s.txt")
    repo.write("s.txt", "".join(f"row {i}\n" for i in range(31)))
    assert check(repo.path, "main")["dirtyCount"] == 1


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"status.renames": "false"},
        {"diff.renames": "false"},
        {"diff.renames": "false", "status.renames": "true"},
        {"diff.renames": "copies"},
    ],
)
def test_rename_detection_settings(repo: Repo, settings: dict[str, str]) -> None:
    repo.commit("file", {"r.txt": "".join(f"row {i}\n" for i in range(30))})
    for key, value in settings.items():
        repo.git("config", key, value)
    repo.git("mv", "r.txt", "s.txt")
    check(repo.path)


@pytest.mark.parametrize("mode", ["normal", "all"])
def test_directory_replacing_tracked_file(repo: Repo, mode: str) -> None:
    repo.git("config", "status.showUntrackedFiles", mode)
    repo.commit("files", {"f.txt": "f\n", "d/g.txt": "g\n"})
    (repo.path / "f.txt").unlink()
    repo.write("f.txt/inner", "x\n")
    (repo.path / "d" / "g.txt").unlink()
    repo.write("d/g.txt/deeper/inner", "x\n")
    check(repo.path)


UNUSUAL = ["with space.txt", "ünïcödé.txt", 'quo"te.txt', "new\nline.txt", "tab\there.txt"]


@pytest.mark.parametrize("name", UNUSUAL)
def test_unusual_file_names(repo: Repo, base_dir: Path, name: str) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/names")
    wt.commit("odd name", {name: "x\n", "dir " + name + "/f": "y\n"})
    wt.write(name, "changed\n")
    wt.write("untracked " + name, "u\n")
    wt.write("newdir " + name + "/inner", "u\n")
    got = check(wt.path, "main")
    assert got["dirtyCount"] == 3 and got["unmergedAhead"] == 1
    repo.commit("main moves", {"m.txt": "m\n"})
    repo.git("cherry-pick", wt.head())
    repo.commit("more", {"more.txt": "m\n"})
    assert check(wt.path, "main")["landed"] is True


def test_untracked_directories_and_ignored(repo: Repo) -> None:
    repo.commit("ignore", {".gitignore": "*.log\nbuild/\n"})
    repo.write("dir/a/b/c.txt", "x\n")
    repo.write("dir/d.txt", "x\n")
    repo.write("other/e.txt", "x\n")
    repo.write("x.log", "ignored\n")
    repo.write("build/out.o", "ignored\n")
    repo.write("mixed/keep.txt", "x\n")
    repo.write("mixed/skip.log", "ignored\n")
    repo.write("onlyignored/z.log", "ignored\n")
    (repo.path / "emptydir" / "deeper").mkdir(parents=True)
    assert check(repo.path)["dirtyCount"] == 3


@pytest.mark.parametrize("mode", ["no", "normal", "all"])
def test_show_untracked_files_setting(repo: Repo, mode: str) -> None:
    repo.git("config", "status.showUntrackedFiles", mode)
    repo.write("dir/a.txt", "x\n")
    repo.write("dir/b.txt", "x\n")
    repo.write("top.txt", "x\n")
    repo.write("README.md", "changed\n")
    check(repo.path)


def test_staged_unstaged_and_deleted(repo: Repo) -> None:
    repo.commit("files", {"a": "a\n", "b": "b\n", "c": "c\n", "d": "d\n"})
    repo.write("a", "a2\n")
    repo.git("add", "a")
    repo.write("a", "a3\n")
    repo.write("b", "b2\n")
    (repo.path / "c").unlink()
    repo.git("rm", "-q", "--cached", "d")
    repo.write("e", "new\n")
    repo.git("add", "e")
    assert check(repo.path)["dirtyCount"] == 6  # `D  d` and `?? d`


@pytest.mark.parametrize(
    ("ours", "theirs", "setup"),
    [
        ({"c.txt": "ours\n"}, {"c.txt": "theirs\n"}, None),  # UU
        ({"n.txt": "ours\n"}, {"n.txt": "theirs\n"}, "add"),  # AA
        (None, {"c.txt": "theirs\n"}, "delete"),  # DU
    ],
)
def test_unmerged_entries(repo: Repo, base_dir: Path, ours, theirs, setup) -> None:
    repo.commit("base", {"c.txt": "base\n"})
    wt = repo.worktree(base_dir / "wt", "agent/conflict")
    wt.commit("theirs", theirs)
    if setup == "delete":
        repo.git("rm", "-q", "c.txt")
        repo.commit("delete")
    else:
        repo.commit("ours", ours)
    rc, _ = git_rc(repo.path, "merge", "agent/conflict")
    assert rc != 0
    repo.write("stray.txt", "x\n")
    got = check(repo.path, "main")
    assert got["dirtyCount"] == 2


def test_commit_subjects(repo: Repo) -> None:
    messages = [
        "\n\n  \nAfter blank lines\nsecond line  \n\nbody",
        "trailing spaces   \t\n",
        "crlf\r\nline two\r\n\r\nbody",
        "  leading kept\n\tand tab\n",
        "single",
    ]
    for message in messages:
        repo.git("commit", "-q", "--allow-empty", "--cleanup=verbatim", "-m", message)
        expected = repo.git("log", "-1", "--format=%s").rstrip("\n")
        assert subject(commit_oid(repo.path, "HEAD")) == expected
        check(repo.path)
    message_file = repo.path.parent / "latin1.txt"
    message_file.write_bytes("caf\u00e9 cr\u00e8me\n\nbody\n".encode("latin-1"))
    repo.git(
        "-c",
        "i18n.commitEncoding=ISO-8859-1",
        "commit",
        "-q",
        "--allow-empty",
        "-F",
        str(message_file),
    )
    assert repo.git("log", "-1", "--format=%s").rstrip("\n") == "caf\u00e9 cr\u00e8me"
    check(repo.path)


def test_stranded_branches(repo: Repo, base_dir: Path) -> None:
    live = repo.worktree(base_dir / "live", "agent/job-4")
    live.commit("landed work", {"landed.txt": "l\n"})
    repo.git("cherry-pick", live.head())
    repo.commit("main moves on", {"more.txt": "m\n"})
    branches = {
        "agent/job": _commit_on(repo, "s0.txt"),
        "agent/job-1": _commit_on(repo, "s1.txt"),
        "agent/job-2": live.git("rev-parse", "HEAD~1").strip(),  # an ancestor of HEAD
        "agent/job-3": _commit_on(repo, "landed.txt", "main~2", "l\n"),  # cherry-picked
        "agent/job-x": _commit_on(repo, "x.txt"),
        "agent/jobs": _commit_on(repo, "y.txt"),
    }
    for name, sha in branches.items():
        repo.git("update-ref", "refs/heads/" + name, sha)
    got = check(live.path, "main")
    assert [s["branch"] for s in got["strandedBranches"]] == ["agent/job", "agent/job-1"]
    assert got["strandedUnmergedCommits"] == 2
    live.commit("unlanded", {"u.txt": "u\n"})
    assert "strandedBranches" not in check(live.path, "main")


def test_stranded_branches_capped_at_ten(repo: Repo, base_dir: Path) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/cap")
    for i in range(12):
        repo.git("update-ref", f"refs/heads/agent/cap-{i}", _commit_on(repo, f"f{i}"))
    got = check(wt.path, "main")
    assert len(got["strandedBranches"]) == 10 and got["strandedUnmergedCommits"] == 10


def _commit_on(repo: Repo, name: str, parent: str = "main", content: str | None = None) -> str:
    """A commit adding one file on top of `parent`, made with plumbing (no checkout)."""
    data = (content if content is not None else name).encode()
    blob = git(repo.path, "hash-object", "-w", "--stdin", input=data).strip()
    tree_text = repo.git("ls-tree", parent) + f"100644 blob {blob}\t{name}\n"
    tree = git(repo.path, "mktree", input=tree_text.encode()).strip()
    return repo.git("commit-tree", tree, "-p", parent, "-m", name).strip()


def test_read_only(tmp_path: Path) -> None:
    work, _ = clone_with_origin(tmp_path)
    wt = work.worktree(tmp_path / "wt", "agent/ro", "main")
    wt.commit("c", {"c.txt": "c\n"})
    wt.write("c.txt", "dirty\n")
    work.commit("m", {"c.txt": "other\n"})
    before = work.state_fingerprint()
    for spec in ("main", "origin/main", None):
        state(wt.path, spec)
        state(work.path, spec)
    assert work.state_fingerprint() == before


def test_repository_problem_is_git_error(repo: Repo, agent: Repo) -> None:
    admin = Path(repo.git("rev-parse", "--git-common-dir").strip()) / "worktrees" / "wt"
    if not admin.is_absolute():
        admin = repo.path / admin
    (admin / "HEAD").write_text("1234567890123456789012345678901234567890\n")
    ws = open_workspace(str(agent.path), str(agent.path.parent))
    with pytest.raises(GitError):
        workspace_state(ws, "main", None)


# ---------------------------------------------------------------- landing primitives


def _patch_id_git(path: Path, sha: str) -> str:
    shown = git(path, "-c", "diff.indentHeuristic=false", "show", "--format=%H", sha)
    out = git(path, "patch-id", "--stable", input=shown.encode()).split()
    return out[0] if out else "0" * 40


def test_patch_id_matches_git_patch_id_stable(repo: Repo) -> None:
    body = "".join(f"line {i}\n" for i in range(40))
    shas = [
        repo.commit("add", {"p.txt": body, "q.txt": "q\n"}),
        repo.commit("edit", {"p.txt": body.replace("line 3\n", "3\n").replace("line 30", "x")}),
        repo.commit("no eol", {"q.txt": "q without newline"}),
    ]
    repo.git("rm", "-q", "q.txt")
    shas.append(repo.commit("delete"))
    shas.append(repo.git("rev-list", "--max-parents=0", "HEAD").strip())
    pyrepo = pygit2.Repository(str(repo.path))
    for sha in shas:
        expected = _patch_id_git(repo.path, sha)
        assert patch_id(pyrepo, pyrepo[sha].peel(pygit2.Commit)).hex() == expected


def test_patch_id_keys_binary_changes_by_blob(repo: Repo) -> None:
    repo.commit("base", {"b.bin": b"\0base"})
    one = repo.commit("one", {"b.bin": b"\0one"})
    repo.git("reset", "-q", "--hard", "HEAD~1")
    two = repo.commit("two", {"b.bin": b"\0two"})
    repo.git("reset", "-q", "--hard", "HEAD~1")
    again = repo.commit("one again", {"b.bin": b"\0one"})
    pyrepo = pygit2.Repository(str(repo.path))
    ids = {s: patch_id(pyrepo, pyrepo[s].peel(pygit2.Commit)) for s in (one, two, again)}
    assert ids[one] != ids[two] and ids[one] == ids[again]


_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _mktree(path: Path, entries: dict[str, Any]) -> str:
    """A tree from {name: (mode, sha) or {subtree}}, written as given (modes not normalized)."""
    lines = []
    for name, value in entries.items():
        if isinstance(value, dict):
            lines.append(f"040000 tree {_mktree(path, value)}\t{name}")
        else:
            mode, sha = value
            kind = "commit" if mode == "160000" else "blob"
            lines.append(f"{mode} {kind} {sha}\t{name}")
    return git(path, "mktree", "--missing", input="\n".join(lines).encode() + b"\n").strip()


def _diff_tree(path: Path, old: str, new: str) -> list[tuple]:
    fields = git(path, "diff-tree", "-r", "-z", "--no-renames", old, new).split("\0")[:-1]
    changes = []
    for meta, name in zip(fields[::2], fields[1::2], strict=True):
        old_mode, new_mode, old_sha, new_sha, _ = meta.lstrip(":").split()
        sides = [
            None if mode == "000000" else (pygit2.Oid(hex=sha), int(mode, 8))
            for mode, sha in ((old_mode, old_sha), (new_mode, new_sha))
        ]
        changes.append((os.fsencode(name), *sides))
    return changes


def test_tree_changes_match_git_diff_tree(repo: Repo) -> None:
    one, two, link = (
        git(repo.path, "hash-object", "-w", "--stdin", input=data).strip()
        for data in (b"one\n", b"two\n", b"target")
    )
    submodule, moved = repo.head(), repo.commit("moved", {"m.txt": "m\n"})
    old = {
        "a": {"x": ("100644", one)},
        "a-b": ("100644", one),
        "a.txt": ("100644", one),
        "to-link": ("100644", one),
        "to-dir": ("100644", one),
        "to-file": {"y": ("100644", two)},
        "to-gitlink": ("100644", one),
        "gitlink": ("160000", submodule),
        "chmod": ("100644", one),
        "group-writable": ("100664", two),
        "deep": {"d": {"e": {"z": ("100644", one)}}, "same": {"s": ("100644", one)}},
        "gone": ("100644", two),
        "caf\u00e9 \x01": ("100644", one),
    }
    new = {
        "a": {"x": ("100644", two), "x2": ("100755", one)},
        "a-b": ("100644", one),
        "a.txt": ("100644", two),
        "to-link": ("120000", link),
        "to-dir": {"inner": ("100644", one)},
        "to-file": ("100644", two),
        "to-gitlink": ("160000", submodule),
        "gitlink": ("160000", moved),
        "chmod": ("100755", one),
        "group-writable": ("100644", two),
        "deep": {"d": {"e": {"z": ("100644", two)}}, "same": {"s": ("100644", one)}},
        "caf\u00e9 \x01": ("100644", two),
        "added": {"n": {"m": ("100644", one)}},
    }
    pyrepo = pygit2.Repository(str(repo.path))
    a, b = _mktree(repo.path, old), _mktree(repo.path, new)
    tree = {a: pyrepo[a].peel(pygit2.Tree), b: pyrepo[b].peel(pygit2.Tree), _EMPTY_TREE: None}
    for x, y in [(a, b), (b, a), (_EMPTY_TREE, b), (a, _EMPTY_TREE)]:
        got = tree_changes(pyrepo, tree[x], tree[y])
        assert sorted(got, key=lambda c: c[0]) == sorted(_diff_tree(repo.path, x, y))


def test_unmerged_commits_order_matches_git_cherry(repo: Repo, base_dir: Path) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/order")
    side = repo.worktree(base_dir / "side", "side", "main")
    for i in range(4):
        wt.commit(f"w{i}", {f"w{i}.txt": "w\n"})
        side.commit(f"s{i}", {f"s{i}.txt": "s\n"})
    wt.git("merge", "-q", "--no-edit", "side")
    wt.commit("after", {"after.txt": "a\n"})
    repo.git("cherry-pick", side.git("rev-parse", "HEAD~2").strip())
    pyrepo = pygit2.Repository(str(wt.path))
    head, landing = commit_oid(wt.path, "HEAD"), commit_oid(wt.path, "main")
    got = [str(c.id) for c in unmerged_commits(pyrepo, head, landing)]
    assert got == _cherry_plus(wt.path, "main", "HEAD")
    assert len(got) == 8


def test_unmerged_commits_headers_and_empty_commits(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"d/f.txt": "base\n", "e/g.txt": "g\n"})
    wt = repo.worktree(base_dir / "wt", "agent/headers")
    wt.commit("empty", allow_empty=True)
    wt.commit("same path, other content", {"d/f.txt": "mine\n"})
    wt.commit("also on main, with more", {"e/g.txt": "other\n"})
    wt.commit("landed", {"e/h.txt": "h\n"})
    repo.commit("same path", {"d/f.txt": "theirs\n"})
    repo.commit("empty", allow_empty=True)
    repo.commit("same change and more", {"e/g.txt": "other\n", "m.txt": "m\n"})
    repo.commit("landed", {"e/h.txt": "h\n"})
    pyrepo = pygit2.Repository(str(wt.path))
    head, landing = commit_oid(wt.path, "HEAD"), commit_oid(wt.path, "main")
    got = [str(c.id) for c in unmerged_commits(pyrepo, head, landing)]
    assert got == _cherry_plus(wt.path, "main", "HEAD")
    assert len(got) == 2


def test_unmerged_commits_order_with_clock_skew(
    repo: Repo, base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/skew")
    side = repo.worktree(base_dir / "side", "side", "main")
    for i, (tree, when) in enumerate([(wt, 500), (side, 900), (wt, 100), (side, 300), (wt, 700)]):
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{1_700_000_000 + when} +0000")
        tree.commit(f"c{i}", {f"c{i}.txt": "c\n"})
    wt.git("merge", "-q", "--no-edit", "side")
    wt.commit("after", {"after.txt": "a\n"})
    pyrepo = pygit2.Repository(str(wt.path))
    head, landing = commit_oid(wt.path, "HEAD"), commit_oid(wt.path, "main")
    got = [str(c.id) for c in unmerged_commits(pyrepo, head, landing)]
    assert got == _cherry_plus(wt.path, "main", "HEAD")
    check(wt.path, "main")


def _contained(path: Path, tip: str, target: str) -> bool | None:
    repo = pygit2.Repository(str(path))
    before = Repo(path).state_fingerprint()
    verdict = contained(repo, commit_oid(path, tip), commit_oid(path, target))
    assert Repo(path).state_fingerprint() == before
    return verdict


def test_contained_yes(repo: Repo, base_dir: Path) -> None:
    lines = "".join(f"{i}\n" for i in range(30))
    repo.commit("base", {"f.txt": lines})
    wt = repo.worktree(base_dir / "wt", "agent/c")
    assert _contained(repo.path, "agent/c", "main") is True  # same commit
    wt.commit("one", {"f.txt": lines.replace("2\n", "two\n", 1)})
    wt.commit("two", {"g.txt": "g\n"})
    assert _contained(repo.path, "agent/c~1", "agent/c") is True  # ancestor
    tree = repo.git("rev-parse", "agent/c^{tree}").strip()
    same = repo.git("commit-tree", tree, "-p", "main", "-m", "same tree").strip()
    assert _contained(repo.path, "agent/c", same) is True  # equal trees
    repo.commit("unrelated", {"m.txt": "m\n"})
    repo.git("cherry-pick", "agent/c~1", "agent/c")
    assert _contained(repo.path, "agent/c", "main") is True  # patch-ids
    repo.git("reset", "-q", "--hard", "HEAD~2")
    repo.git("merge", "-q", "--squash", "agent/c")
    repo.commit("squash")
    assert _contained(repo.path, "agent/c", "main") is True  # merge: every path as target's
    edited = lines.replace("2\n", "two\n", 1).replace("28\n", "xx\n")
    repo.commit("later edit in the same file", {"f.txt": edited})
    assert _contained(repo.path, "agent/c", "main") is True  # merge: file-level, no writes


def test_contained_no_and_unknown(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"f.txt": "base\n"})
    wt = repo.worktree(base_dir / "wt", "agent/n")
    wt.commit("unlanded", {"n.txt": "n\n"})
    assert _contained(repo.path, "agent/n", "main") is False
    wt.commit("conflicting", {"f.txt": "mine\n"})
    repo.commit("other", {"f.txt": "theirs\n", "n.txt": "n\n"})
    assert _contained(repo.path, "agent/n", "main") is None
    repo.git("checkout", "-q", "--orphan", "unrelated")
    repo.commit("root", {"r.txt": "r\n"})
    assert _contained(repo.path, "agent/n~1", "unrelated") is None


def test_contained_merge_in_range_needs_content_check(repo: Repo, base_dir: Path) -> None:
    repo.commit("base", {"f.txt": "base\n"})
    wt = repo.worktree(base_dir / "wt", "agent/evil")
    side = repo.worktree(base_dir / "side", "side", "main")
    wt.commit("w", {"w.txt": "w\n"})
    side.commit("s", {"s.txt": "s\n"})
    wt.git("merge", "-q", "--no-commit", "side")
    wt.write("evil.txt", "resolution content\n")
    wt.git("add", "evil.txt")
    wt.git("commit", "-q", "-m", "evil merge")
    repo.git("cherry-pick", "agent/evil~1", "side")
    assert _cherry_plus(repo.path, "main", "agent/evil") == []
    assert _contained(repo.path, "agent/evil", "main") is False
