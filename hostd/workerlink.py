"""A git worker process and the socket between it and the event loop.

The worker reads one pickled call at a time, `(fn, args)`, and answers `(True, result)` or
`(False, exception)`, framed as `multiprocessing.connection` frames its messages. The daemon
side reads and writes the socket with the calling loop's socket calls: no thread stands between
a request and its worker, so a call costs two socket writes and two wake-ups.
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
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

_SMALL = struct.Struct("!i")
_LARGE = struct.Struct("!Q")
_links: weakref.WeakSet[Link] = weakref.WeakSet()


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
    if not _answer(conn, first) or not first[0]:
        return
    while True:
        try:
            fn, args = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, guarded(fn, *args) if writes else fn(*args))
        except BaseException as exc:  # the caller gets it, as from a call in its own process
            reply = (False, exc)
        if not _answer(conn, reply):
            return


def _answer(conn: Connection, reply: tuple[bool, Any]) -> bool:
    try:
        payload = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        payload = pickle.dumps((False, RuntimeError(f"the answer cannot be sent: {exc}")))
    try:
        conn.send_bytes(payload)
    except OSError:
        return False
    return True


class Link:
    """The daemon's end of one worker: its process and the socket to it. Calls may come from
    any event loop (one at a time)."""

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.pid = process.pid
        self._sock = sock
        # The loop and task of the call in flight, to unhook it from the loop when closing.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        # What the worker's start function returned.
        self.started_with: Any = None
        _links.add(self)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Send one call and wait for its answer; WorkerExited when the process ends first."""
        payload = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
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
            ok, value = pickle.loads(await self._receive(size))
        except OSError as exc:
            raise WorkerExited(str(exc)) from exc
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

    def close(self, kill: bool = False) -> None:
        """Close the socket (the worker exits once its call, if any, is done); `kill` ends it
        at once. The process is reaped when it exits."""
        if kill and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._unhook()
        _shut(self._sock)
        self._sock.close()
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


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def launch(context: BaseContext, start: Callable[[], Any], writes: bool) -> Link:
    """Start a worker process running `serve`; returns once it answered `start()`."""
    ours, theirs = context.Pipe()
    process = context.Process(
        target=serve, args=(theirs, start, writes), name="hostd-git-worker", daemon=False
    )
    starting = asyncio.ensure_future(asyncio.to_thread(_start, process, theirs))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        starting.add_done_callback(lambda _: _abandon(process, ours))
        raise
    sock = socket.socket(fileno=os.dup(ours.fileno()))
    ours.close()
    sock.setblocking(False)
    link = Link(process, sock)
    try:
        link.started_with = await link.answer()
    except BaseException:
        link.close(kill=True)
        raise
    return link


def _start(process: BaseProcess, theirs: Connection) -> None:
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
