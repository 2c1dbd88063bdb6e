"""In-memory rebase and three-way merge: the prediction of the preview and the land of the merge.

Objects are written to the repository object given: an overlay (`hostd.git.overlay`) for a
preview, the real repository when landing. Nothing here writes refs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygit2
from pygit2.enums import DeltaStatus, DiffFind, SortMode

from hostd.git.landing import unmerged_commits

MAX_CONFLICT_FILES = 50


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
    walker = repo.walk(head.id, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    walker.hide(onto.id)
    picks = [c for c in walker if len(c.parent_ids) <= 1]
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
    """The paths git leaves unmerged, sorted, at most MAX_CONFLICT_FILES.

    libgit2 keeps each stage of a conflict at the path it has in its own tree; git records a
    file renamed on one side only under the new name, one renamed differently on both sides
    under all three.
    """
    if index.conflicts is None:
        return []
    entries = [e for conflict in index.conflicts for e in conflict if e is not None]
    renamed: dict[str, set[str]] = {}
    for side in (ours, theirs):
        for old, new in _renames(repo, ancestor, side).items():
            renamed.setdefault(old, set()).add(new)
    for old, new in renamed.items():
        if len(new) > 1:
            new.add(old)
    paths = set().union(*(renamed.get(e.path, {e.path}) for e in entries))
    return sorted(paths)[:MAX_CONFLICT_FILES]


def replay(
    repo: pygit2.Repository,
    head: pygit2.Commit,
    onto: pygit2.Commit,
    committer: pygit2.Signature,
) -> ReplayResult:
    """Rebase head onto `onto` as `git rebase` would: cherry-pick each commit, stop at a conflict.

    Commits that become empty are dropped. Authors and messages are kept; the committer is
    `committer`. When onto is already an ancestor of head nothing is rewritten and the tip is
    head.
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
        index = repo.merge_trees(parent_tree, current.tree_id, commit.tree_id)
        if index.conflicts is not None:
            files = conflict_paths(repo, index, parent_tree, current.tree_id, commit.tree_id)
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
