"""Running the gates: `bash -lc <command>` in the checkout, one process group each.

Each gate runs in a new session (its own process group), stdin from /dev/null, stdout and
stderr combined into a pipe of which only the last `TAIL_CHARS` characters are kept. At its
timeout the group gets SIGTERM, then SIGKILL after `KILL_GRACE`; when the gate's shell exits,
whatever it left running in its group is ended the same way. A cancelled run (a merge
timeout, the drain timeout) ends the group before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hostd.gates import groups
from hostd.gates.environment import MARKER
from hostd.git.gatefile import CONFIG_GATE, GATE_FILE, Declaration, Gate

TAIL_CHARS = 4000
KILL_GRACE = 5.0
READ_CHUNK = 64 * 1024
DRAIN_OUTPUT = 2.0

Progress = Callable[[dict[str, Any]], Awaitable[None]]


class OutputTail:
    """The last `chars` characters of a byte stream, in bounded memory."""

    def __init__(self, chars: int = TAIL_CHARS) -> None:
        self.chars = chars
        self._limit = chars * 4  # UTF-8 needs at most 4 bytes a character
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._limit:
            del self._buffer[: len(self._buffer) - self._limit]

    def text(self) -> str:
        return self._buffer.decode("utf-8", "replace")[-self.chars :]


@dataclass(frozen=True)
class GateRun:
    name: str
    command: str
    passed: bool
    timed_out: bool
    duration_ms: int
    output_tail: str
    exit_code: int | None = None

    def as_result(self) -> dict[str, Any]:
        """`{name, command, exitCode?, timedOut, durationMs, outputTail}`."""
        body: dict[str, Any] = {"name": self.name, "command": self.command}
        if self.exit_code is not None:
            body["exitCode"] = self.exit_code
        body |= {
            "timedOut": self.timed_out,
            "durationMs": self.duration_ms,
            "outputTail": self.output_tail,
        }
        return body


@dataclass
class GatesReport:
    ran: int = 0
    warnings: list[GateRun] = field(default_factory=list)
    failure: GateRun | None = None
    skipped: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        """`gatesRan`, `gateWarnings?`, `gateFailure?` and `gateSkipped?` of a merge result."""
        body: dict[str, Any] = {"gatesRan": self.ran}
        if self.skipped is not None:
            body["gateSkipped"] = self.skipped
        if self.warnings:
            body["gateWarnings"] = [run.as_result() for run in self.warnings]
        if self.failure is not None:
            body["gateFailure"] = self.failure.as_result()
        return body


def config_failure(declaration: Declaration) -> GateRun:
    """The failing `land-gates-config` gate of an unusable declaration."""
    return GateRun(CONFIG_GATE, GATE_FILE, False, False, 0, declaration.error or "")


def gate_cwd(checkout: str, gate: Gate) -> str | None:
    """The gate's folder; None when it does not exist or, links resolved, leaves the checkout."""
    root = os.path.realpath(checkout)
    path = os.path.realpath(os.path.join(root, gate.cwd))
    inside = path == root or path.startswith(root + os.sep)
    return path if inside and os.path.isdir(path) else None


class GateRunner:
    """Runs a declaration's gates in one checkout, in order, up to the first required failure."""

    def __init__(
        self,
        gates_dir: str,
        env: Mapping[str, str],
        default_timeout: float,
        progress: Progress | None = None,
        kill_grace: float = KILL_GRACE,
    ) -> None:
        self.gates_dir = gates_dir
        self.env = dict(env)
        self.default_timeout = default_timeout
        self.progress = progress
        self.kill_grace = kill_grace

    async def run_all(
        self, declaration: Declaration, checkout: str, deadline: float | None = None
    ) -> GatesReport:
        """`deadline` (monotonic) bounds every gate's timeout: the whole merge has one."""
        report = GatesReport()
        if declaration.error:
            report.failure = config_failure(declaration)
            return report
        total = len(declaration.gates)
        for index, gate in enumerate(declaration.gates, 1):
            if self.progress is not None:
                step = {"phase": "gates", "gate": gate.name, "index": index, "of": total}
                await self.progress(step)
            timeout = gate.timeout_ms / 1000 if gate.timeout_ms else self.default_timeout
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
            run = await self.run_one(gate, checkout, timeout)
            report.ran += 1
            if run.passed:
                continue
            if gate.optional:
                report.warnings.append(run)
                continue
            report.failure = run
            break
        return report

    async def run_one(self, gate: Gate, checkout: str, timeout: float) -> GateRun:
        cwd = gate_cwd(checkout, gate)
        if cwd is None:
            why = f"cwd {gate.cwd!r} does not exist in the checkout or leads out of it"
            return GateRun(gate.name, gate.command, False, False, 0, why)
        marker = secrets.token_hex(16)
        record = await asyncio.to_thread(groups.record, self.gates_dir, marker)
        # Our own pipe rather than asyncio's: its wait() would also wait for every process that
        # still holds the output open, and a gate's left-over children may.
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                "-lc",
                gate.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=cwd,
                env={**self.env, MARKER: marker},
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            await asyncio.to_thread(groups.forget, record)
            return GateRun(gate.name, gate.command, False, False, 0, f"cannot start bash: {exc}")
        finally:
            os.close(write_fd)
        try:
            await asyncio.to_thread(groups.set_pgid, record, proc.pid)
            return await self._watch(gate, proc, read_fd, timeout, started)
        finally:
            await asyncio.to_thread(groups.forget, record)

    async def _watch(
        self,
        gate: Gate,
        proc: asyncio.subprocess.Process,
        read_fd: int,
        timeout: float,
        started: float,
    ) -> GateRun:
        tail = OutputTail()
        transport, reader = await _reader(read_fd, tail)
        timed_out = False
        ended = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                timed_out = True
            await self._end_group(proc.pid)
            ended = True
            await proc.wait()
        finally:
            if not ended:
                # Cancelled (merge or drain timeout): end the group before giving up.
                try:
                    await self._end_group(proc.pid)
                finally:
                    groups.signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(reader, DRAIN_OUTPUT)
            transport.close()
        duration_ms = round((time.monotonic() - started) * 1000)
        code = proc.returncode
        if timed_out:
            tail.feed(f"\n[hostd] timed out after {timeout:g}s; process group ended\n".encode())
        elif code is not None and code < 0:
            tail.feed(f"\n[hostd] ended by signal {signal.Signals(-code).name}\n".encode())
        exit_code = code if code is not None and code >= 0 and not timed_out else None
        return GateRun(
            gate.name, gate.command, exit_code == 0, timed_out, duration_ms, tail.text(), exit_code
        )

    async def _end_group(self, pgid: int) -> None:
        """SIGTERM what is left of the group, SIGKILL it after the grace period."""
        if not await asyncio.to_thread(groups.live_members, pgid):
            return
        groups.signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(groups.live_members, pgid):
                return
            await asyncio.sleep(0.05)
        groups.signal_group(pgid, signal.SIGKILL)


async def _reader(
    read_fd: int, tail: OutputTail
) -> tuple[asyncio.ReadTransport, asyncio.Task[None]]:
    """Feed everything written to the pipe into `tail` until every writer has closed it."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=READ_CHUNK)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )

    async def read() -> None:
        while chunk := await stream.read(READ_CHUNK):
            tail.feed(chunk)

    return transport, asyncio.create_task(read())
