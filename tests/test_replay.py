"""The in-memory replay and three-way merge against git itself (`git rebase`, `git merge-tree`)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostd.git.overlay import overlay_repository
from hostd.git.replay import (
    MAX_CONFLICT_FILES,
    ReplayResult,
    _chain_conflicts,
    _is_linear,
    _not_upstream,
    _walk,
    commits_to_replay,
    replay,
    replay_conflicts,
    three_way_conflicts,
)
from tests.gitrepo import Repo, git, git_rc, init_repo

COMMITTER = pygit2.Signature("hostd", "hostd@localhost", 1_700_000_000, 0)
LINES = "".join(f"line {i}\n" for i in range(1, 9))
_clones = itertools.count()


@dataclass
class Rebased:
    """What `git rebase <base>` did in a throwaway clone."""

    conflict: bool
    conflict_files: list[str]
    tree: str | None
    subjects: list[str]
    up_to_date: bool


def git_rebase(repo: Repo, branch: str, base: str) -> Rebased:
    clone = repo.path.parent / f"oracle-{next(_clones)}"
    git(repo.path.parent, "clone", "-q", str(repo.path), str(clone))
    git(clone, "checkout", "-q", "-B", branch, f"origin/{branch}")
    before = git(clone, "rev-parse", "HEAD").strip()
    rc, _ = git_rc(clone, "rebase", f"origin/{base}")
    if rc != 0:
        names = git(clone, "diff", "--name-only", "-z", "--diff-filter=U").split("\0")
        return Rebased(True, sorted(n for n in names if n), None, [], False)
    subjects = git(clone, "log", "--reverse", "--format=%s", f"origin/{base}..HEAD").split("\n")
    return Rebased(
        conflict=False,
        conflict_files=[],
        tree=git(clone, "rev-parse", "HEAD^{tree}").strip(),
        subjects=[s for s in subjects if s],
        up_to_date=git(clone, "rev-parse", "HEAD").strip() == before,
    )


def same_files(predicted: list[str], listed: list[str]) -> bool:
    """The conflict files are git's; where git stops without an unmerged path (a directory
    rename split), hostd names the paths that stopped it."""
    return predicted == listed or (not listed and bool(predicted))


def overlay_of(repo: Repo) -> AbstractContextManager[pygit2.Repository]:
    return overlay_repository(pygit2.Repository(str(repo.path)))


@contextmanager
def predict(repo: Repo, branch: str, base: str) -> Iterator[tuple[ReplayResult, pygit2.Repository]]:
    with overlay_of(repo) as overlay:
        head = overlay.revparse_single(branch).peel(pygit2.Commit)
        onto = overlay.revparse_single(base).peel(pygit2.Commit)
        yield replay(overlay, head, onto, COMMITTER), overlay


def assert_like_git(repo: Repo, branch: str = "feat", base: str = "main") -> ReplayResult:
    """The replay agrees with `git rebase` and leaves the repository untouched."""
    before = repo.state_fingerprint()
    with predict(repo, branch, base) as (result, overlay):
        assert repo.state_fingerprint() == before
        _compare_with_git(repo, branch, base, result, overlay)
    return result


def _compare_with_git(
    repo: Repo, branch: str, base: str, result: ReplayResult, overlay: pygit2.Repository
) -> None:
    expected = git_rebase(repo, branch, base)
    assert result.conflict == expected.conflict
    assert same_files(result.conflict_files, expected.conflict_files)
    if expected.conflict:
        assert result.tip is None
        return
    assert result.tip is not None
    assert str(overlay[result.tip].peel(pygit2.Commit).tree_id) == expected.tree
    head = overlay.revparse_single(branch).peel(pygit2.Commit)
    assert (result.tip == head.id) == expected.up_to_date
    if not expected.up_to_date:
        commits = [overlay[c].peel(pygit2.Commit) for c in result.commits]
        assert [c.message.split("\n")[0] for c in commits] == expected.subjects
        assert result.rewritten == bool(commits)


def branch_from(repo: Repo, name: str, start: str = "main") -> None:
    repo.git("checkout", "-q", "-b", name, start)


def switch(repo: Repo, name: str) -> None:
    repo.git("checkout", "-q", name)


def lines(**changes: str) -> str:
    """LINES with some lines replaced: lines(l2="two") changes line 2."""
    out = LINES.splitlines(keepends=True)
    for key, value in changes.items():
        out[int(key[1:]) - 1] = value + "\n"
    return "".join(out)


def test_ahead_only_is_not_rewritten(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.commit("f2", {"b.txt": "b\n"})
    result = assert_like_git(repo)
    assert result.tip == pygit2.Oid(hex=repo.head())
    assert not result.rewritten and result.commits == []


def test_behind_base_replays_in_order_with_authors_kept(repo: Repo) -> None:
    repo.commit("base", {"shared.txt": LINES})
    branch_from(repo, "feat")
    repo.write("f.txt", "feature\n")
    repo.git("add", "-A")
    repo.git(
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.com",
        "commit",
        "-q",
        "-m",
        "f1\n\nbody kept\n",
    )
    repo.commit("f2", {"shared.txt": lines(l8="eight")})
    switch(repo, "main")
    repo.commit("m1", {"shared.txt": lines(l1="one"), "m.txt": "m\n"})
    assert_like_git(repo)
    with predict(repo, "feat", "main") as (result, overlay):
        assert result.rewritten and len(result.commits) == 2
        first, second = (overlay[c].peel(pygit2.Commit) for c in result.commits)
        original = overlay.revparse_single("feat~1").peel(pygit2.Commit)
        assert first.parent_ids == [overlay.revparse_single("main").id]
        assert second.parent_ids == [first.id]
        assert first.message == "f1\n\nbody kept\n"
        assert (first.author.name, first.author.email, first.author.time) == (
            "Agent",
            "agent@example.com",
            original.author.time,
        )
        assert (first.committer.name, first.committer.email) == ("hostd", "hostd@localhost")


def test_message_encoding_is_kept(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.write("a.txt", "a\n")
    repo.git("add", "-A")
    message = repo.path.parent / "msg"
    message.write_bytes(b"caf\xe9\n\nlatin-1 body\n")
    repo.git("-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "-F", str(message))
    switch(repo, "main")
    repo.commit("m1", {"m.txt": "m\n"})
    with predict(repo, "feat", "main") as (result, overlay):
        replayed = overlay[result.commits[0]].peel(pygit2.Commit)
        assert replayed.raw_message == b"caf\xe9\n\nlatin-1 body\n"
        assert replayed.message_encoding == "ISO-8859-1"


def test_commit_already_cherry_picked_onto_base_is_skipped(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    picked = repo.head()
    repo.commit("f2", {"b.txt": "b\n"})
    switch(repo, "main")
    repo.commit("m1", {"m.txt": "m\n"})
    repo.git("cherry-pick", picked)
    repo.commit("m2", {"a.txt": "a\nmore on main\n"})
    result = assert_like_git(repo)
    assert len(result.commits) == 1


def test_commit_that_becomes_empty_is_dropped(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "same change\n"})
    repo.commit("f2", {"b.txt": "b\n"})
    switch(repo, "main")
    repo.commit("m1", {"a.txt": "same change\n", "other.txt": "so the patch-id differs\n"})
    result = assert_like_git(repo)
    assert len(result.commits) == 1


def test_commit_that_starts_empty_is_kept(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.commit("nothing", allow_empty=True)
    switch(repo, "main")
    repo.commit("m1", {"m.txt": "m\n"})
    result = assert_like_git(repo)
    assert len(result.commits) == 2


def test_merge_commit_inside_branch_is_flattened(repo: Repo) -> None:
    repo.commit("base", {"shared.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"f1.txt": "1\n"})
    branch_from(repo, "side", "feat")
    repo.commit("s1", {"shared.txt": lines(l2="side")})
    repo.commit("s2", {"s2.txt": "2\n"})
    switch(repo, "feat")
    repo.commit("f2", {"shared.txt": lines(l7="feat")})
    repo.git("merge", "-q", "--no-edit", "side")
    repo.commit("f3", {"f3.txt": "3\n"})
    switch(repo, "main")
    repo.commit("m1", {"shared.txt": lines(l4="main")})
    with overlay_of(repo) as overlay:
        picks = commits_to_replay(
            overlay,
            overlay.revparse_single("feat").peel(pygit2.Commit),
            overlay.revparse_single("main").peel(pygit2.Commit),
        )
    rev_list = repo.git(
        "rev-list",
        "--reverse",
        "--topo-order",
        "--no-merges",
        "--right-only",
        "--cherry-pick",
        "main...feat",
    ).split()
    assert [str(c.id) for c in picks] == rev_list
    result = assert_like_git(repo)
    assert len(result.commits) == 5


def test_conflicting_files_are_listed(repo: Repo) -> None:
    repo.commit("base", {"a.txt": LINES, "b.txt": LINES, "c.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"clean.txt": "no conflict here\n"})
    repo.commit(
        "f2", {"a.txt": lines(l3="feat"), "b.txt": lines(l5="feat"), "c.txt": lines(l1="feat")}
    )
    repo.commit("f3", {"d.txt": "never reached\n"})
    switch(repo, "main")
    repo.commit(
        "m1", {"a.txt": lines(l3="main"), "b.txt": lines(l5="main"), "c.txt": lines(l8="main")}
    )
    result = assert_like_git(repo)
    assert result.conflict_files == ["a.txt", "b.txt"]


def test_conflict_files_are_capped(repo: Repo) -> None:
    names = [f"dir/f{i:03}.txt" for i in range(MAX_CONFLICT_FILES + 5)]
    repo.commit("base", dict.fromkeys(names, LINES))
    branch_from(repo, "feat")
    repo.commit("f1", dict.fromkeys(names, lines(l2="feat")))
    switch(repo, "main")
    repo.commit("m1", dict.fromkeys(names, lines(l2="main")))
    with predict(repo, "feat", "main") as (result, _):
        pass
    expected = git_rebase(repo, "feat", "main")
    assert result.conflict and expected.conflict
    assert result.conflict_files == expected.conflict_files[:MAX_CONFLICT_FILES]


def test_modify_delete_conflict(repo: Repo) -> None:
    repo.commit("base", {"a.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": lines(l1="feat")})
    switch(repo, "main")
    repo.git("rm", "-q", "a.txt")
    repo.commit("m1")
    assert assert_like_git(repo).conflict_files == ["a.txt"]


def test_rename_on_base_edit_on_branch(repo: Repo) -> None:
    repo.commit("base", {"old/name.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"old/name.txt": lines(l4="edited on the branch")})
    switch(repo, "main")
    repo.git("mv", "old/name.txt", "new-name.txt")
    repo.commit("m1", {"new-name.txt": lines(l8="edited while renaming")})
    result = assert_like_git(repo)
    assert not result.conflict


def test_rename_on_branch_edit_on_base(repo: Repo) -> None:
    repo.commit("base", {"old.txt": LINES})
    branch_from(repo, "feat")
    repo.git("mv", "old.txt", "renamed.txt")
    repo.commit("f1")
    repo.commit("f2", {"renamed.txt": lines(l1="after the rename")})
    switch(repo, "main")
    repo.commit("m1", {"old.txt": lines(l6="edited on main")})
    result = assert_like_git(repo)
    assert not result.conflict and len(result.commits) == 2


def test_replay_into_the_real_repository_lands_objects(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    switch(repo, "main")
    repo.commit("m1", {"m.txt": "m\n"})
    real = pygit2.Repository(str(repo.path))
    head = real.revparse_single("feat").peel(pygit2.Commit)
    onto = real.revparse_single("main").peel(pygit2.Commit)
    result = replay(real, head, onto, COMMITTER)
    assert result.tip is not None
    assert repo.git("cat-file", "-t", str(result.tip)).strip() == "commit"
    assert repo.git("rev-parse", f"{result.tip}~1").strip() == str(onto.id)
    assert (
        repo.git("rev-parse", f"{result.tip}^{{tree}}").strip()
        == git_rebase(repo, "feat", "main").tree
    )


def merge_tree(repo: Repo, base: str, head: str) -> tuple[bool, list[str], str]:
    """`git merge-tree --write-tree --name-only`: conflict, conflicted paths, tree."""
    rc, out = git_rc(repo.path, "merge-tree", "--write-tree", "--name-only", base, head)
    assert rc in (0, 1), out
    tree, *rest = out.split("\n")
    files = rest[: rest.index("")] if rc == 1 else []
    return rc == 1, files, tree


def assert_merge_like_git(repo: Repo, base: str = "main", head: str = "feat") -> list[str]:
    before = repo.state_fingerprint()
    with overlay_of(repo) as overlay:
        base_commit = overlay.revparse_single(base).peel(pygit2.Commit)
        head_commit = overlay.revparse_single(head).peel(pygit2.Commit)
        predicted = three_way_conflicts(overlay, base_commit, head_commit)
        assert repo.state_fingerprint() == before
        conflict, files, tree = merge_tree(repo, base, head)
        assert predicted is not None and same_files(predicted, files)
        assert bool(predicted) == conflict
        if not conflict:
            merged = overlay.merge_commits(base_commit, head_commit).write_tree(overlay)
            assert str(merged) == tree
    return files


def test_three_way_clean_and_conflicting(repo: Repo) -> None:
    repo.commit("base", {"a.txt": LINES, "b.txt": LINES, "old.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": lines(l1="feat")})
    repo.git("mv", "old.txt", "moved.txt")
    repo.commit("f2", {"b.txt": lines(l2="feat")})
    switch(repo, "main")
    repo.commit("m1", {"a.txt": lines(l8="main"), "old.txt": lines(l3="main")})
    assert assert_merge_like_git(repo) == []
    repo.commit("m2", {"b.txt": lines(l2="main")})
    assert assert_merge_like_git(repo) == ["b.txt"]


def test_three_way_unrelated_histories(repo: Repo) -> None:
    repo.git("checkout", "-q", "--orphan", "feat")
    repo.commit("unrelated", {"x.txt": "x\n"})
    with overlay_of(repo) as overlay:
        base = overlay.revparse_single("main").peel(pygit2.Commit)
        head = overlay.revparse_single("feat").peel(pygit2.Commit)
        assert three_way_conflicts(overlay, base, head) is None
    assert git_rc(repo.path, "merge-tree", "--write-tree", "main", "feat")[0] not in (0, 1)


# A random history: each commit sets lines of small files, deletes or renames them. Files have
# distinct lines, as git and libgit2 break ties between equally similar rename sources
# differently, and files are never re-created and each side renames to its own name, as they
# resolve a rename onto a path the other side added differently.
FILES = ["a.txt", "b.txt", "c.txt"]


def _original(name: str) -> list[str]:
    return [f"{name[0]} {i}" for i in range(1, 9)]


_edit = st.tuples(
    st.sampled_from([*FILES, "d.txt", "e.txt"]),
    st.one_of(
        st.none(),  # delete
        st.just("rename"),
        st.dictionaries(
            st.integers(1, 8), st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3
        ),
    ),
)
_commit = st.lists(_edit, min_size=1, max_size=2)


def _apply(repo: Repo, label: str, edits: list, new_name: str) -> None:
    for name, change in edits:
        target = repo.path / name
        if change is None:
            target.unlink(missing_ok=True)
        elif change == "rename":
            if target.exists() and not (repo.path / new_name).exists():
                target.rename(repo.path / new_name)
        elif target.exists():
            current = target.read_text().splitlines()
            for line, value in change.items():
                current[line - 1] = value
            target.write_text("".join(f"{c}\n" for c in current))
    repo.git("add", "-A")
    repo.git("commit", "-q", "--allow-empty", "-m", label)


def _random_repo(tmp: str, feat: list, main: list, pick: bool) -> Repo:
    repo = init_repo(Path(tmp) / "repo", initial=False)
    repo.commit("base", {name: "".join(f"{line}\n" for line in _original(name)) for name in FILES})
    branch_from(repo, "feat")
    for i, edits in enumerate(feat):
        _apply(repo, f"feat {i}", edits, "d.txt")
    switch(repo, "main")
    if pick:
        git_rc(repo.path, "cherry-pick", "--allow-empty", "--keep-redundant-commits", "feat")
        git_rc(repo.path, "cherry-pick", "--abort")
    for i, edits in enumerate(main):
        _apply(repo, f"main {i}", edits, "e.txt")
    return repo


_histories = {
    "feat": st.lists(_commit, min_size=1, max_size=3),
    "main": st.lists(_commit, min_size=0, max_size=3),
    "pick": st.booleans(),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_histories)
def test_random_histories_replay_like_git_rebase(feat: list, main: list, pick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert_like_git(_random_repo(tmp, feat, main, pick))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_histories)
def test_random_histories_merge_like_git_merge_tree(feat: list, main: list, pick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert_merge_like_git(_random_repo(tmp, feat, main, pick))


# ---------------------------------------------------------------- replay_conflicts


def conflicts_of(repo: Repo, branch: str = "feat", base: str = "main") -> list[str]:
    """replay_conflicts, checked against the full replay."""
    with overlay_of(repo) as overlay:
        head = overlay.revparse_single(branch).peel(pygit2.Commit)
        onto = overlay.revparse_single(base).peel(pygit2.Commit)
        expected = replay(overlay, head, onto, COMMITTER).conflict_files
    with overlay_of(repo) as overlay:
        head = overlay.revparse_single(branch).peel(pygit2.Commit)
        onto = overlay.revparse_single(base).peel(pygit2.Commit)
        assert replay_conflicts(overlay, head, onto) == expected
    return expected


def assert_conflicts_like_git(repo: Repo) -> list[str]:
    files = conflicts_of(repo)
    expected = git_rebase(repo, "feat", "main")
    assert same_files(files, expected.conflict_files) and bool(files) == expected.conflict
    return files


def counting_merges(overlay: pygit2.Repository) -> list[int]:
    """Count the tree merges made through `overlay`."""
    calls: list[int] = []
    merge_trees = overlay.merge_trees

    def counted(*args: object, **kwargs: object) -> pygit2.Index:
        calls.append(1)
        return merge_trees(*args, **kwargs)

    overlay.merge_trees = counted
    return calls


def test_conflict_after_a_long_run_of_clean_commits(repo: Repo) -> None:
    repo.commit("base", {"shared.txt": LINES})
    branch_from(repo, "feat")
    for i in range(12):
        repo.commit(f"f{i}", {f"f{i}.txt": f"{i}\n"})
    repo.commit("clash", {"shared.txt": lines(l3="feat")})
    for i in range(5):
        repo.commit(f"after {i}", {f"g{i}.txt": f"{i}\n"})
    switch(repo, "main")
    repo.commit("m1", {"shared.txt": lines(l3="main"), "m.txt": "m\n"})
    assert assert_conflicts_like_git(repo) == ["shared.txt"]
    with overlay_of(repo) as overlay:
        merges = counting_merges(overlay)
        head = overlay.revparse_single("feat").peel(pygit2.Commit)
        onto = overlay.revparse_single("main").peel(pygit2.Commit)
        assert replay_conflicts(overlay, head, onto) == ["shared.txt"]
        assert len(merges) == 2


def test_clean_branch_needs_no_merge(repo: Repo) -> None:
    repo.commit("base", {"shared.txt": LINES})
    branch_from(repo, "feat")
    for i in range(5):
        repo.commit(f"f{i}", {f"f{i}.txt": f"{i}\n"})
    switch(repo, "main")
    repo.commit("m1", {"shared.txt": lines(l3="main")})
    assert assert_conflicts_like_git(repo) == []
    with overlay_of(repo) as overlay:
        merges = counting_merges(overlay)
        head = overlay.revparse_single("feat").peel(pygit2.Commit)
        onto = overlay.revparse_single("main").peel(pygit2.Commit)
        assert replay_conflicts(overlay, head, onto) == []
        assert merges == []


@pytest.mark.parametrize(("on_main", "on_feat"), [("d", "d/g"), ("d/g", "d")])
def test_directory_file_clash(repo: Repo, on_main: str, on_feat: str) -> None:
    """libgit2 lists the clash at the file's path; git renames the file to d~<side>."""
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.commit("f2", {on_feat: "feat\n"})
    repo.commit("f3", {"b.txt": "b\n"})
    switch(repo, "main")
    repo.commit("m1", {on_main: "main\n"})
    assert conflicts_of(repo) == ["d"]


