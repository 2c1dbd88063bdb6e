"""In-memory rebase and three-way merge: the prediction of the preview and the land of the merge.

Objects are written to the repository object given: an overlay (`hostd.git.overlay`) for a
preview, the real repository when landing. Nothing here writes refs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import pygit2
from pygit2.enums import DeltaStatus, DiffFind, FileMode, SortMode

from hostd.git.dirrenames import directory_rename_conflicts, tree_has
from hostd.git.landing import Change, commit_changes, tree_changes, unmerged_commits

MAX_CONFLICT_FILES = 50
_PREDICTION_COMMITTER = pygit2.Signature("hostd", "hostd@localhost")


@dataclass
class ReplayResult:
    """`tip` is the new head (None on a conflict); `commits` the commits created, oldest first;
    `rewritten` whether any were created."""

    conflict: bool = False
    conflict_files: list[str] = field(default_factory=list)
    tip: pygit2.Oid | None = None
    commits: list[pygit2.Oid] = field(default_factory=list)
    rewritten: bool = False


def _is_empty(commit: pygit2.Commit) -> bool:
    """The commit changes nothing against its first parent (root commits: against no tree)."""
    if commit.parents:
        return commit.tree_id == commit.parents[0].tree_id
    return len(commit.tree) == 0


def commits_to_replay(
    repo: pygit2.Repository, head: pygit2.Commit, onto: pygit2.Commit
) -> list[pygit2.Commit]:
    """The commits `git rebase onto` picks, oldest first.

    The non-merge commits of onto..head in topological order, without those whose patch-id is
    on the onto side since the merge base. Commits that start empty are kept, as git does.
    """
    picks = [c for c in _walk(repo, head, onto) if len(c.parent_ids) <= 1]
    return _not_upstream(repo, head, onto, picks)


def _walk(repo: pygit2.Repository, head: pygit2.Commit, onto: pygit2.Commit) -> list[pygit2.Commit]:
    """The commits of onto..head in topological order, oldest first."""
    walker = repo.walk(head.id, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    walker.hide(onto.id)
    return list(walker)


def _not_upstream(
    repo: pygit2.Repository,
    head: pygit2.Commit,
    onto: pygit2.Commit,
    picks: list[pygit2.Commit],
) -> list[pygit2.Commit]:
    """The picks whose patch-id is not on the onto side, and those that start empty."""
    if not picks:
        return []
    unmerged = {c.id for c in unmerged_commits(repo, head, onto)}
    return [c for c in picks if c.id in unmerged or _is_empty(c)]


def _renames(repo: pygit2.Repository, old: pygit2.Oid, new: pygit2.Oid) -> dict[str, str]:
    diff = repo.diff(repo[old], repo[new])
    diff.find_similar(DiffFind.FIND_RENAMES)
    return {
        d.old_file.path: d.new_file.path for d in diff.deltas if d.status == DeltaStatus.RENAMED
    }


def conflict_paths(
    repo: pygit2.Repository,
    index: pygit2.Index,
    ancestor: pygit2.Oid,
    ours: pygit2.Oid,
    theirs: pygit2.Oid,
) -> list[str]:
    """The paths git leaves unmerged, sorted, at most MAX_CONFLICT_FILES ([] when the merge is
    clean), with merge-ort's directory-rename conflicts, which libgit2 does not see.

    libgit2 keeps each stage of a conflict at the path it has in its own tree; git records a
    file renamed on one side only under the new name, one renamed differently on both sides
    under all three.
    """
    moved = directory_rename_conflicts(repo, ancestor, ours, theirs)
    if index.conflicts is None:
        return sorted(moved.values())[:MAX_CONFLICT_FILES]
    entries = [e for conflict in index.conflicts for e in conflict if e is not None]
    renamed: dict[str, set[str]] = {}
    for side in (ours, theirs):
        for old, new in _renames(repo, ancestor, side).items():
            renamed.setdefault(old, set()).add(new)
    for old, new in renamed.items():
        if len(new) > 1:
            new.add(old)
    paths = set(moved.values()).union(*(renamed.get(e.path, {e.path}) for e in entries))
    paths = {moved.get(path, path) for path in paths}
    return sorted(paths)[:MAX_CONFLICT_FILES]


def replay(
    repo: pygit2.Repository,
    head: pygit2.Commit,
    onto: pygit2.Commit,
    committer: pygit2.Signature,
    shortcut: bool = False,
) -> ReplayResult:
    """Rebase head onto `onto` as `git rebase` would: cherry-pick each commit, stop at a conflict.

    Commits that become empty are dropped. Authors and messages are kept; the committer is
    `committer`. When onto is already an ancestor of head nothing is rewritten and the tip is
    head. With `shortcut`, a pick whose changed paths clash with none of those where the
    rebased tree differs from the pick's parent takes its own side (the reasoning of
    `replay_conflicts`): its changes are written onto the rebased tree, no tree merge needed.
    """
    if head.id == onto.id or repo.descendant_of(head.id, onto.id):
        return ReplayResult(tip=head.id)
    current = onto
    created: list[pygit2.Oid] = []
    empty_tree: pygit2.Oid | None = None
    for commit in commits_to_replay(repo, head, onto):
        if commit.parents:
            parent_tree = commit.parents[0].tree_id
        else:
            empty_tree = empty_tree or repo.TreeBuilder().write()
            parent_tree = empty_tree
        tree = _take_own_side(repo, parent_tree, current.tree_id, commit) if shortcut else None
        if tree is None:
            index = repo.merge_trees(parent_tree, current.tree_id, commit.tree_id)
            files = conflict_paths(repo, index, parent_tree, current.tree_id, commit.tree_id)
            if files:
                return ReplayResult(conflict=True, conflict_files=files, commits=created)
            tree = index.write_tree(repo)
        if tree == current.tree_id and not _is_empty(commit):
            continue
        encoding = (commit.message_encoding,) if commit.message_encoding else ()
        new_id = repo.create_commit(
            None, commit.author, committer, commit.raw_message, tree, [current.id], *encoding
        )
        created.append(new_id)
        current = repo[new_id].peel(pygit2.Commit)
    return ReplayResult(tip=current.id, commits=created, rewritten=bool(created))


def _take_own_side(
    repo: pygit2.Repository, parent_tree: pygit2.Oid, current: pygit2.Oid, commit: pygit2.Commit
) -> pygit2.Oid | None:
    """`current` with the commit's changes written in, when none of them clashes with where
    `current` differs from the commit's parent, nor is near a directory rename; None when a tree
    merge is needed."""
    ours = _Paths()
    ours.add(path for path, _, _ in tree_changes(repo, repo[parent_tree], repo[current]))
    theirs = commit_changes(repo, commit)
    if ours.clash(path for path, _, _ in theirs) or _near_directory_rename(
        repo, commit, theirs, ours
    ):
        return None
    try:
        edits = [(path.decode("utf-8").split("/"), new) for path, _, new in theirs]
    except UnicodeDecodeError:
        return None
    return _edit_tree(repo, repo[current], edits) or repo.TreeBuilder().write()


def _edit_tree(
    repo: pygit2.Repository,
    tree: pygit2.Tree | None,
    edits: list[tuple[list[str], tuple[pygit2.Oid, int] | None]],
) -> pygit2.Oid | None:
    """`tree` with each (path parts, new entry or None to delete) applied; None when empty.
    Deletions first, then subtrees, then new files: a file may replace a folder and back."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    nested: dict[str, list[tuple[list[str], tuple[pygit2.Oid, int] | None]]] = {}
    for parts, new in edits:
        if len(parts) > 1:
            nested.setdefault(parts[0], []).append((parts[1:], new))
        elif new is None and builder.get(parts[0]) is not None:
            builder.remove(parts[0])
    for name, inner in nested.items():
        existing = builder.get(name)
        subtree = existing if isinstance(existing, pygit2.Tree) else None
        edited = _edit_tree(repo, subtree, inner)
        if edited is not None:
            builder.insert(name, edited, FileMode.TREE)
        elif existing is not None:
            builder.remove(name)
    for parts, new in edits:
        if len(parts) == 1 and new is not None:
            builder.insert(parts[0], new[0], new[1])
    return builder.write() if len(builder) else None


