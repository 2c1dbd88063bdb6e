"""The overlay repository reads the real object database and keeps every write in memory."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from hostd.git.overlay import overlay_repository, set_strict_object_creation
from tests.gitrepo import Repo, git, git_rc, init_repo

OLD = 1_000_000_000  # 2001: any touch of a file moves its mtime away from this


def age_objects(repo: Repo) -> None:
    for root, _, files in os.walk(repo.path / ".git" / "objects"):
        for name in files:
            os.utime(os.path.join(root, name), (OLD, OLD))


def objects_snapshot(repo: Repo) -> dict[str, tuple[int, int]]:
    snap = {}
    for root, _, files in os.walk(repo.path / ".git" / "objects"):
        for name in files:
            st = os.stat(os.path.join(root, name))
            snap[os.path.join(root, name)] = (st.st_size, st.st_mtime_ns)
    return snap


BASE = b"1\n2\n3\n4\n5\n"
OURS = b"one\n2\n3\n4\n5\n"
THEIRS = b"1\n2\n3\n4\nfive\n"
MERGED = b"one\n2\n3\n4\nfive\n"


def _tree_with(repo: pygit2.Repository, tree: pygit2.Tree, name: str, data: bytes) -> pygit2.Oid:
    builder = repo.TreeBuilder(tree)
    builder.insert(name, repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
    return builder.write()


def _packed_and_loose(repo: Repo) -> tuple[str, str]:
    """A repository whose objects are partly packed, partly loose; returns one blob of each."""
    repo.commit("packed", {"packed.txt": "in a pack\n"})
    repo.git("gc", "-q")
    repo.commit("loose", {"loose.txt": "a loose object\n"})
    packed = repo.git("rev-parse", "HEAD~1:packed.txt").strip()
    loose = repo.git("rev-parse", "HEAD:loose.txt").strip()
    return packed, loose


def test_writes_stay_in_memory(repo: Repo) -> None:
    packed, loose = _packed_and_loose(repo)
    age_objects(repo)
    before = repo.state_fingerprint(), objects_snapshot(repo)

    real = pygit2.Repository(str(repo.path))
    with overlay_repository(real) as overlay:
        head = overlay.head.peel(pygit2.Commit)
        # Rewriting objects that exist (packed, loose) must not even touch their files.
        assert overlay.create_blob(b"in a pack\n") == pygit2.Oid(hex=packed)
        assert overlay.create_blob(b"a loose object\n") == pygit2.Oid(hex=loose)
        blob = overlay.create_blob(b"only in memory\n")
        tree = _tree_with(overlay, head.tree, "new.txt", b"only in memory\n")
        sig = pygit2.Signature("Someone", "someone@example.com", 1_700_000_000, 0)
        commit = overlay.create_commit(None, sig, sig, "in memory\n", tree, [head.id])
        ours, theirs = (_tree_with(overlay, head.tree, "lines.txt", t) for t in (OURS, THEIRS))
        ancestor = _tree_with(overlay, head.tree, "lines.txt", BASE)
        merged_tree = overlay.merge_trees(ancestor, ours, theirs).write_tree(overlay)
        merged = overlay[merged_tree].peel(pygit2.Tree)["lines.txt"]
        assert merged.data == MERGED
        assert overlay[commit].peel(pygit2.Commit).tree["new.txt"].id == blob
        written = [blob, tree, commit, merged_tree, merged.id]
        assert all(oid in overlay.odb and oid not in real.odb for oid in written)

    assert (repo.state_fingerprint(), objects_snapshot(repo)) == before
    assert git_rc(repo.path, "cat-file", "-e", str(commit))[0] != 0
    with overlay_repository(real) as fresh:
        assert not any(oid in fresh.odb for oid in written)


def test_reads_short_ids_from_memory_and_disk(repo: Repo) -> None:
    packed, loose = _packed_and_loose(repo)
    with overlay_repository(pygit2.Repository(str(repo.path))) as overlay:
        blob = overlay.create_blob(b"memory only, looked up by prefix\n")
        assert overlay.revparse_single(str(blob)[:10]).id == blob
        assert overlay.revparse_single(packed[:9]).id == pygit2.Oid(hex=packed)
        assert overlay.revparse_single(loose[:9]).id == pygit2.Oid(hex=loose)
        assert overlay.revparse_single("HEAD").id == pygit2.Oid(hex=repo.head())


def test_linked_worktree_and_alternates(base_dir: Path) -> None:
    source = init_repo(base_dir / "source")
    source.commit("shared", {"shared.txt": "from the alternate\n"})
    git(base_dir, "clone", "-q", "--shared", str(source.path), str(base_dir / "borrower"))
    borrower = Repo(base_dir / "borrower")
    assert (borrower.path / ".git" / "objects" / "info" / "alternates").exists()
    tree = borrower.worktree(base_dir / "wt", "agent/x")
    tree.commit("on the worktree", {"wt.txt": "worktree\n"})
    before = borrower.state_fingerprint(), source.state_fingerprint()

    with overlay_repository(pygit2.Repository(str(tree.path))) as overlay:
        head = overlay.head.peel(pygit2.Commit)
        assert str(head.id) == tree.head()
        assert head.tree["shared.txt"].data == b"from the alternate\n"
        _tree_with(overlay, head.tree, "x.txt", b"x\n")
    assert (borrower.state_fingerprint(), source.state_fingerprint()) == before


def test_only_writes_into_an_overlay_skip_the_existence_check(tmp_path: Path) -> None:
    repo = pygit2.Repository(str(init_repo(tmp_path / "r").path))
    missing = pygit2.Oid(hex="1" * 40)
    set_strict_object_creation(True)  # libgit2's default, and a command worker's
    with overlay_repository(repo) as overlay:
        builder = overlay.TreeBuilder()
        builder.insert("ghost", missing, FileMode.BLOB)
        assert builder.write() in overlay
    with pytest.raises(pygit2.GitError):
        repo.TreeBuilder().insert("ghost", missing, FileMode.BLOB)
