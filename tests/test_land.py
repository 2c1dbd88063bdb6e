"""The landing core against `git rebase` in a scratch clone: same tree, same commits, and on a
conflict the same files with nothing changed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pygit2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hostd.git.cas import compare_and_swap, ref_target
from hostd.git.land import (
    Candidate,
    build_candidate,
    landed_by,
    parse_identity,
    swap_base,
)
from hostd.git.overlay import overlay_repository
from hostd.git.replay import replay
from tests.gitrepo import Repo, git, git_rc, init_repo
from tests.landing_oracle import commits_of, git_rebase, snapshot
from tests.test_replay import _any_commit, _random_tree_repo

HOSTD = parse_identity("hostd <hostd@localhost>")
MAIN = "refs/heads/main"


def land(repo: Repo, head: str = "feat", command_id: str = "c1") -> Candidate:
    """Build the candidate and swap the base, as the merge does, in this process."""
    real = pygit2.Repository(str(repo.path))
    head_sha = str(real.revparse_single(head).peel(pygit2.Commit).id)
    candidate = build_candidate(real, head_sha, MAIN, HOSTD)
    if not candidate.conflict:
        assert swap_base(real, candidate, HOSTD, command_id)
    return candidate


def assert_lands_like_git(repo: Repo, head: str = "feat") -> Candidate:
    """As `git rebase main`, except that a branch already on the base tip fast-forwards (the
    contract), where git would flatten merge commits on it."""
    old_main = repo.git("rev-parse", "main").strip()
    if git_rc(repo.path, "merge-base", "--is-ancestor", old_main, head)[0] == 0:
        candidate = land(repo, head)
        assert not candidate.conflict and not candidate.rewritten
        assert repo.git("rev-parse", "main").strip() == repo.git("rev-parse", head).strip()
        landed = repo.git("rev-list", f"{old_main}..main").split()
        assert sorted(candidate.commits) == sorted(landed)
        return candidate
    expected = git_rebase(repo, head, "main")
    before = snapshot(repo)
    candidate = land(repo, head)
    if expected.tree is None:
        assert candidate.conflict
        assert candidate.conflict_files == expected.conflict_files[:50]
        assert snapshot(repo) == before
        return candidate
    assert not candidate.conflict, candidate.conflict_files
    new_main = repo.git("rev-parse", "main").strip()
    assert new_main == candidate.tip
    assert repo.git("rev-parse", "main^{tree}").strip() == expected.tree
    landed = commits_of(repo, f"{old_main}..{new_main}")
    assert [(c.author, c.message) for c in landed] == [
        (c.author, c.message) for c in expected.commits
    ]
    assert candidate.commits == repo.git("rev-list", "--reverse", f"{old_main}..main").split()
    assert candidate.rewritten == bool(expected.commits)
    committers = repo.git("log", "--format=%cn <%ce>", f"{old_main}..main").split("\n")
    assert {c for c in committers if c} <= {"hostd <hostd@localhost>"}
    return candidate


def branch_from(repo: Repo, name: str, start: str = "main") -> None:
    repo.git("checkout", "-q", "-b", name, start)


def test_fast_forward_moves_the_base_to_head(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.commit("f2", {"b.txt": "b\n"})
    candidate = assert_lands_like_git(repo)
    assert candidate.tip == repo.git("rev-parse", "feat").strip()
    assert candidate.commits == repo.git("rev-list", "--reverse", "feat~2..feat").split()


def test_replay_keeps_authors_and_messages(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.write("a.txt", "a\n")
    repo.git("add", "-A")
    repo.git(
        "-c", "user.name=Agent", "-c", "user.email=agent@example.com",
        "commit", "-q", "-m", "f1\n\nbody\n",
    )  # fmt: skip
    repo.git("checkout", "-q", "main")
    repo.commit("m1", {"m.txt": "m\n"})
    assert_lands_like_git(repo)
    assert repo.git("log", "-1", "--format=%an|%cn|%B", "main") == "Agent|hostd|f1\n\nbody\n\n"


def test_base_moved_after_the_build_is_not_swapped(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("m1", {"m.txt": "m\n"})
    real = pygit2.Repository(str(repo.path))
    head = repo.git("rev-parse", "feat").strip()
    candidate = build_candidate(real, head, MAIN, HOSTD)
    outside = repo.commit("landed from outside", {"o.txt": "o\n"})
    assert not swap_base(real, candidate, HOSTD, "c1")
    assert repo.head() == outside
    rebuilt = build_candidate(real, head, MAIN, HOSTD)
    assert rebuilt.expected == outside
    assert swap_base(real, rebuilt, HOSTD, "c1")
    assert repo.git("merge-base", "--is-ancestor", outside, "main", check=False) == ""
    assert repo.git("show", "main:o.txt") == "o\n"


def test_swap_under_a_git_lock_writes_nothing(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    real = pygit2.Repository(str(repo.path))
    candidate = build_candidate(real, repo.head(), MAIN, HOSTD)
    lock = repo.path / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    assert not swap_base(real, candidate, HOSTD, "c1")
    lock.unlink()
    assert repo.git("rev-parse", "main").strip() == candidate.expected


def test_swap_of_a_packed_ref(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    repo.git("pack-refs", "--all")
    real = pygit2.Repository(str(repo.path))
    candidate = build_candidate(real, repo.head(), MAIN, HOSTD)
    assert swap_base(real, candidate, HOSTD, "c1")
    assert repo.git("rev-parse", "main").strip() == candidate.tip


def test_the_land_is_found_in_the_reflog(repo: Repo) -> None:
    branch_from(repo, "feat")
    repo.commit("f1", {"a.txt": "a\n"})
    before = repo.git("rev-parse", "main").strip()
    candidate = land(repo, command_id="cmd-42")
    real = pygit2.Repository(str(repo.path))
    assert landed_by(real, MAIN, "cmd-42") == (before, candidate.tip, candidate.head)
    assert landed_by(real, MAIN, "cmd-4") is None
    assert "hostd merge cmd-42" in repo.git("reflog", "-1", "--format=%gs", "main")


def test_cas_creates_and_deletes_only_from_the_expected_value(repo: Repo) -> None:
    real = pygit2.Repository(str(repo.path))
    tip = ref_target(real, MAIN)
    assert tip is not None
    assert not compare_and_swap(real, "refs/heads/x", tip, tip, HOSTD, "m")
    assert compare_and_swap(real, "refs/heads/x", None, tip, HOSTD, "m")
    assert not compare_and_swap(real, "refs/heads/x", None, tip, HOSTD, "m")
    assert compare_and_swap(real, "refs/heads/x", tip, None, HOSTD, "m")
    assert repo.git("branch", "--list", "x") == ""


def test_committer_identity_parsing() -> None:
    sig = parse_identity("Land Bot <land@example.com>")
    assert (sig.name, sig.email) == ("Land Bot", "land@example.com")
    assert parse_identity("no email").name == "hostd"


def test_conflict_changes_nothing(repo: Repo) -> None:
    repo.commit("base", {"s.txt": "1\n2\n3\n"})
    branch_from(repo, "feat")
    repo.commit("f1", {"s.txt": "1\nfeat\n3\n", "x.txt": "x\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("m1", {"s.txt": "1\nmain\n3\n"})
    assert assert_lands_like_git(repo).conflict_files == ["s.txt"]


# ---------------------------------------------------------------- random branch shapes
#
# Files live at the top level only and each file is renamed on one side at most, to its own new
# name: libgit2's merge differs from git's merge-ort on directory renames and on rename/rename
# cases (see tests/test_replay.py), so those shapes are not generated.

TEXT_FILES = ["a.txt", "b.txt", "c.txt"]
RENAMABLE = {"feat": ["a.txt", "b.txt"], "main": ["c.txt"], "side": []}
AUTHORS = ["Ann <ann@example.com>", "Bo <bo@example.com>"]


def _lines(name: str) -> list[str]:
    return [f"{name[0]} line {i}" for i in range(1, 9)]


_op = st.one_of(
    st.tuples(
        st.just("edit"),
        st.sampled_from(TEXT_FILES),
        st.dictionaries(st.integers(1, 8), st.sampled_from(["x", "y"]), min_size=1, max_size=2),
    ),
    st.tuples(st.just("delete"), st.sampled_from(TEXT_FILES)),
    st.tuples(st.just("rename"), st.sampled_from(TEXT_FILES)),
    st.tuples(st.just("chmod"), st.sampled_from([*TEXT_FILES, "run.sh"])),
    st.tuples(st.just("binary"), st.integers(0, 3)),
    st.tuples(st.just("add"), st.integers(0, 2)),
)
_commit = st.tuples(st.lists(_op, max_size=3), st.sampled_from(AUTHORS))


class Builder:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.count = 0

    def apply(self, side: str, ops: list, author: str) -> None:
        root = self.repo.path
        self.count += 1
        for op in ops:
            kind, *args = op
            target = root / args[0] if isinstance(args[0], str) else None
            if kind == "edit" and target is not None and target.exists():
                current = target.read_text().splitlines()
                for line, value in args[1].items():
                    if line <= len(current):
                        current[line - 1] = value
                target.write_text("".join(f"{c}\n" for c in current))
            elif kind == "delete" and target is not None:
                target.unlink(missing_ok=True)
            elif kind == "rename" and target is not None and target.exists():
                if args[0] in RENAMABLE[side]:
                    target.rename(root / f"{target.stem}-{side}{self.count}.txt")
            elif kind == "chmod" and target is not None and target.exists():
                target.chmod(target.stat().st_mode ^ 0o111)
            elif kind == "binary":
                (root / "blob.bin").write_bytes(bytes([0, args[0], 255, side == "main"]) * 64)
            elif kind == "add":
                (root / f"new-{side}-{self.count}.txt").write_text(f"{side} {args[0]}\n")
        name, email = author[:-1].split(" <")
        self.repo.git("add", "-A")
        git(
            root,
            "-c", f"user.name={name}", "-c", f"user.email={email}",
            "commit", "-q", "--allow-empty", "-m", f"{side} {self.count}\n\nbody {self.count}\n",
        )  # fmt: skip


def random_repo(tmp: Path, feat: list, side: list, main: list, pick: int | None) -> Repo:
    repo = init_repo(tmp / "repo", initial=False)
    files: dict[str, str | bytes] = {n: "".join(f"{x}\n" for x in _lines(n)) for n in TEXT_FILES}
    files["run.sh"] = "echo hi\n"
    files["blob.bin"] = bytes(range(256))
    repo.commit("base", files)
    build = Builder(repo)
    branch_from(repo, "feat")
    half = len(feat) // 2
    for ops, author in feat[:half]:
        build.apply("feat", ops, author)
    if side:
        branch_from(repo, "side", "feat")
        for ops, author in side:
            build.apply("side", ops, author)
        repo.git("checkout", "-q", "feat")
    for ops, author in feat[half:]:
        build.apply("feat", ops, author)
    if side and git_rc(repo.path, "merge", "-q", "--no-edit", "side")[0] != 0:
        repo.git("merge", "--abort")
    repo.git("checkout", "-q", "main")
    if pick is not None:
        count = len(repo.git("rev-list", "--no-merges", "main..feat").split())
        if count and git_rc(repo.path, "cherry-pick", f"feat~{pick % count}")[0] != 0:
            git_rc(repo.path, "cherry-pick", "--abort")
    for ops, author in main:
        build.apply("main", ops, author)
    return repo


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    feat=st.lists(_commit, min_size=1, max_size=4),
    side=st.lists(_commit, max_size=2),
    main=st.lists(_commit, max_size=3),
    pick=st.one_of(st.none(), st.integers(0, 3)),
)
def test_random_branches_land_like_git_rebase(
    feat: list, side: list, main: list, pick: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = random_repo(Path(tmp), feat, side, main, pick)
        candidate = assert_lands_like_git(repo)
        event("conflict" if candidate.conflict else f"rewritten={candidate.rewritten}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    feat=st.lists(_any_commit, min_size=1, max_size=6),
    main=st.lists(st.one_of(_any_commit, st.tuples(st.integers(0, 5), st.booleans())), max_size=4),
)
def test_shortcut_replay_equals_the_merging_replay(feat: list, main: list) -> None:
    """Files become folders and back, renames, picks upstream: writing a pick's changes onto
    the rebased tree gives the tree merge's commits wherever it applies."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = _random_tree_repo(tmp, feat, main)
        with overlay_repository(pygit2.Repository(str(repo.path))) as overlay:
            head = overlay.revparse_single("feat").peel(pygit2.Commit)
            onto = overlay.revparse_single("main").peel(pygit2.Commit)
            merged = replay(overlay, head, onto, HOSTD)
            short = replay(overlay, head, onto, HOSTD, shortcut=True)
            assert (short.conflict, short.conflict_files) == (
                merged.conflict,
                merged.conflict_files,
            )
            trees = [
                [overlay[c].peel(pygit2.Commit).tree_id for c in r.commits] for r in (merged, short)
            ]
            assert trees[0] == trees[1]