def replay_conflicts(
    repo: pygit2.Repository, head: pygit2.Commit, onto: pygit2.Commit
) -> list[str]:
    """The conflict files of `replay(repo, head, onto, ...)`, without replaying every pick.

    When onto..head is a linear chain from the merge base, a pick whose changed paths clash with
    none of the paths where the rebased tree may differ from the pick's parent (the onto side's
    changes, the skipped commits', and where real merges moved content) takes its own side
    cleanly, so consecutive such picks are merged in one step, and only when a later pick needs
    a real merge. Other histories are replayed in full.
    """
    if head.id == onto.id or repo.descendant_of(head.id, onto.id):
        return []
    chain = _walk(repo, head, onto)
    if not chain:
        return []
    if _is_linear(repo, chain, head, onto):
        picks = {c.id for c in _not_upstream(repo, head, onto, chain)}
        files = _chain_conflicts(repo, chain, picks, onto)
        if files is not None:
            return files
    return replay(repo, head, onto, _PREDICTION_COMMITTER).conflict_files


def _is_linear(
    repo: pygit2.Repository, chain: list[pygit2.Commit], head: pygit2.Commit, onto: pygit2.Commit
) -> bool:
    """Every commit has one parent, the commit before it; the first one's is the merge base."""
    if any(len(c.parent_ids) != 1 for c in chain):
        return False
    if any(c.parent_ids[0] != prev.id for prev, c in pairwise(chain)):
        return False
    return chain[0].parent_ids[0] == repo.merge_base(head.id, onto.id)


