"""A git worker process and the socket between it and the event loop.

The worker reads one pickled call at a time, `(fn, args, events)`, and answers `(True,
result, watch)` or `(False, exception, watch)`, framed as `multiprocessing.connection` frames
its messages. The daemon side reads and writes the socket with the calling loop's socket calls:
no thread stands between a request and its worker, so a call costs two socket writes and two
wake-ups.

A worker whose status watch uses an inotify descriptor the daemon holds too (see `Link`)
reports its `WatchReport` with each answer (`watch`: its generation, and which watches ignore
`.lock` names), so the daemon knows, while the worker is idle, whether anything it watches
changed: the daemon reads the waiting events itself, drops the ones the worker would ignore
(git's lock files come and go on every `git status`) and hands the others over with the next
call (`events`), before the worker reads any.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import socket
import struct
import weakref
from collections.abc import Callable
from multiprocessing import reduction
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from inotify_simple import INotify, parse_events
from inotify_simple import flags as inotify_flags

_SMALL = struct.Struct("!i")
_LARGE = struct.Struct("!Q")
_links: weakref.WeakSet[Link] = weakref.WeakSet()

Event = tuple[int, int, str]  # inotify's wd, mask and name
# Events the daemon keeps for a worker beyond this become one queue overflow (a full rescan).
MAX_PENDING_EVENTS = 16384
_OVERFLOW: Event = (-1, int(inotify_flags.Q_OVERFLOW), "")


class WatchReport(Protocol):
    """A worker's status watch, as the link reports it."""

    def generation(self) -> int:
        """Unchanged while nothing the watch knows about changed."""
        ...

    def feed(self, events: list[Event]) -> None:
        """Take in events the daemon read from the shared descriptor."""
        ...

    def lock_blind(self) -> tuple[int, frozenset[int]]:
        """A version, and the watches on which events for `*.lock` names change nothing."""
        ...


_watch: WatchReport | None = None


def report_watch(watch: WatchReport) -> None:
    """In a worker: the status watch each answer reports on."""
    global _watch
    _watch = watch


class WorkerExited(Exception):
    """The worker process ended (or closed its end) before it answered."""


def serve(conn: Connection, start: Callable[[], Any], writes: bool) -> None:
    """The worker's main loop: `start()` first (its result or error is the first answer),
    then calls until the daemon closes its end. A writing worker's call always runs to its
    end, even when the daemon is gone meanwhile."""
    from hostd.lifeline import guarded

    try:
        first: tuple[bool, Any] = (True, start())
    except Exception as exc:
        first = (False, exc)
    reporter = _Reporter()
    if not _answer(conn, *first, reporter.state()) or not first[0]:
        return
    while True:
        try:
            fn, args, events = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            if events and _watch is not None:
                _watch.feed(events)
            reply: tuple[bool, Any] = (True, guarded(fn, *args) if writes else fn(*args))
        except BaseException as exc:  # the caller gets it, as from a call in its own process
            reply = (False, exc)
        if not _answer(conn, *reply, reporter.state()):
            return


class _Reporter:
    """The watch part of each answer: the lock-blind set only when it changed."""

    def __init__(self) -> None:
        self.sent = -1

    def state(self) -> tuple[int, int, frozenset[int] | None] | None:
        if _watch is None:
            return None
        version, wds = _watch.lock_blind()
        changed = version != self.sent
        self.sent = version
        return _watch.generation(), version, wds if changed else None


