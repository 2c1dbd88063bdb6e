"""Resolving the base a workspace is compared against, and its landing base."""

from __future__ import annotations

from dataclasses import dataclass

import pygit2

MAX_REF_LENGTH = 1024


@dataclass(frozen=True)
class Base:
    """A resolved base: the name as given, its commit, and the landing base's commit.

    The landing base is the base branch's upstream remote-tracking ref when it has one
    (squash merges happen on the remote), otherwise the base itself; read from disk only.
    """

    name: str
    commit: pygit2.Commit
    local_branch: str | None
    landing: pygit2.Commit
    landing_name: str


def resolve_commit(repo: pygit2.Repository, spec: str | None) -> pygit2.Commit | None:
    """The commit `spec` names, or None. Specs starting with `-` never resolve."""
    if not spec or spec.startswith("-") or "\0" in spec or len(spec) > MAX_REF_LENGTH:
        return None
    try:
        obj = repo.revparse_single(spec)
        return obj.peel(pygit2.Commit)
    except (KeyError, ValueError, TypeError, pygit2.GitError, pygit2.InvalidSpecError):
        return None


def local_branch(repo: pygit2.Repository, name: str | None) -> pygit2.Branch | None:
    """The local branch `name` (with or without `refs/heads/`), or None."""
    if not name or name.startswith("-") or "\0" in name or len(name) > MAX_REF_LENGTH:
        return None
    short = name.removeprefix("refs/heads/")
    try:
        return repo.branches.local.get(short)
    except (ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        return None


def upstream_of(branch: pygit2.Branch) -> pygit2.Branch | None:
    try:
        return branch.upstream
    except (KeyError, ValueError, pygit2.GitError):
        return None


def resolve_base(
    repo: pygit2.Repository, base_ref: str | None, base_sha: str | None
) -> Base | None:
    """The first of `base_ref`, `base_sha` that resolves to a commit, with its landing base."""
    for spec in (base_ref, base_sha):
        commit = resolve_commit(repo, spec)
        if commit is None:
            continue
        assert spec is not None
        branch = local_branch(repo, spec)
        landing, landing_name = commit, spec
        if branch is not None:
            upstream = upstream_of(branch)
            if upstream is not None:
                try:
                    landing = upstream.peel(pygit2.Commit)
                    landing_name = upstream.shorthand
                except (pygit2.GitError, ValueError):
                    pass
        return Base(
            name=spec,
            commit=commit,
            local_branch=branch.branch_name if branch is not None else None,
            landing=landing,
            landing_name=landing_name,
        )
    return None


def head_tree(repo: pygit2.Repository) -> pygit2.Tree | None:
    """HEAD's tree; None when HEAD is unborn or broken."""
    try:
        return repo.head.peel(pygit2.Tree)
    except (pygit2.GitError, KeyError, ValueError):
        return None


_CANONICAL_NAMES = 4096
_names: dict[str, str] = {}


def reference(repo: pygit2.Repository, name: str) -> pygit2.Reference | None:
    """`repo.references.get(name)`, through a bounded table of name strings: pygit2 keeps a
    reference to every name string it looks up, so a name built afresh for each lookup would
    never be freed (about 80 bytes a lookup); the same few string objects are used instead."""
    canonical = _names.get(name)
    if canonical is None:
        if len(_names) >= _CANONICAL_NAMES:
            _names.clear()
        canonical = _names[name] = name
    return repo.references.get(canonical)