class _Paths:
    """Changed paths; another path clashes with them when it is one of them, or a directory of
    one, or one of them is its directory."""

    def __init__(self) -> None:
        self.files: set[bytes] = set()
        self.dirs: set[bytes] = set()

    def add(self, paths: Iterable[bytes]) -> None:
        for path in paths:
            self.files.add(path)
            self.dirs.update(_directories(path))

    def clash(self, paths: Iterable[bytes]) -> bool:
        return any(
            p in self.files or p in self.dirs or not self.files.isdisjoint(_directories(p))
            for p in paths
        )


def _directories(path: bytes) -> Iterator[bytes]:
    """The directories leading to `path`: a/b/c gives a and a/b."""
    end = path.find(b"/")
    while end >= 0:
        yield path[:end]
        end = path.find(b"/", end + 1)


def _near_directory_rename(
    repo: pygit2.Repository, commit: pygit2.Commit, changes: list[Change], changed: _Paths
) -> bool:
    """The pick adds a file in a directory of its parent where the rebased tree may differ, or
    removes a directory where it may: a directory rename either way, which a merge must judge."""
    trees = (commit.parents[0].tree, commit.tree)
    for path, old, new in changes:
        if (old is None) == (new is None):
            continue
        present = old is None  # an addition is near a rename of a directory the parent had
        for directory in _directories(path):
            if directory in changed.dirs and tree_has(trees[not present], directory) == present:
                return True
    return False


def _diff_paths(repo: pygit2.Repository, old: pygit2.Oid, new: pygit2.Oid) -> set[bytes]:
    """The files that differ between two trees, without rename detection.

    libgit2's diff walks whole trees but fast: it suits the large diffs, where `commit_changes`,
    which reads only the subtrees that differ, suits the commits' small ones.
    """
    diff = repo.diff(repo[old], repo[new])
    return {path for d in diff.deltas for path in (d.old_file.raw_path, d.new_file.raw_path)}


def _chain_conflicts(
    repo: pygit2.Repository,
    chain: list[pygit2.Commit],
    picks: set[pygit2.Oid],
    onto: pygit2.Commit,
) -> list[str] | None:
    """The replay's conflict files along a linear chain; None if a merge assumed clean is not.

    The rebased tree differs from the next pick's parent tree only within `changed`, so a pick
    whose paths do not clash with it merges cleanly by taking its own side, and a run of such
    consecutive commits merged at once gives the same tree. Runs wait in `pending` as (parent
    tree, last commit) until a pick clashes. Skipped commits end a run and their paths join
    `changed`, as do those where a real merge left other content than the pick's.
    """
    changed = _Paths()
    changed.add(_diff_paths(repo, chain[0].parents[0].tree_id, onto.tree_id))
    current = onto.tree_id
    pending: list[tuple[pygit2.Oid, pygit2.Commit]] = []
    for commit in chain:
        parent_tree = commit.parents[0].tree_id
        changes = commit_changes(repo, commit)
        paths = [path for path, _, _ in changes]
        if commit.id not in picks:
            changed.add(paths)
        elif not changed.clash(paths) and not _near_directory_rename(
            repo, commit, changes, changed
        ):
            if pending and pending[-1][1].id == commit.parent_ids[0]:
                pending[-1] = (pending[-1][0], commit)
            else:
                pending.append((parent_tree, commit))
        else:
            merged = _merge_runs(repo, pending, current)
            if merged is None:
                return None
            current = merged
            pending.clear()
            index = repo.merge_trees(parent_tree, current, commit.tree_id)
            files = conflict_paths(repo, index, parent_tree, current, commit.tree_id)
            if files:
                return files
            current = index.write_tree(repo)
            changed.add(_diff_paths(repo, commit.tree_id, current))
    return []


def _merge_runs(
    repo: pygit2.Repository,
    runs: list[tuple[pygit2.Oid, pygit2.Commit]],
    current: pygit2.Oid,
) -> pygit2.Oid | None:
    """`current` with each (parent tree, last commit) run merged in, one merge per run; the
    trees are written to the repository. None if one of the merges conflicts."""
    for parent_tree, last in runs:
        index = repo.merge_trees(parent_tree, current, last.tree_id)
        if conflict_paths(repo, index, parent_tree, current, last.tree_id):
            return None
        current = index.write_tree(repo)
    return current


def three_way_conflicts(
    repo: pygit2.Repository, base: pygit2.Commit, head: pygit2.Commit
) -> list[str] | None:
    """Paths a merge of head into base would leave conflicted ([] when clean).

    None for unrelated histories. libgit2 stores the merged blobs: pass an overlay to keep
    the object database untouched.
    """
    ancestor = repo.merge_base(base.id, head.id)
    if ancestor is None:
        return None
    index = repo.merge_commits(base, head)
    ancestor_tree = repo[ancestor].peel(pygit2.Commit).tree_id
    return conflict_paths(repo, index, ancestor_tree, base.tree_id, head.tree_id)
