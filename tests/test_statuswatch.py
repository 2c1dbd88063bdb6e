"""The kept status count: after every kind of change the count equals `git status --porcelain`,
and when nothing changed it comes from memory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hostd.git.status import Tally, retally, tally
from hostd.git.statuswatch import (
    LOCAL_FILESYSTEMS,
    StatusWatch,
    filesystem_type,
    last_generation,
    watch_budget,
)
from tests.gitrepo import Repo, git, init_repo


class Counted:
    """`tally` and `retally`, remembering how often each ran."""

    def __init__(self) -> None:
        self.full = 0
        self.partial = 0

    @property
    def calls(self) -> int:
        return self.full + self.partial

    def tally(self, repo: pygit2.Repository) -> Tally:
        self.full += 1
        return tally(repo)

    def retally(self, repo: pygit2.Repository, kept: Tally, paths: set[str]) -> bool:
        self.partial += 1
        return retally(repo, kept, paths)


@pytest.fixture
def watch() -> Iterator[StatusWatch]:
    status_watch = StatusWatch()
    yield status_watch
    status_watch.close()


@pytest.fixture
def tree(base_dir: Path) -> Repo:
    """A linked worktree with nested folders, an ignored build folder and an untracked one."""
    main = init_repo(base_dir / "repo")
    main.commit(
        "layout",
        {
            ".gitignore": "build/\n*.log\n",
            "src/app/main.py": "print(1)\n",
            "src/lib/util.py": "x = 1\n",
            "docs/guide.md": "guide\n",
        },
    )
    agent = main.worktree(base_dir / "agent", "agent/one")
    agent.write("build/out/artifact.bin", "binary\n")
    agent.write("scratch/notes.txt", "untracked\n")
    return agent


def porcelain_count(path: Path) -> int:
    """`git status --porcelain` lines, without the index refresh that would be a change."""
    out = git(path, "--no-optional-locks", "status", "--porcelain")
    return len([line for line in out.split("\n") if line])


def check(watch: StatusWatch, repo: Repo, counted: Counted | None = None) -> int:
    """The watched count equals git's; returns 1 when it was counted again (in whole or in
    part), 0 when it came from memory."""
    counted = counted or Counted()
    handle = pygit2.Repository(str(repo.path))
    before = counted.calls
    assert watch.count(handle, counted.tally, counted.retally) == porcelain_count(repo.path)
    return int(counted.calls > before)


def test_unchanged_tree_is_answered_from_memory(watch: StatusWatch, tree: Repo) -> None:
    counted = Counted()
    assert check(watch, tree, counted) == 1
    assert check(watch, tree, counted) == 0
    assert check(watch, tree, counted) == 0
    assert watch.hits == 2
    assert watch.watch_count > 5


def test_git_status_run_by_someone_else_is_harmless(watch: StatusWatch, tree: Repo) -> None:
    counted = Counted()
    for folder, _, names in os.walk(tree.path):
        for name in names:  # files older than the index are not racily clean
            os.utime(os.path.join(folder, name), (1_000_000_000, 1_000_000_000))
    tree.git("status", "--porcelain")  # records the new file times in the index
    check(watch, tree, counted)
    tree.git("status", "--porcelain")  # takes index.lock and lets it go
    assert check(watch, tree, counted) == 0
    tree.write("src/app/main.py", "print(2)\n")
    assert check(watch, tree, counted) == 1


Change = Callable[[Repo], object]


def _chmod(repo: Repo) -> None:
    os.chmod(repo.path / "src/lib/util.py", 0o755)


def _unignore_build(repo: Repo) -> None:
    (repo.path / ".gitignore").write_text("*.log\n")


def _exclude_scratch(repo: Repo) -> None:
    common = Path(repo.git("rev-parse", "--git-common-dir").strip())
    if not common.is_absolute():
        common = repo.path / common
    (common / "info").mkdir(exist_ok=True)
    (common / "info" / "exclude").write_text("scratch/\n")


def _global_excludes(repo: Repo) -> None:
    ignore = Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "ignore"
    ignore.parent.mkdir(parents=True, exist_ok=True)
    ignore.write_text("notes.txt\n")


def _replace_dir_by_file(repo: Repo) -> None:
    shutil.rmtree(repo.path / "docs")
    (repo.path / "docs").write_text("now a file\n")


def _move_dir(repo: Repo) -> None:
    (repo.path / "src/app").rename(repo.path / "moved")
    (repo.path / "moved/new.py").write_text("new\n")


CHANGES: dict[str, Change] = {
    "modify": lambda r: r.write("src/app/main.py", "print(2)\n"),
    "new file in new nested folders": lambda r: r.write("a/b/c/d.txt", "deep\n"),
    "delete": lambda r: (r.path / "docs/guide.md").unlink(),
    "chmod": _chmod,
    "stage": lambda r: r.git("add", "-A"),
    "commit": lambda r: r.commit("more", {"src/lib/more.py": "y = 2\n"}),
    "switch branch": lambda r: r.git("switch", "-q", "-c", "other", "HEAD~1"),
    "reset --hard": lambda r: r.git("reset", "-q", "--hard", "HEAD~1"),
    "unignore a folder": _unignore_build,
    "info/exclude": _exclude_scratch,
    "global excludes file": _global_excludes,
    "symlink replaces file": lambda r: (
        (r.path / "docs/guide.md").unlink(),
        (r.path / "docs/guide.md").symlink_to("elsewhere"),
    ),
    "folder replaced by file": _replace_dir_by_file,
    "folder moved": _move_dir,
    "empty the untracked folder": lambda r: shutil.rmtree(r.path / "scratch"),
    "config hides untracked": lambda r: r.git("config", "status.showUntrackedFiles", "no"),
}


@pytest.fixture(autouse=True)
def no_global_excludes() -> Iterator[None]:
    """libgit2 fixes where the global ignore file is on first use: clean up the one it knows."""
    yield
    (Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "ignore").unlink(missing_ok=True)


@pytest.mark.parametrize("name", list(CHANGES))
def test_every_change_is_seen(watch: StatusWatch, tree: Repo, name: str) -> None:
    check(watch, tree)
    CHANGES[name](tree)
    assert check(watch, tree) == 1, "the change must make the count be computed again"
    assert check(watch, tree) == 0


def test_a_change_in_an_ignored_folder_is_not_a_change(watch: StatusWatch, tree: Repo) -> None:
    check(watch, tree)
    tree.write("build/out/more.bin", "x\n")
    tree.write("build/new/deeper/file.bin", "x\n")
    assert check(watch, tree) == 0


def test_file_in_new_folder_after_watch_is_seen(watch: StatusWatch, tree: Repo) -> None:
    check(watch, tree)
    (tree.path / "fresh").mkdir()
    check(watch, tree)
    (tree.path / "fresh" / "file.txt").write_text("x\n")
    assert check(watch, tree) == 1


def test_unignored_folder_is_watched(watch: StatusWatch, tree: Repo) -> None:
    check(watch, tree)
    _unignore_build(tree)
    check(watch, tree)
    shutil.rmtree(tree.path / "build/out")
    assert check(watch, tree) == 1


def test_force_added_file_in_ignored_folder_is_watched_after_commit(
    watch: StatusWatch, tree: Repo
) -> None:
    check(watch, tree)
    tree.git("add", "-f", "build/out/artifact.bin")
    tree.git("commit", "-q", "-m", "track an artifact")
    check(watch, tree)
    (tree.path / "build/out/artifact.bin").write_text("changed\n")
    assert check(watch, tree) == 1


def test_main_worktree_and_linked_worktree_share_the_common_dir(
    watch: StatusWatch, tree: Repo, base_dir: Path
) -> None:
    main = Repo(base_dir / "repo")
    check(watch, main)
    check(watch, tree)
    main.git("config", "status.showUntrackedFiles", "no")
    assert check(watch, tree) == 1
    assert check(watch, main) == 1


def test_queue_overflow_forgets_everything(watch: StatusWatch, tree: Repo) -> None:
    check(watch, tree)
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    a, b = tree.path / "src/app/main.py", tree.path / "src/lib/util.py"
    for i in range(limit // 2 + 10):  # alternate files: identical events would be merged
        os.utime(a, (i, i))
        os.utime(b, (i, i))
    (tree.path / "after-the-flood.txt").write_text("lost event\n")
    assert check(watch, tree) == 1


def test_worktree_removed_and_added_again(watch: StatusWatch, tree: Repo, base_dir: Path) -> None:
    main = Repo(base_dir / "repo")
    check(watch, tree)
    main.git("worktree", "remove", "--force", str(tree.path))
    again = main.worktree(tree.path, "agent/two")
    check(watch, again)
    again.write("later.txt", "x\n")
    assert check(watch, again) == 1


def test_submodules_are_counted_every_time(watch: StatusWatch, tree: Repo) -> None:
    tree.write(".gitmodules", "")
    counted = Counted()
    assert check(watch, tree, counted) == 1
    assert check(watch, tree, counted) == 1
    assert watch.watch_count == 0


def test_too_many_folders_are_counted_every_time(tree: Repo) -> None:
    small = StatusWatch(max_dirs=3)
    try:
        counted = Counted()
        assert check(small, tree, counted) == 1
        assert check(small, tree, counted) == 1
        assert small.watch_count == 0
    finally:
        small.close()


def test_worktrees_past_the_watch_budget_are_counted_every_time(tree: Repo, base_dir: Path) -> None:
    small = init_repo(base_dir / "small")
    budget = StatusWatch(max_watches=4)
    try:
        assert check(budget, small) == 1
        assert 0 < budget.watch_count <= 4
        counted = Counted()
        for _ in range(2):
            assert check(budget, tree, counted) == 1
            assert budget.watch_count <= 4
        tree.write("src/app/main.py", "print(2)\n")
        small.write("new.txt", "untracked\n")
        assert check(budget, tree) == 1
        assert check(budget, small) == 1
        assert check(budget, small) == 0
        assert 0 < budget.watch_count <= 4
    finally:
        budget.close()


def test_the_least_recent_worktree_makes_room_in_the_watch_budget(base_dir: Path) -> None:
    main = init_repo(base_dir / "repo")
    trees = [main.worktree(base_dir / f"t{i}", f"agent/{i}") for i in range(3)]
    unlimited = StatusWatch()
    for repo in trees[:2]:
        check(unlimited, repo)
    two_trees = unlimited.watch_count
    unlimited.close()
    budget = StatusWatch(max_watches=two_trees)
    try:
        for repo in trees:
            assert check(budget, repo) == 1
            assert budget.watch_count <= two_trees
        counted = Counted()
        assert check(budget, trees[2], counted) == 0
        assert check(budget, trees[1], counted) == 0
        assert check(budget, trees[0], counted) == 1
    finally:
        budget.close()


def test_the_default_watch_budget_is_a_quarter_of_the_user_limit() -> None:
    user_limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    assert watch_budget(0) == user_limit // 4
    assert watch_budget(100) == 100


def test_least_recent_worktrees_are_unwatched(base_dir: Path) -> None:
    main = init_repo(base_dir / "repo")
    trees = [main.worktree(base_dir / f"t{i}", f"agent/{i}") for i in range(3)]
    few = StatusWatch(max_worktrees=2)
    try:
        for repo in trees:
            check(few, repo)
        counted = Counted()
        assert check(few, trees[0], counted) == 1
        assert check(few, trees[2], counted) == 0
    finally:
        few.close()


def test_filesystem_type_of_the_test_folder_is_known(tmp_path: Path) -> None:
    assert filesystem_type(str(tmp_path.resolve())) in LOCAL_FILESYSTEMS
    assert filesystem_type("/proc/self") == "proc"


FILES = ["a.txt", "d/b.txt", "d/u.txt", "d/e/c.txt", "ign/x.txt", "n/m/new.txt"]
OPERATIONS = ["write", "write", "delete", "mkdir", "rmtree", "stage", "commit", "ignore", "chmod"]
OPERATIONS += ["unstage folder", "untracked no", "untracked normal", "untracked all"]
operation = st.tuples(
    st.sampled_from(OPERATIONS),
    st.sampled_from(FILES),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=12))
def test_random_changes_keep_the_count_right(operations: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = init_repo(Path(tmp) / "r")
        repo.commit("base", {"a.txt": "a\n", "d/b.txt": "b\n", ".gitignore": "ign/\n"})
        watch = StatusWatch()
        try:
            check(watch, repo)
            for op, rel in operations:
                _random_change(repo, op, rel)
                check(watch, repo)
        finally:
            watch.close()


def _random_change(repo: Repo, op: str, rel: str) -> None:
    path = repo.path / rel
    if op == "write":
        repo.write(rel, f"{rel} {os.urandom(2).hex()}\n")
    elif op == "delete" and path.is_file():
        path.unlink()
    elif op == "mkdir":
        (path.parent / "sub").mkdir(parents=True, exist_ok=True)
    elif op == "rmtree" and path.parent != repo.path and path.parent.is_dir():
        shutil.rmtree(path.parent)
    elif op == "stage":
        repo.git("add", "-A")
    elif op == "commit":
        repo.git("add", "-A")
        repo.git("commit", "-q", "--allow-empty", "-m", "c")
    elif op == "ignore":
        (repo.path / ".gitignore").write_text(f"{rel}\n")
    elif op == "unstage folder":
        # -f: the entries go even when staged content differs from both the file and HEAD
        repo.git("rm", "-q", "-r", "-f", "--cached", "--ignore-unmatch", str(Path(rel).parent))
    elif op.startswith("untracked "):
        repo.git("config", "status.showUntrackedFiles", op.split()[1])
    elif op == "chmod" and path.is_file():
        os.chmod(path, 0o755 if not os.access(path, os.X_OK) else 0o644)


def test_main_worktree_index_is_watched_while_a_linked_one_is(
    watch: StatusWatch, tree: Repo, base_dir: Path
) -> None:
    main = Repo(base_dir / "repo")  # its git dir is the linked worktree's common dir
    check(watch, main)
    check(watch, tree)
    main.git("rm", "-q", "--cached", "docs/guide.md")
    assert check(watch, main) == 1


def test_submodule_added_after_counting_is_counted_every_time(
    watch: StatusWatch, tree: Repo, base_dir: Path
) -> None:
    sub = init_repo(base_dir / "sub-origin")
    check(watch, tree)
    tree.git("submodule", "add", "-q", str(sub.path), "sub")
    tree.git("commit", "-q", "-m", "add a submodule")
    check(watch, tree)
    Repo(tree.path / "sub").commit("inside", allow_empty=True)
    assert check(watch, tree) == 1


def test_repository_added_without_gitmodules_is_counted_every_time(
    watch: StatusWatch, tree: Repo
) -> None:
    inner = init_repo(tree.path / "inner")
    tree.git("add", "inner")  # a gitlink, as `git submodule add` makes, but no .gitmodules
    tree.git("commit", "-q", "-m", "embed a repository")
    check(watch, tree)
    inner.commit("inside", allow_empty=True)
    assert check(watch, tree) == 1


def test_global_excludes_change_watches_the_folders_it_unignores(
    watch: StatusWatch, tree: Repo
) -> None:
    ignore = Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "ignore"
    ignore.parent.mkdir(parents=True, exist_ok=True)
    ignore.write_text("cache/\n")
    tree.git("config", "status.showUntrackedFiles", "all")
    tree.write("cache/a.txt", "a\n")
    check(watch, tree)
    ignore.write_text("other/\n")
    check(watch, tree)
    tree.write("cache/b.txt", "b\n")
    assert check(watch, tree) == 1


def test_head_moved_from_another_worktree_watches_what_it_tracks(
    watch: StatusWatch, tree: Repo, base_dir: Path
) -> None:
    check(watch, tree)
    tree.git("add", "-f", "build/out/artifact.bin")
    commit = tree.git("commit-tree", tree.git("write-tree").strip(), "-p", "HEAD", "-m", "m")
    check(watch, tree)
    Repo(base_dir / "repo").git("update-ref", "refs/heads/agent/one", commit.strip())
    check(watch, tree)
    (tree.path / "build/out/artifact.bin").write_text("changed\n")
    assert check(watch, tree) == 1


def test_worktree_of_another_repository_at_the_same_path(
    watch: StatusWatch, base_dir: Path
) -> None:
    first, second = init_repo(base_dir / "first"), init_repo(base_dir / "second")
    check(watch, first.worktree(base_dir / "wt", "one"))
    first.git("worktree", "remove", "--force", str(base_dir / "wt"))
    again = second.worktree(base_dir / "wt", "two")
    check(watch, again)
    again.git("rm", "-q", "--cached", "README.md")
    assert check(watch, again) == 1


def test_included_config_file_change_is_seen(
    watch: StatusWatch, tree: Repo, base_dir: Path
) -> None:
    included = base_dir / "included.gitconfig"
    included.write_text("")
    tree.git("config", "include.path", str(included))
    check(watch, tree)
    included.write_text("[status]\n\tshowUntrackedFiles = no\n")
    assert check(watch, tree) == 1


def counts_after(watch: StatusWatch, repo: Repo, change: Change) -> tuple[int, int]:
    """Whole and partial recounts that `change` causes (the count is checked against git)."""
    counted = Counted()
    check(watch, repo, counted)
    full, partial = counted.full, counted.partial
    change(repo)
    check(watch, repo, counted)
    return counted.full - full, counted.partial - partial


@pytest.mark.parametrize(
    "name",
    ["edit a tracked file", "new file in a tracked folder", "delete", "chmod", "edit twice"],
)
def test_file_changes_are_counted_file_by_file(watch: StatusWatch, tree: Repo, name: str) -> None:
    changes: dict[str, Change] = {
        "edit a tracked file": lambda r: r.write("src/app/main.py", "print(2)\n"),
        "new file in a tracked folder": lambda r: r.write("src/lib/new.py", "n\n"),
        "delete": lambda r: (r.path / "docs/guide.md").unlink(),
        "chmod": _chmod,
        "edit twice": lambda r: (r.write("docs/guide.md", "1\n"), r.write("docs/guide.md", "")),
    }
    assert counts_after(watch, tree, changes[name]) == (0, 1)


@pytest.mark.parametrize(
    "name",
    [
        "new file in an untracked folder",
        "new file in a new folder",
        "new file where the index deleted the folder",
        "new file after staging",
        ".gitignore edited",
    ],
)
def test_changes_a_file_cannot_tell_are_counted_whole(
    watch: StatusWatch, tree: Repo, name: str
) -> None:
    if name == "new file where the index deleted the folder":
        tree.git("rm", "-q", "-r", "--cached", "src/lib")
    changes: dict[str, Change] = {
        "new file in an untracked folder": lambda r: r.write("scratch/more.txt", "m\n"),
        "new file in a new folder": lambda r: r.write("fresh/new.txt", "n\n"),
        "new file where the index deleted the folder": lambda r: r.write("src/lib/x.py", "x\n"),
        "new file after staging": lambda r: (r.write("a.txt", "a\n"), r.git("add", "a.txt")),
        ".gitignore edited": lambda r: r.write(".gitignore", "*.log\n"),
    }
    full, _ = counts_after(watch, tree, changes[name])
    assert full == 1


@pytest.mark.parametrize("mode", ["no", "normal", "all"])
def test_file_by_file_follows_the_untracked_mode(watch: StatusWatch, tree: Repo, mode: str) -> None:
    tree.git("config", "status.showUntrackedFiles", mode)
    assert counts_after(watch, tree, lambda r: r.write("src/lib/new.py", "n\n")) == (0, 1)
    tree.write("scratch/deeper/more.txt", "m\n")
    check(watch, tree)
    tree.write("src/lib/other.py", "o\n")
    (tree.path / "scratch/notes.txt").unlink()
    assert counts_after(watch, tree, lambda r: (r.path / "src/lib/new.py").unlink())[1] == 1


def as_guest(watch: StatusWatch, repo: Repo, counted: Counted | None = None) -> int:
    """`check`, asked by a guest task."""
    with watch.as_guest():
        return check(watch, repo, counted)


def test_guest_worktrees_past_their_bound_are_forgotten_least_recent_first(
    base_dir: Path,
) -> None:
    main = init_repo(base_dir / "repo")
    own, *guests = [main.worktree(base_dir / f"t{i}", f"agent/{i}") for i in range(4)]
    few = StatusWatch(max_guests=2)
    try:
        check(few, own)
        for repo in guests:
            as_guest(few, repo)
        with few.as_guest():
            token = few.token(pygit2.Repository(str(guests[2].path)))
        assert as_guest(few, guests[2]) == 0 and as_guest(few, guests[1]) == 0
        assert check(few, own) == 0
        generation = last_generation()
        assert as_guest(few, guests[0]) == 1
        assert last_generation() > generation  # what was answered under the others is void
        assert as_guest(few, guests[1]) == 0 and as_guest(few, guests[2]) == 1
        with few.as_guest():
            assert few.token(pygit2.Repository(str(guests[2].path))) != token
    finally:
        few.close()


def test_an_own_task_makes_a_guest_worktree_own(base_dir: Path) -> None:
    main = init_repo(base_dir / "repo")
    trees = [main.worktree(base_dir / f"t{i}", f"agent/{i}") for i in range(3)]
    one = StatusWatch(max_guests=1)
    try:
        as_guest(one, trees[0])
        check(one, trees[0])
        for repo in trees[1:]:
            as_guest(one, repo)
        assert check(one, trees[0]) == 0
        assert as_guest(one, trees[1]) == 1
    finally:
        one.close()


step = st.tuples(st.integers(0, 3), st.booleans(), st.booleans())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=16))
@example([(0, True, False), (1, True, True), (2, True, False), (0, True, False), (1, False, True)])
def test_own_and_guest_worktrees_are_kept_as_their_bound_says(
    steps: list[tuple[int, bool, bool]],
) -> None:
    """Random asks (own or guest, after an edit or not) over four worktrees: every count is
    git's, and a count comes from memory exactly when its worktree is still held (own, or
    among the most recent guests) and unchanged since it was last counted."""
    with tempfile.TemporaryDirectory() as tmp:
        main = init_repo(Path(tmp) / "r")
        trees = [main.worktree(Path(tmp) / f"t{i}", f"agent/{i}") for i in range(4)]
        watch = StatusWatch(max_guests=2)
        own: set[int] = set()
        guests: list[int] = []
        edited = set(range(4))
        try:
            for n, (i, guest, edit) in enumerate(steps):
                if edit:
                    trees[i].write(f"f{n}.txt", "x\n")
                    edited.add(i)
                held = i in own or i in guests
                expected = int(not held or i in edited)
                assert (as_guest if guest else check)(watch, trees[i]) == expected
                edited.discard(i)
                if not guest:
                    own.add(i)
                    guests = [g for g in guests if g != i]
                elif i not in own:
                    guests = [*(g for g in guests if g != i), i][-2:]
            for i, repo in enumerate(trees):
                held = i in own or i in guests
                assert check(watch, repo) == int(not held or i in edited)
        finally:
            watch.close()
