"""A repository's configuration values, read again only when a file they come from changed.

Reading every value through libgit2 costs more than the rest of an answer from memory, so the
values are kept with the identity (inode, size, times) of each file that can hold them: the
repository's `config` and `config.worktree`, the global, XDG and system files, and the files
they include. Any of them changing gives a fresh read.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import pygit2
from pygit2.enums import ConfigLevel

Values = tuple[tuple[str, str | None], ...]
Stamp = tuple[int, int, int, int] | None

_LEVEL_FILES = {
    ConfigLevel.GLOBAL: ".gitconfig",
    ConfigLevel.XDG: "config",
    ConfigLevel.SYSTEM: "gitconfig",
    ConfigLevel.PROGRAMDATA: "config",
}
_MAX_REPOSITORIES = 1024
_kept: OrderedDict[str, tuple[tuple[str, ...], tuple[Stamp, ...], Values | None]] = OrderedDict()


def stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def config_values(repo: pygit2.Repository, common: str) -> Values | None:
    """Every configuration entry `(name, raw value)` in libgit2's order; None if unreadable."""
    kept = _kept.get(repo.path)
    if kept is not None and tuple(stamp(f) for f in kept[0]) == kept[1]:
        _kept.move_to_end(repo.path)
        return kept[2]
    files = _sources(repo.path, common)
    stamps = tuple(stamp(f) for f in files)
    try:
        values: Values | None = tuple((e.name, e.raw_value) for e in repo.config)
    except pygit2.GitError:
        values = None
    included = _included(values or (), files)
    _kept[repo.path] = (files + included, stamps + tuple(stamp(f) for f in included), values)
    while len(_kept) > _MAX_REPOSITORIES:
        _kept.popitem(last=False)
    return values


def source_stamps(repo: pygit2.Repository) -> tuple[tuple[str, Stamp], ...] | None:
    """The files the values last returned for `repo` came from (or may come from), each with
    its identity as it was before they were read; None when none were returned."""
    kept = _kept.get(repo.path)
    return None if kept is None else tuple(zip(kept[0], kept[1], strict=True))


def _sources(git_dir: str, common: str) -> tuple[str, ...]:
    files = [os.path.join(common, "config"), os.path.join(git_dir, "config.worktree")]
    for level, name in _LEVEL_FILES.items():
        try:
            folders = pygit2.settings.search_path[level]
        except (pygit2.GitError, ValueError):
            continue
        files.extend(os.path.join(d, name) for d in (folders or "").split(os.pathsep) if d)
    return tuple(files)


def _included(values: Values, files: tuple[str, ...]) -> tuple[str, ...]:
    """Files named by `include.path` and `includeIf.<condition>.path`, wherever a relative
    one may be resolved from."""
    found: list[str] = []
    folders = {os.path.dirname(f) for f in files}
    for name, value in values:
        if (
            not value
            or not name.startswith(("include.", "includeif."))
            or not name.endswith(".path")
        ):
            continue
        path = os.path.expanduser(value)
        found.extend([path] if os.path.isabs(path) else (os.path.join(d, path) for d in folders))
    return tuple(found)


def last_value(values: Values | None, name: str) -> str | None:
    """The value git uses for `name` (the last one set); names as libgit2 lists them."""
    result = None
    for entry, value in values or ():
        if entry == name:
            result = value
    return result
