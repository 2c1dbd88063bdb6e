"""Worker processes for git queries.

pygit2 holds the GIL through whole libgit2 calls (status, index loads), so git work in threads
stalls the event loop; in worker processes it cannot. Each worker is one process running one
task at a time. A task has a worker of its own by its key (a worktree's answers are kept in
that worker), and waits briefly for it when it is busy; past `STEAL_AFTER` any idle worker
takes it, as a guest (it keeps no answer and only a few guest worktrees' counts, so a
worktree's memory is held by one worker, not by all), and past `EXTRA_AFTER` with none idle,
an extra worker (one task) starts for it, up to as many extra workers as workers. A task
abandoned while it runs (its request past its deadline) ends its process, which is replaced
at once. A worker is recycled when its resident memory has grown by `RECYCLE_GROWTH` since it
started (what libgit2 and pygit2 caches and leaks can hold), not after a number of tasks, so
what it keeps survives busy hours; each has an address-space limit too: running out of memory
ends only that task and that process.

The workers come from multiprocessing's fork server, started without the current directory on
`sys.path` (`python -c` would put it first), so they import what the daemon imports.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.util
import os
import resource
import signal
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from inotify_simple import INotify

from hostd.workerlink import InheritedFd, Link, WorkerExited, close_all, launch

T = TypeVar("T")
log = logging.getLogger("hostd.gitpool")

# Registered after multiprocessing's own exit hook (imported above), so it runs first: the
# workers see their sockets closed before multiprocessing waits for them to exit.
atexit.register(close_all)

RECYCLE_GROWTH = 256 * 2**20
STEAL_AFTER = 0.02
EXTRA_AFTER = 0.25
OBJECT_CACHE_BYTES = 32 * 2**20
# A worker that failed to start is not started again before this.
RESTART_DELAY = 10.0


def _worker_init(
    keep_status: bool = False, writes: bool = False, events_fd: int | None = None
) -> None:
    from hostd.lifeline import exit_with_parent

    exit_with_parent()

    import pygit2

    from hostd.git.overlay import set_strict_object_creation
    from hostd.git.status import keep_counts, kept_watch
    from hostd.workerlink import report_watch

    # Ctrl-C reaches the whole process group; the daemon decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Read queries write objects only into in-memory overlays, built from objects that exist;
    # skipping libgit2's existence check on every tree entry makes in-memory replays cheap.
    # Workers that write to repositories (commands) keep it for what reaches disk.
    set_strict_object_creation(writes)
    pygit2.settings.cache_max_size(OBJECT_CACHE_BYTES)
    keep_counts(keep_status, events_fd)
    watch = kept_watch()
    if events_fd is not None and watch is not None:
        report_watch(watch)


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker process is started with."""

    keep_status: bool = False
    writes: bool = False
    # Address-space limit in bytes; 0 is none.
    memory_limit: int = 0
    # inotify watches this worker's status cache may hold; None is no limit of hostd's own.
    watch_budget: int | None = None
    # Environment variables as they were before the fork server was started.
    environ: dict[str, str | None] = field(default_factory=dict)
    # The inotify descriptor for the status watch: an InheritedFd in the daemon, its number
    # in the worker.
    events_fd: Any = None


class WorkerFailed(Exception):
    """The git work could not be done: no worker could start, or the worker ended during it."""


_start_error: str | None = None


def _start_worker(settings: WorkerSettings) -> None:
    """The initializer of every worker: a failure is kept for `_ready` to report."""
    global _start_error
    _set_environ(settings.environ)
    try:
        _worker_init(settings.keep_status, settings.writes, settings.events_fd)
        _limit_memory(settings.memory_limit)
        _limit_watches(settings.watch_budget)
    except Exception as exc:  # reported by _ready, with its reason, once per failure
        _start_error = f"{type(exc).__name__}: {exc}"