def test_non_linear_branch_is_replayed_in_full(repo: Repo) -> None:
    repo.commit("base", {"shared.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"f1.txt": "1\n"})
    branch_from(repo, "side", "feat")
    repo.commit("s1", {"shared.txt": lines(l2="side")})
    switch(repo, "feat")
    repo.commit("f2", {"f2.txt": "2\n"})
    repo.git("merge", "-q", "--no-edit", "side")
    repo.commit("f3", {"shared.txt": lines(l2="side", l4="feat")})
    switch(repo, "main")
    repo.commit("m1", {"shared.txt": lines(l4="main")})
    assert assert_conflicts_like_git(repo) == ["shared.txt"]
    with overlay_of(repo) as overlay:
        head = overlay.revparse_single("feat").peel(pygit2.Commit)
        onto = overlay.revparse_single("main").peel(pygit2.Commit)
        assert not _is_linear(overlay, _walk(overlay, head, onto), head, onto)


def test_skipped_commit_counts_as_changed_and_ends_a_run(repo: Repo) -> None:
    """A commit lands upstream and is reverted there: a later pick conflicts."""
    repo.commit("base", {"shared.txt": LINES})
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.commit("f2", {"shared.txt": lines(l2="picked")})
    picked = repo.head()
    repo.commit("f3", {"b.txt": "b\n"})
    repo.commit("f4", {"shared.txt": lines(l2="picked", l3="next")})
    switch(repo, "main")
    repo.commit("m1", {"m.txt": "m\n"})
    repo.git("cherry-pick", picked)
    repo.commit("revert", {"shared.txt": LINES})
    assert assert_conflicts_like_git(repo) == ["shared.txt"]


def test_content_a_merge_moves_counts_as_changed(repo: Repo) -> None:
    """The base's edit follows the branch's rename, where the next pick edits it again."""
    repo.commit("base", {"old.txt": LINES})
    branch_from(repo, "feat")
    repo.git("mv", "old.txt", "new.txt")
    repo.commit("f1")
    repo.commit("f2", {"new.txt": lines(l3="feat")})
    switch(repo, "main")
    repo.commit("m1", {"old.txt": lines(l3="main")})
    assert assert_conflicts_like_git(repo) == ["new.txt"]


# Histories for replay_conflicts against the full replay (not git, which resolves directory/file
# clashes its own way): files become directories and back, renames, commits picked upstream.
PATHS = ["a.txt", "b.txt", "d.txt", "d", "d/g"]
_any_edit = st.tuples(
    st.sampled_from(PATHS),
    st.one_of(
        st.none(),  # delete
        st.just("rename"),
        st.just("write"),
        st.dictionaries(
            st.integers(1, 8), st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3
        ),
    ),
)
_any_commit = st.lists(_any_edit, min_size=1, max_size=3)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.is_file():
        path.unlink()


def _write(root: Path, name: str, text: str) -> None:
    """Write a file at `name`, replacing a directory there and files where its directories go."""
    target = root / name
    for parent in reversed(Path(name).parents):
        if (root / parent).is_file():
            (root / parent).unlink()
    _remove(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _apply_any(repo: Repo, label: str, edits: list, new_name: str) -> None:
    for name, change in edits:
        target = repo.path / name
        if change is None:
            _remove(target)
        elif change == "write":
            _write(repo.path, name, "".join(f"{label} {name} {i}\n" for i in range(8)))
        elif change == "rename":
            if target.is_file() and not (repo.path / new_name).exists():
                target.rename(repo.path / new_name)
        elif target.is_file():
            current = target.read_text().splitlines()
            for line, value in change.items():
                if line <= len(current):
                    current[line - 1] = value
            target.write_text("".join(f"{c}\n" for c in current))
    repo.git("add", "-A")
    repo.git("commit", "-q", "--allow-empty", "-m", label)


def _pick(repo: Repo, rev: str, revert: bool) -> None:
    """Cherry-pick `rev` (-x: never the same commit), then maybe revert it."""
    rc, _ = git_rc(repo.path, "cherry-pick", "-x", "--allow-empty", "--keep-redundant-commits", rev)
    if rc != 0:
        git_rc(repo.path, "cherry-pick", "--abort")
    elif revert and git_rc(repo.path, "revert", "--no-edit", "HEAD")[0] != 0:
        git_rc(repo.path, "revert", "--abort")


def _random_tree_repo(tmp: str, feat: list, main: list) -> Repo:
    repo = init_repo(Path(tmp) / "repo", initial=False)
    names = ["a.txt", "b.txt", "d/g"]
    repo.commit("base", {n: "".join(f"{line}\n" for line in _original(n)) for n in names})
    branch_from(repo, "feat")
    for i, edits in enumerate(feat):
        _apply_any(repo, f"feat {i}", edits, "d.txt")
    switch(repo, "main")
    for i, step in enumerate(main):
        if isinstance(step, tuple):
            _pick(repo, f"feat~{step[0]}", revert=step[1])
        else:
            _apply_any(repo, f"main {i}", step, "e.txt")
    return repo


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    feat=st.lists(_any_commit, min_size=1, max_size=6),
    main=st.lists(st.one_of(_any_commit, st.tuples(st.integers(0, 5), st.booleans())), max_size=4),
)
def test_random_histories_conflict_like_the_full_replay(feat: list, main: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = _random_tree_repo(tmp, feat, main)
        expected = conflicts_of(repo)
        with overlay_of(repo) as overlay:
            head = overlay.revparse_single("feat").peel(pygit2.Commit)
            onto = overlay.revparse_single("main").peel(pygit2.Commit)
            chain = _walk(overlay, head, onto)
            if chain and not overlay.descendant_of(head.id, onto.id):
                assert _is_linear(overlay, chain, head, onto)
                picks = {c.id for c in _not_upstream(overlay, head, onto, chain)}
                assert _chain_conflicts(overlay, chain, picks, onto) == expected, "fell back"
