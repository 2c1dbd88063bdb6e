"""The background upstream refresher: read endpoints never fetch, so every
`workspaces.fetch_interval` this fetches the upstream of the base branch of each repository that
has linked worktrees under `workspaces.root`.

One repository at a time, each fetch bounded by `workspaces.fetch_timeout` (the whole process
group killed past it), under the repository's lock so it never overlaps a command there (nor
itself: one loop). A repository whose fetch fails is skipped for a doubling while (up to an
hour), then tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass

import pygit2

from hostd.commands.target import WORKSPACES_SUBDIR
from hostd.config import Config
from hostd.git.discover import common_dir
from hostd.git.paths import within
from hostd.git.remote import Upstream, branch_upstream, fetch_args, git_env
from hostd.git.safety import default_base_name
from hostd.relay.locks import RepositoryLocks

log = logging.getLogger("hostd.refresher")

MAX_DEPTH = 3
BACKOFF_MAX_S = 3600.0


def repositories_with_worktrees(root: str, base_dir: str) -> list[str]:
    """The real common git dirs (inside base_dir) of the linked worktrees found under `root`."""
    found: set[str] = set()
    real_base = os.path.realpath(base_dir)
    pending = [(root, 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name == ".git" and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(pygit2.GitError, ValueError, OSError):
                    common = common_dir(pygit2.Repository(folder))
                    if within(common, real_base):
                        found.add(common)
            elif depth < MAX_DEPTH and entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, depth + 1))
    return sorted(found)


def base_upstream(common: str) -> Upstream | None:
    """The upstream of the repository's default branch, when it has one on a remote."""
    try:
        repo = pygit2.Repository(common)
    except (pygit2.GitError, ValueError, OSError):
        return None
    name = default_base_name(repo)
    if name is None or repo.branches.local.get(name) is None:
        return None
    return branch_upstream(repo, name)


@dataclass
class _Trouble:
    failures: int
    next_try: float


class UpstreamRefresher:
    def __init__(self, config: Config, locks: RepositoryLocks) -> None:
        self.config = config
        self.locks = locks
        self.root = config.workspaces.root or os.path.join(config.base_dir, WORKSPACES_SUBDIR)
        self.trouble: dict[str, _Trouble] = {}

    async def run(self) -> None:
        interval = self.config.workspaces.fetch_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_once()
            except Exception:
                log.exception("upstream refresh failed; trying again in %gs", interval)

    async def refresh_once(self) -> list[str]:
        """Fetch every due repository once; returns the common dirs fetched successfully."""
        repos = await asyncio.to_thread(
            repositories_with_worktrees, self.root, self.config.base_dir
        )
        fetched = []
        for common in repos:
            trouble = self.trouble.get(common)
            if trouble is not None and time.monotonic() < trouble.next_try:
                continue
            upstream = await asyncio.to_thread(base_upstream, common)
            if upstream is None:
                continue
            async with self.locks.hold(common):
                error = await self._fetch(common, upstream)
            if error is None:
                self.trouble.pop(common, None)
                fetched.append(common)
            else:
                self._failed(common, error)
        return fetched

    def _failed(self, common: str, error: str) -> None:
        trouble = self.trouble.get(common) or _Trouble(0, 0.0)
        trouble.failures += 1
        delay = min(BACKOFF_MAX_S, self.config.workspaces.fetch_interval * 2**trouble.failures)
        trouble.next_try = time.monotonic() + delay
        self.trouble[common] = trouble
        level = logging.WARNING if trouble.failures == 1 else logging.DEBUG
        log.log(level, "fetch of %s failed (%s); next try in %gs", common, error, delay)

    async def _fetch(self, common: str, upstream: Upstream) -> str | None:
        """None on success, else git's message; the process group is killed on timeout."""
        timeout = self.config.workspaces.fetch_timeout
        proc = await asyncio.create_subprocess_exec(
            "git",
            f"--git-dir={common}",
            *fetch_args(upstream),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=git_env(),
            start_new_session=True,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return f"timed out after {timeout:g}s"
        if proc.returncode != 0:
            return err.decode(errors="replace").strip()[-500:] or f"exit {proc.returncode}"
        return None