def _limit_memory(limit: int) -> None:
    if not limit:
        return
    import pygit2

    used = _address_space()
    if used >= limit:
        raise MemoryError(
            f"the memory limit ({limit // 2**20} MB) is below what a worker uses at start "
            f"({used // 2**20} MB)"
        )
    # libgit2 maps pack files in windows; keep them to a share of the limit.
    pygit2.settings.mwindow_mapped_limit = max(limit // 4, 32 * 2**20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_watches(budget: int | None) -> None:
    from hostd.git.status import limit_watches

    limit_watches(budget)


def _as_guest(fn: Callable[..., T], *args: Any) -> T:
    """Run a task whose key another worker owns (see `hostd.git.status.as_guest`)."""
    from hostd.git.status import as_guest

    with as_guest():
        return fn(*args)


def _ready() -> tuple[int, str]:
    """Run first in every worker: its pid, and where it imported hostd from."""
    if _start_error is not None:
        raise WorkerFailed(_start_error)
    import hostd

    return os.getpid(), os.path.realpath(hostd.__file__)


@contextlib.contextmanager
def _forkserver_environment() -> Iterator[dict[str, str | None]]:
    """The environment a fork server starts in: no current directory on its `sys.path`, and
    the folder hostd was imported from when that is the one Python put first (`python -m`
    from a source tree). Yields the values to restore in the workers."""
    import hostd

    saved = {name: os.environ.get(name) for name in ("PYTHONSAFEPATH", "PYTHONPATH")}
    root = os.path.dirname(os.path.dirname(os.path.realpath(hostd.__file__)))
    first = os.path.realpath(sys.path[0] or os.curdir) if sys.path else ""
    os.environ["PYTHONSAFEPATH"] = "1"
    if root == first:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, saved["PYTHONPATH"]]))
    try:
        yield saved
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    """Set environment variables; None removes one."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["hostd.queries"])
    return context


def _begin(settings: WorkerSettings) -> tuple[int, str]:
    """A worker's first call: set itself up, then report like `_ready`."""
    _start_worker(settings)
    return _ready()


class _Worker:
    """One worker process, one task at a time."""

    def __init__(self, pool: GitPool, settings: WorkerSettings, one_task: bool = False) -> None:
        self.pool = pool
        self.settings = settings
        self.one_task = one_task
        self.link: Link | None = None
        self.pid: int | None = None
        self.tasks = 0
        self.baseline_rss: int | None = None
        self.busy = False
        self.failed_at: float | None = None
        # The answer of a task abandoned by its caller that a writing worker still runs.
        self.abandoned: asyncio.Future[Any] | None = None
        self._ready: asyncio.Future[Link] | None = None

    @property
    def started(self) -> bool:
        return self._ready is not None

    def start(self) -> None:
        """Start a fresh process; a previous one exits once its task (if any) is done."""
        self.stop()
        with _forkserver_environment() as saved:
            # Starts the fork server too, the first time or after it died.
            multiprocessing.forkserver.ensure_running()
        settings = replace(self.settings, environ=saved)
        # The daemon reads a duplicate of the watch's descriptor to answer from memory.
        events = INotify(nonblocking=True) if settings.keep_status else None
        if events is not None:
            settings = replace(settings, events_fd=InheritedFd(events.fileno()))
        start = functools.partial(_begin, settings)
        self.tasks, self.pid, self.baseline_rss = 0, None, None
        ready = asyncio.ensure_future(
            launch(self.pool.context, start, self.settings.writes, events)
        )
        self._ready = ready
        ready.add_done_callback(self._on_ready)

    def _on_ready(self, ready: asyncio.Future[Link]) -> None:
        if ready.cancelled():
            return
        exc = ready.exception()
        if ready is not self._ready:
            if exc is None:
                ready.result().close()
            return
        if exc is None:
            self.link = ready.result()
            self.pid = self.link.pid
            self.baseline_rss = _resident_bytes(self.pid)
            self.failed_at = None
            self.pool.worker_ready(self.link.started_with[1])
            return
        self.failed_at = time.monotonic()
        if isinstance(exc, WorkerExited):
            reason = "a git worker exited while starting (its error is logged above)"
        else:
            reason = f"a git worker cannot start: {exc}"
        self.pool.worker_failed(reason)

    def stop(self, kill: bool = False) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        if self.link is not None:
            self.link.close(kill)
        self.link, self.pid, self._ready = None, None, None

    async def _until_ready(self) -> Link:
        if self.failed_at is not None and time.monotonic() - self.failed_at < RESTART_DELAY:
            raise WorkerFailed(self.pool.failure or "git workers cannot start")
        if self._ready is None or self.failed_at is not None:
            self.start()
        assert self._ready is not None
        try:
            return await asyncio.shield(self._ready)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise WorkerFailed(self.pool.failure or str(exc)) from exc

    async def run(self, fn: Callable[..., T], *args: Any) -> tuple[T, Link]:
        link = await self._until_ready()
        self.tasks += 1
        answer = asyncio.ensure_future(link.call(fn, *args))
        try:
            return await asyncio.shield(answer), link
        except asyncio.CancelledError:
            if answer.done():
                raise
            if self.settings.writes:  # never ended midway; busy until it is done
                self.abandoned = answer
            else:
                self._restart(link, kill=True)
            raise
        except WorkerExited as exc:
            self._restart(link)
            raise WorkerFailed("the git worker ended during the work") from exc
        except MemoryError as exc:
            self._restart(link)
            limit = self.settings.memory_limit // 2**20
            raise WorkerFailed(f"the git work ran out of memory (limit {limit} MB)") from exc
        finally:
            if self.link is link and self._grown():
                self._restart(link)

    def _grown(self) -> bool:
        """Has the process grown by the pool's recycle growth since it started?"""
        rss = _resident_bytes(self.pid)
        if rss is None:
            return False
        if self.baseline_rss is None:
            self.baseline_rss = rss
        return rss - self.baseline_rss >= self.pool.recycle_growth

    def _restart(self, link: Link, kill: bool = False) -> None:
        if link is not self.link:
            return
        self.stop(kill)
        if not self.one_task:
            self.start()


