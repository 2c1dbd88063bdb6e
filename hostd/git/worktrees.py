"""Linked worktrees as destructive commands see them.

A worktree is located from itself (its `.git` file, its admin dir, the common git dir), every
real path inside the real base_dir. Removal is crash-consistent: the folder is first renamed
aside, then its registration moved out of `worktrees/`, then both deleted; an admin dir holding
`hostd-removing` names the folder's temporary name, so a later `finish_removals` completes (or,
when the folder was never moved, undoes) an interrupted removal.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pygit2
from pygit2.enums import FileStatus

from hostd.git.cleanproof import proven_clean
from hostd.git.discover import common_dir, find_repository, head_info, resolve_head_file
from hostd.git.errors import RefusedError
from hostd.git.paths import within

REMOVING = "hostd-removing"
TRASH = "hostd-trash"
TRASH_PREFIX = ".hostd-removing-"
# Threads deleting a removed worktree's folders: unlinking is kernel work, and a few at once
# delete a large tree about twice as fast as one.
PURGE_THREADS = 4

Pause = Callable[[str], None]


def no_pause(phase: str) -> None:
    """The default pause point: none."""


@dataclass(frozen=True)
class Worktree:
    """A linked worktree, present or gone; plain data, so it crosses process boundaries.

    `path` is the real path (git records real paths); `common_dir` is None when a gone
    worktree's repository could not be found; `admin_dir` is None when git does not list it.
    `locked` is the lock reason ("" without one), None when not locked.
    """

    path: str
    exists: bool
    common_dir: str | None
    admin_dir: str | None
    branch: str | None = None
    head: str | None = None
    locked: str | None = None

    def open(self) -> pygit2.Repository:
        """The worktree's repository (its common dir when the folder is gone)."""
        if self.exists:
            return pygit2.Repository(self.path)
        if self.common_dir is None:
            raise RefusedError(f"no repository found for {self.path}")
        return pygit2.Repository(self.common_dir)


def outside(path: str, base_dir: str) -> RefusedError:
    return RefusedError(f"path outside base_dir: {path}")


def contained_path(raw: str, base_dir: str) -> str:
    """`raw` made absolute (relative to base_dir) and normalised; its lexical and its real path
    must lie inside base_dir."""
    lexical = os.path.normpath(os.path.join(base_dir, raw))
    if not within(lexical, os.path.normpath(base_dir)):
        raise outside(raw, base_dir)
    if not within(os.path.realpath(lexical), os.path.realpath(base_dir)):
        raise outside(raw, base_dir)
    return lexical


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except OSError:
        return None


def _registered_path(admin: str) -> str | None:
    """The worktree folder an admin dir names (its `gitdir` file without `/.git`)."""
    gitdir = (_read(os.path.join(admin, "gitdir")) or "").strip()
    return os.path.dirname(gitdir) if gitdir else None


def admin_dirs(common: str) -> list[str]:
    root = os.path.join(common, "worktrees")
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))]


def find_admin(common: str, path: str) -> str | None:
    """The admin dir registering the worktree folder `path` (real or as recorded)."""
    wanted = {path, os.path.realpath(path)}
    for admin in admin_dirs(common):
        recorded = _registered_path(admin)
        if recorded is not None and (recorded in wanted or os.path.realpath(recorded) in wanted):
            return admin
    return None


def is_registered(common: str, path: str) -> bool:
    return find_admin(common, path) is not None


def locate(worktree_path: str, repo_root: str | None, base_dir: str) -> Worktree:
    """The linked worktree at `worktree_path`, contained in base_dir, its repository found from
    the worktree itself; `repo_root` only finds the repository of a worktree folder that is gone.

    Refused (RefusedError): paths outside base_dir, a symbolic link as the last component, the
    main worktree, a folder that is not the top of a linked worktree of a contained repository.
    """
    lexical = contained_path(worktree_path, base_dir)
    root = contained_path(repo_root, base_dir) if repo_root is not None else None
    if os.path.islink(lexical):
        raise RefusedError(f"refusing to follow a symbolic link: {lexical}")
    real = os.path.realpath(lexical)
    if os.path.lexists(real):
        return _present(lexical, real, base_dir)
    return _gone(real, root, base_dir)


