"""A git worker process and the socket between it and the event loop.

The worker reads one pickled call at a time, `(fn, args)`, and answers `(True, result)` or
`(False, exception)`, framed as `multiprocessing.connection` frames its messages. The daemon
side reads and writes the socket with asyncio streams, on the event loop: no thread stands
between a request and its worker, so a call costs two socket writes and two wake-ups.
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
    """The daemon's end of one worker: its process and the socket to it."""

    def __init__(
        self, process: BaseProcess, sock: socket.socket, reader: asyncio.StreamReader
    ) -> None:
        self.process = process
        self.pid = process.pid
        self._sock = sock
        self._reader = reader
        self._writer: asyncio.StreamWriter | None = None
        # What the worker's start function returned.
        self.started_with: Any = None
        _links.add(self)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Send one call and wait for its answer; WorkerExited when the process ends first."""
        payload = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        assert self._writer is not None
        self._writer.write(_frame(payload))
        return await self.answer()

    async def answer(self) -> Any:
        try:
            size = _SMALL.unpack(await self._reader.readexactly(_SMALL.size))[0]
            if size == -1:
                size = _LARGE.unpack(await self._reader.readexactly(_LARGE.size))[0]
            ok, value = pickle.loads(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise WorkerExited(str(exc)) from exc
        if not ok:
            raise value
        return value

    def close(self, kill: bool = False) -> None:
        """Close the socket (the worker exits once its call, if any, is done); `kill` ends it
        at once. The process is reaped when it exits."""
        if kill and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        _shut(self._sock)
        if self._writer is not None:
            self._writer.close()
        _reap_later(self.process)
        _links.discard(self)


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
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    link = Link(process, sock, reader)
    link._writer = writer
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