def _answer(conn: Connection, ok: bool, value: Any, watch: Any) -> bool:
    try:
        payload = pickle.dumps((ok, value, watch), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        failure = RuntimeError(f"the answer cannot be sent: {exc}")
        payload = pickle.dumps((False, failure, watch))
    try:
        conn.send_bytes(payload)
    except OSError:
        return False
    return True


class Link:
    """The daemon's end of one worker: its process and the socket to it. Calls may come from
    any event loop (one at a time). `events`: an inotify descriptor the worker's status watch
    uses, which the link reads while the worker is idle and closes with itself."""

    def __init__(
        self, process: BaseProcess, sock: socket.socket, events: INotify | None = None
    ) -> None:
        self.process = process
        self.pid = process.pid
        self._sock = sock
        self._events = events
        # Events read for the worker, to hand over with the next call.
        self._pending: list[Event] = []
        # As of the worker's last answer: its generation and lock-blind watches. `in_flight`
        # while a call (or the start) is unanswered, when the worker may have moved on.
        self.generation = -1
        self._lock_blind: frozenset[int] = frozenset()
        self.in_flight = True
        self.closed = False
        # The loop and task of the call in flight, to unhook it from the loop when closing.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        # What the worker's start function returned.
        self.started_with: Any = None
        _links.add(self)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Send one call and wait for its answer; WorkerExited when the process ends first."""
        if not self.in_flight:
            self._collect()
        events, self._pending = self._pending, []
        payload = pickle.dumps((fn, args, events), pickle.HIGHEST_PROTOCOL)
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self.in_flight = True
        try:
            await self._loop.sock_sendall(self._sock, _frame(payload))
        except OSError as exc:
            raise WorkerExited(str(exc)) from exc
        return await self.answer()

    async def answer(self) -> Any:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            size = _SMALL.unpack(await self._receive(_SMALL.size))[0]
            if size == -1:
                size = _LARGE.unpack(await self._receive(_LARGE.size))[0]
            ok, value, watch = pickle.loads(await self._receive(size))
        except OSError as exc:
            raise WorkerExited(str(exc)) from exc
        if watch is not None:
            self.generation, _, lock_blind = watch
            if lock_blind is not None:
                self._lock_blind = lock_blind
        self.in_flight = False
        if not ok:
            raise value
        return value

    async def _receive(self, size: int) -> bytearray:
        loop = self._loop
        assert loop is not None
        data = bytearray(size)
        view = memoryview(data)
        got = 0
        while got < size:
            count = await loop.sock_recv_into(self._sock, view[got:])
            if count == 0:
                raise WorkerExited("the worker closed its end")
            got += count
        return data

    def quiet_since(self, generation: int) -> bool:
        """Is the worker idle, at `generation` as of its last answer, with no inotify event
        for it that it would not ignore? Then nothing its status watch knows about changed."""
        if self._events is None or self.closed or self.in_flight:
            return False
        if self.generation != generation:
            return False
        self._collect()
        return not self._pending

    def _collect(self) -> None:
        """Read the waiting events (only while the worker is idle: its lock-blind watches are
        then the ones it last reported); keep those it would not ignore."""
        if self._events is None or self.closed:
            return
        fd = self._events.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                self._pending = [_OVERFLOW]
                return
            for event in parse_events(data):
                if event.wd not in self._lock_blind or not event.name.endswith(".lock"):
                    self._pending.append((event.wd, event.mask, event.name))
            if len(self._pending) > MAX_PENDING_EVENTS:
                self._pending = [_OVERFLOW]

    def close(self, kill: bool = False) -> None:
        """Close the socket (the worker exits once its call, if any, is done); `kill` ends it
        at once. The process is reaped when it exits."""
        if kill and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.closed = True
        self._unhook()
        _shut(self._sock)
        self._sock.close()
        if self._events is not None:
            self._events.close()
        _reap_later(self.process)
        _links.discard(self)

    def _unhook(self) -> None:
        """Take the socket off its loop at once: its number may be reused by the next socket
        before a cancelled call has run its clean-up, which would then unhook that one."""
        loop, task, self._loop, self._task = self._loop, self._task, None, None
        if loop is not None and not loop.is_closed():
            fd = self._sock.fileno()
            if fd >= 0:
                loop.remove_reader(fd)
                loop.remove_writer(fd)
        if task is not None and task is not _current_task():
            task.cancel()


class InheritedFd:
    """A descriptor handed to a worker as it starts: pickled while the fork server starts the
    process, it arrives in the worker as a plain number, a duplicate the worker owns."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[[Any], int], tuple[Any]]:
        return _inherited, (reduction.DupFd(self.fd),)


def _inherited(duplicate: Any) -> int:
    return duplicate.detach()


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def launch(
    context: BaseContext, start: Callable[[], Any], writes: bool, events: INotify | None = None
) -> Link:
    """Start a worker process running `serve`; returns once it answered `start()`. `events`
    (see `Link`) is the link's, or closed when there is none."""
    ours, theirs = context.Pipe()
    process = context.Process(
        target=serve, args=(theirs, start, writes), name="hostd-git-worker", daemon=False
    )
    starting = asyncio.ensure_future(asyncio.to_thread(_start, process, theirs, events))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Not `events`: the starting thread may still be handing it to the fork server (a
        # loop that closes cancels `starting` too); it is closed once the thread lets go.
        starting.add_done_callback(lambda _: _abandon(process, ours))
        raise
    except BaseException:
        ours.close()
        if events is not None:
            events.close()
        raise
    sock = socket.socket(fileno=os.dup(ours.fileno()))
    ours.close()
    sock.setblocking(False)
    link = Link(process, sock, events)
    try:
        link.started_with = await link.answer()
    except BaseException:
        link.close(kill=True)
        raise
    return link


def _start(process: BaseProcess, theirs: Connection, events: INotify | None) -> None:
    """Start the process; `events` stays referenced (so open) until the fork server has it."""
    try:
        process.start()
    finally:
        theirs.close()


def _abandon(process: BaseProcess, ours: Connection) -> None:
    ours.close()
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        _reap_later(process)


def _frame(payload: bytes) -> bytes:
    size = len(payload)
    if size > 0x7FFFFFFF:
        return _SMALL.pack(-1) + _LARGE.pack(size) + payload
    return _SMALL.pack(size) + payload


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _reap_later(process: BaseProcess) -> None:
    """Release the process's resources once it has exited, without waiting for it."""
    try:
        sentinel = process.sentinel
        loop = asyncio.get_running_loop()
    except (ValueError, RuntimeError):
        return

    def reap() -> None:
        loop.remove_reader(sentinel)
        with contextlib.suppress(ValueError, OSError):
            process.join(0)
            process.close()

    with contextlib.suppress(ValueError, OSError):
        loop.add_reader(sentinel, reap)


def close_all() -> None:
    """At exit: every worker sees its socket closed (and exits once its call is done)."""
    for link in list(_links):
        _shut(link._sock)