def _present(lexical: str, real: str, base_dir: str) -> Worktree:
    real_base = os.path.realpath(base_dir)
    if not os.path.isdir(real):
        raise RefusedError(f"not a directory: {lexical}")
    dotgit = os.path.join(real, ".git")
    if os.path.isdir(dotgit) and not os.path.islink(dotgit):
        raise RefusedError(
            f"refusing to remove {lexical}: it is the main worktree of its repository"
        )
    if not os.path.isfile(dotgit):
        raise RefusedError(f"not a linked git worktree: {lexical}")
    try:
        repo = pygit2.Repository(real)
    except (pygit2.GitError, ValueError, OSError) as exc:
        raise RefusedError(f"not a linked git worktree: {lexical} ({exc})") from exc
    admin, common = os.path.realpath(repo.path), common_dir(repo)
    if not within(admin, real_base) or not within(common, real_base):
        raise outside(lexical, base_dir)
    if admin == common:
        raise RefusedError(
            f"refusing to remove {lexical}: it is the main worktree of its repository"
        )
    if os.path.dirname(admin) != os.path.join(common, "worktrees"):
        raise RefusedError(f"not a linked git worktree: {lexical}")
    recorded = _registered_path(admin)
    if recorded is None or os.path.realpath(recorded) != real:
        raise RefusedError(f"the worktree metadata of {lexical} does not point back at it")
    if repo.workdir is None or os.path.realpath(repo.workdir) != real:
        raise RefusedError(f"not the top of a linked git worktree: {lexical}")
    return _registered(real, True, common, admin, head_info(repo))


def _gone(real: str, root: str | None, base_dir: str) -> Worktree:
    repo = None if root is None or not os.path.isdir(root) else find_repository(root, base_dir)
    if repo is None:
        return Worktree(path=real, exists=False, common_dir=None, admin_dir=None)
    common = common_dir(repo)
    admin = find_admin(common, real)
    if admin is None:
        return Worktree(path=real, exists=False, common_dir=common, admin_dir=None)
    if not within(os.path.realpath(admin), os.path.realpath(base_dir)):
        raise outside(real, base_dir)
    entry = resolve_head_file(repo, _read(os.path.join(admin, "HEAD")))
    return _registered(real, False, common, admin, entry)


def _registered(path: str, exists: bool, common: str, admin: str, head: dict[str, Any]) -> Worktree:
    return Worktree(
        path=path,
        exists=exists,
        common_dir=common,
        admin_dir=admin,
        branch=head.get("branch"),
        head=head.get("headSha"),
        locked=_read(os.path.join(admin, "locked")),
    )


def uncommitted_changes(repo: pygit2.Repository) -> int:
    """Entries that hold uncommitted work: staged, unstaged, unmerged and untracked (an
    untracked folder counts once); ignored files do not count. `status.showUntrackedFiles` is
    not honoured: untracked files are deleted with the worktree."""
    if proven_clean(repo, untracked=True):
        return 0
    return sum(
        1
        for flags in repo.status(untracked_files="normal", ignored=False).values()
        if flags not in (FileStatus.CURRENT, FileStatus.IGNORED)
    )


# ---------------------------------------------------------------- removal


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: str, content: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(os.path.dirname(path))


def remove_worktree(wt: Worktree, pause: Pause = no_pause) -> str | None:
    """Delete the worktree's folder and its registration, so that a crash at any point leaves
    it either present and registered or gone; leftovers are finished by `finish_removals`.

    Returns the removed registration, kept aside: pass it to `forget` once the branch has been
    dealt with (until then a recovery can still tell which branch the worktree had).
    Phases (pause points): `marked`, `moved` (folder renamed aside), `unregistered`, `purged`.
    """
    if wt.common_dir is None:
        raise RefusedError(f"no repository found for {wt.path}")
    token = f"{os.getpid()}-{time.time_ns()}"
    aside = ""
    if wt.exists:
        aside = os.path.join(
            os.path.dirname(wt.path), f"{TRASH_PREFIX}{os.path.basename(wt.path)}-{token}"
        )
    if wt.admin_dir is not None:
        _write_durably(os.path.join(wt.admin_dir, REMOVING), aside)
    pause("marked")
    if wt.exists:
        try:
            os.rename(wt.path, aside)
        except OSError as exc:
            if wt.admin_dir is not None:
                os.remove(os.path.join(wt.admin_dir, REMOVING))
            raise RefusedError(f"cannot remove {wt.path}: {exc.strerror}") from exc
        _fsync_dir(os.path.dirname(wt.path))
    pause("moved")
    record = None
    if wt.admin_dir is not None:
        record = _unregister(wt.common_dir, wt.admin_dir, token)
    pause("unregistered")
    if aside:
        purge(aside)
    pause("purged")
    return record