def _resident_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[_Worker]
    preferred: _Worker
    since: float


class GitPool:
    """Worker processes with affinity: queries with one key go to the same worker (whose open
    repositories and kept answers are then warm) unless it stays busy and another is idle."""

    def __init__(
        self,
        workers: int,
        recycle_growth: int = RECYCLE_GROWTH,
        keep_status: bool = False,
        writes: bool = False,
        memory_limit: int = 0,
        watch_budget: int | None = None,
    ) -> None:
        """`keep_status`: workers keep status counts until inotify reports a change.
        `writes`: the workers write to repositories (commands), so libgit2 checks that every
        object a new tree or commit names exists, and a task is never ended in the middle.
        `memory_limit`: each worker's address space in bytes (0: none). `watch_budget`: the
        inotify watches all workers together may hold, shared equally. `recycle_growth`: the
        growth of a worker's resident memory, in bytes, after which it is replaced."""
        self.context = _context()
        self.recycle_growth = recycle_growth
        self.writes = writes
        share = None if watch_budget is None else watch_budget // max(workers, 1)
        settings = WorkerSettings(keep_status, writes, memory_limit, share)
        self._workers = [_Worker(self, settings) for _ in range(workers)]
        # Extra workers run one task each; they do not keep status (no watches).
        self._extra_settings = replace(settings, keep_status=False, watch_budget=0)
        self._extra: set[_Worker] = set()
        self._waiting: deque[_Waiter] = deque()
        self._origin = ""
        self.failure: str | None = None

    def start(self) -> None:
        """Start every worker now rather than at its first task."""
        for worker in self._workers:
            if not worker.started:
                worker.start()

    async def run(self, fn: Callable[..., T], *args: Any, key: str = "") -> T:
        """Run `fn(*args)` in a worker; `key` (e.g. the repository path) chooses the worker.
        Raises WorkerFailed when no worker could do it."""
        return (await self.run_traced(fn, *args, key=key))[0]

    async def run_traced(self, fn: Callable[..., T], *args: Any, key: str = "") -> tuple[T, Link]:
        """`run`, and the link to the worker that did it (for `quiet_since`)."""
        worker = await self._acquire(key)
        try:
            if worker is self._owner(key) or not worker.settings.keep_status:
                return await worker.run(fn, *args)
            return await worker.run(_as_guest, fn, *args)
        finally:
            if worker.abandoned is None:
                self._release(worker)
            else:
                worker.abandoned.add_done_callback(lambda _: self._finish_abandoned(worker))

    def _finish_abandoned(self, worker: _Worker) -> None:
        answer, worker.abandoned = worker.abandoned, None
        if answer is not None and not answer.cancelled():
            answer.exception()  # retrieved: nobody waits for it any more
        self._release(worker)

    def _owner(self, key: str) -> _Worker:
        return self._workers[zlib.crc32(key.encode()) % len(self._workers)]

    async def _acquire(self, key: str) -> _Worker:
        preferred = self._owner(key)
        if not preferred.busy:
            preferred.busy = True
            return preferred
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), preferred, loop.time())
        self._waiting.append(waiter)
        loop.call_later(STEAL_AFTER, self._rebalance)
        loop.call_later(EXTRA_AFTER, self._rebalance)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter.future.result())
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def _rebalance(self) -> None:
        """Hand idle workers, then extra ones, to tasks that waited too long for their own."""
        if not self._waiting:
            return
        now = asyncio.get_running_loop().time()
        for waiter in list(self._waiting):
            waited = now - waiter.since
            if waited < STEAL_AFTER:
                break
            if waiter.future.done():
                self._waiting.remove(waiter)
                continue
            idle = next((w for w in self._workers if not w.busy), None)
            if idle is None and waited >= EXTRA_AFTER and len(self._extra) < len(self._workers):
                idle = _Worker(self, self._extra_settings, one_task=True)
                self._extra.add(idle)
            if idle is not None:
                self._waiting.remove(waiter)
                idle.busy = True
                waiter.future.set_result(idle)

    def _release(self, worker: _Worker) -> None:
        if worker.one_task:
            worker.stop()
            self._extra.discard(worker)
            return
        now = asyncio.get_running_loop().time()
        chosen = next(
            (w for w in self._waiting if w.preferred is worker and not w.future.done()), None
        ) or next(
            (w for w in self._waiting if now - w.since >= STEAL_AFTER and not w.future.done()),
            None,
        )
        self._waiting = deque(w for w in self._waiting if w is not chosen and not w.future.done())
        if chosen is not None:
            chosen.future.set_result(worker)
            return
        worker.busy = False

    def quiet_since(self, link: Link, generation: int) -> bool:
        """Is `link` still one of the workers, with nothing its status watch knows about
        changed since it reported `generation`?"""
        return any(w.link is link for w in self._workers) and link.quiet_since(generation)

    def worker_ready(self, origin: str) -> None:
        import hostd

        expected = os.path.realpath(hostd.__file__)
        if origin != expected:
            self.worker_failed(f"git workers import hostd from {origin}, hostd from {expected}")
            return
        if self.failure is not None and not any(w.failed_at for w in self._workers):
            log.info("git workers are available again")
            self.failure = None

    def worker_failed(self, reason: str) -> None:
        if reason != self.failure:
            log.error("git workers unavailable: %s", reason)
        self.failure = reason

    def health(self) -> dict[str, Any]:
        """`{degraded, workers, busy, extra, error?}` for `/api/health`; a worker that failed to
        start is tried again (once its delay has passed), so health shows a recovery."""
        for worker in self._workers:
            failed_at = worker.failed_at
            if failed_at is not None and time.monotonic() - failed_at >= RESTART_DELAY:
                worker.failed_at = time.monotonic()  # one attempt per delay
                worker.start()
        body: dict[str, Any] = {
            "degraded": self.failure is not None,
            "workers": len(self._workers),
            "busy": sum(worker.busy for worker in self._workers),
            "extra": len(self._extra),
        }
        if self.failure is not None:
            body["error"] = self.failure
        return body

    def pids(self) -> list[int]:
        return [w.pid for w in (*self._workers, *self._extra) if w.pid is not None]

    def shutdown(self) -> None:
        for worker in (*self._workers, *self._extra):
            worker.stop()