def purge(folder: str) -> None:
    """Delete a folder hostd moved aside, its subfolders on several threads; symlinks are
    removed, never followed. Errors are ignored: a leftover is purged again later."""
    try:
        with os.scandir(folder) as entries:
            subfolders = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        subfolders = []
    if len(subfolders) > 1:
        with ThreadPoolExecutor(min(PURGE_THREADS, len(subfolders))) as pool:
            for _ in pool.map(lambda path: shutil.rmtree(path, ignore_errors=True), subfolders):
                pass
    shutil.rmtree(folder, ignore_errors=True)


def forget(record: str | None) -> None:
    """Delete a registration `remove_worktree` kept aside."""
    if record is not None:
        shutil.rmtree(record, ignore_errors=True)


def _unregister(common: str, admin: str, token: str) -> str:
    trash = os.path.join(common, TRASH)
    os.makedirs(trash, exist_ok=True)
    target = os.path.join(trash, f"{os.path.basename(admin)}-{token}")
    os.rename(admin, target)
    _fsync_dir(os.path.dirname(admin))
    return target


def _aside_of(admin: str, base_dir: str) -> str | None:
    """The temporary folder name a marked admin dir records, if it is one hostd chose."""
    aside = (_read(os.path.join(admin, REMOVING)) or "").strip()
    if not aside or not os.path.basename(aside).startswith(TRASH_PREFIX):
        return None
    if not within(os.path.realpath(aside), os.path.realpath(base_dir)):
        return None
    return aside


def _removed_record(repo: pygit2.Repository, admin: str) -> Worktree | None:
    """What an admin dir on its way out registered: the folder, its branch and head."""
    recorded = _registered_path(admin)
    if recorded is None:
        return None
    entry = resolve_head_file(repo, _read(os.path.join(admin, "HEAD")))
    return Worktree(
        path=recorded,
        exists=False,
        common_dir=os.path.realpath(repo.path),
        admin_dir=None,
        branch=entry.get("branch"),
        head=entry.get("headSha"),
    )


def _purge_all(repo: pygit2.Repository, common: str, base_dir: str) -> list[Worktree]:
    trash = os.path.join(common, TRASH)
    try:
        names = sorted(os.listdir(trash))
    except OSError:
        return []
    purged: list[Worktree] = []
    for name in names:
        admin = os.path.join(trash, name)
        record = _removed_record(repo, admin)
        if record is not None:
            purged.append(record)
        aside = _aside_of(admin, base_dir)
        if aside is not None:
            purge(aside)
        shutil.rmtree(admin, ignore_errors=True)
    return purged


def finish_removals(common: str, base_dir: str) -> list[Worktree]:
    """Complete removals a crash interrupted in this repository; return what the completed
    ones had registered (path, branch, head). A marked worktree whose folder was never moved is
    kept (its mark dropped): the command that marked it decides again."""
    repo = pygit2.Repository(common)
    try:
        for admin in admin_dirs(common):
            if not os.path.exists(os.path.join(admin, REMOVING)):
                continue
            recorded = _registered_path(admin)
            if recorded is not None and os.path.lexists(recorded):
                os.remove(os.path.join(admin, REMOVING))
                continue
            _unregister(common, admin, f"{os.getpid()}-{time.time_ns()}")
        return _purge_all(repo, common, base_dir)
    finally:
        repo.free()


def remove_empty_parent(path: str, root: str) -> bool:
    """Remove the folder that held `path` when it is now empty and lies under `root`."""
    parent = os.path.dirname(path)
    real_root = os.path.realpath(root)
    if parent == real_root or not within(os.path.realpath(parent), real_root):
        return False
    try:
        os.rmdir(parent)
    except OSError:
        return False
    return True
