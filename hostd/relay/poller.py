"""The command loop: poll while connected, journal, run, report.

A command is journaled before it is accepted and runs only after the relay confirmed `accepted`;
each runs in its own task, so stopping the poll task never interrupts a command. One id runs once:
an id already seen in the same poll, running, or finished is never started again. An outcome the
journal cannot take is reported all the same and kept in memory until the journal takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from hostd.commands import Command, CommandContext, Handler, Registry, Result
from hostd.config import Config
from hostd.gitpool import GitPool
from hostd.metrics import Metrics
from hostd.relay import journal as j
from hostd.relay.client import RelayClient, RelayError, RelayHTTPError, RelayTransportError
from hostd.relay.journal import Entry, Journal, JournalError
from hostd.relay.link import RelayLink
from hostd.relay.locks import RepositoryLocks, Slots, repository_key
from hostd.relay.quiet import QuietLog
from hostd.relay.report import final_result, status_of, terminal_body
from hostd.relay.supervisor import supervise

log = logging.getLogger("hostd.commands")

POLL_LIMIT = 50
PATCH_RETRY_DELAYS = (0.1, 0.2)
MAX_ID_CHARS = 200
_UNSAFE_ID_CHARS = frozenset("/\\?#%")
_REMEMBERED_PROBLEMS = 1000


class Delivery(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


@dataclass
class _InFlight:
    command: Command
    task: asyncio.Task[None] | None = None
    started: float | None = None


@dataclass
class _Outcome:
    """A finished command's outcome the journal has not taken yet."""

    status: str
    result: dict[str, Any] | None
    reported: bool


def id_problem(raw: Any) -> str | None:
    """Why `raw` cannot be a command id (it must be usable as one URL path segment), or None."""
    if not isinstance(raw, str):
        return f"id is not a string (got {type(raw).__name__})"
    if not raw:
        return "id is empty"
    if raw in (".", ".."):
        return "id is a dot segment"
    if len(raw) > MAX_ID_CHARS:
        return f"id is longer than {MAX_ID_CHARS} characters"
    if not raw.isprintable() or any(c.isspace() for c in raw):
        return "id holds control, surrogate or space characters"
    if not _UNSAFE_ID_CHARS.isdisjoint(raw):
        return "id holds characters that are not safe in a URL path (/ \\ ? # %)"
    return None


def parse_command(item: Any) -> tuple[Command | None, str | None, str | None]:
    """(command, problem, id): a usable command, or what is wrong and the id if it is usable."""
    if not isinstance(item, dict):
        return None, f"not a JSON object (got {type(item).__name__})", None
    raw_id = item.get("id")
    problem = id_problem(raw_id)
    if problem is not None:
        return None, f"invalid id: {problem}", None
    command_type = item.get("type")
    if not isinstance(command_type, str) or not command_type:
        return None, "missing or invalid type", raw_id
    params = item.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return None, f"params is not an object (got {type(params).__name__})", raw_id
    return Command(id=raw_id, type=command_type, params=params), None, raw_id


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, RelayHTTPError):
        return exc.retriable
    return isinstance(exc, RelayTransportError)


class CommandLoop:
    def __init__(
        self,
        config: Config,
        client: RelayClient,
        journal: Journal,
        registry: Registry,
        link: RelayLink,
        git: GitPool,
        *,
        metrics: Metrics | None = None,
        request_exit: Callable[[int], None] = lambda code: None,
        patch_retry_delays: tuple[float, ...] = PATCH_RETRY_DELAYS,
    ) -> None:
        self.config = config
        self.client = client
        self.journal = journal
        self.registry = registry
        self.link = link
        self.git = git
        self.metrics = metrics
        self.request_exit = request_exit
        self.patch_retry_delays = patch_retry_delays
        self.agent_id = f"orchestrator-{config.id}"
        self.repo_locks = RepositoryLocks()
        self.slots = Slots(config.commands.max_concurrent)
        self._inflight: dict[str, _InFlight] = {}
        self._wake = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._cycle_started: float | None = None
        self._stall_after = max(60.0, 5 * config.relay.request_timeout)
        self._poll_trouble = QuietLog(log, "polling the relay for commands failed")
        self._patch_trouble = QuietLog(log, "reporting command status to the relay failed")
        self._cycle_trouble = QuietLog(log, "command loop cycle failed; continuing")
        self._seen_problems: set[str] = set()
        self._unjournaled: dict[str, _Outcome] = {}

    def start(self) -> None:
        self._poll_task = asyncio.create_task(
            supervise("command poll loop", self._run), name="hostd-command-poller"
        )

    async def stop_polling(self) -> None:
        """Stop taking commands; commands already running go on (see `drain`)."""
        self._stopping = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None

    async def drain(self, timeout: float) -> list[str]:
        """Wait up to `timeout` for running commands; returns the ids abandoned to the journal."""
        tasks = [rec.task for rec in self._inflight.values() if rec.task is not None]
        if not tasks:
            return []
        log.info("draining %d command(s) for up to %gs", len(tasks), timeout)
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        left = [rec.command.id for rec in self._inflight.values() if rec.task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if left:
            log.warning(
                "drain timeout: %d command(s) still running, left to recovery at next start: %s",
                len(left),
                ", ".join(left),
            )
        return left

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        running = [
            {
                "id": rec.command.id,
                "type": rec.command.type,
                "forMs": round((now - rec.started) * 1000),
            }
            for rec in self._inflight.values()
            if rec.started is not None
        ]
        stalled = not self._stopping and (
            (self._poll_task is not None and self._poll_task.done())
            or (self._cycle_started is not None and now - self._cycle_started > self._stall_after)
        )
        return {"inFlight": len(self._inflight), "running": running, "stalled": stalled}

    async def _run(self) -> None:
        resumed = False
        while True:
            await self.link.connected.wait()
            dispatched = False
            self._cycle_started = time.monotonic()
            try:
                if not resumed:
                    await self._resume_unfinished()
                    resumed = True
                await self._report_unreported()
                dispatched = await self._cycle()
            except Exception as exc:
                log.debug("command loop cycle failed", exc_info=True)
                self._cycle_trouble.problem(f"{type(exc).__name__}: {exc}", type(exc).__name__)
            finally:
                self._cycle_started = None
            if dispatched and self._capacity() > 0:
                continue
            await asyncio.sleep(self.config.relay.poll_interval)
            while self._capacity() <= 0:
                self._wake.clear()
                await self._wake.wait()

    def _capacity(self) -> int:
        return POLL_LIMIT - len(self._inflight)

    async def _cycle(self) -> bool:
        try:
            payload = await self.client.pending_commands(self.agent_id, POLL_LIMIT)
        except RelayError as exc:
            self._poll_trouble.problem(exc)
            return False
        if not isinstance(payload, list):
            self._poll_trouble.problem(
                f"expected a JSON array of commands, got {type(payload).__name__}"
            )
            return False
        self._poll_trouble.resolved()
        if len(payload) > POLL_LIMIT:
            self._note_once(
                "over-limit",
                f"relay returned {len(payload)} commands for limit={POLL_LIMIT}; "
                f"taking the first {POLL_LIMIT}",
            )
            payload = payload[:POLL_LIMIT]
        fresh: list[tuple[Command, Handler]] = []
        answers: list[tuple[str, str, dict[str, Any]]] = []
        seen: set[str] = set()
        dispatched = False
        for item in payload:
            try:
                dispatched |= await self._consider(item, seen, fresh, answers)
            except JournalError as exc:
                log.debug("command skipped: the journal failed: %s", exc)
            except Exception as exc:
                log.debug("command skipped", exc_info=True)
                self._note_once(
                    f"skip:{type(exc).__name__}",
                    f"a command of this poll was skipped: {type(exc).__name__}: {exc}",
                )
        await asyncio.gather(*(self._answer(*answer) for answer in answers))
        deliveries = await asyncio.gather(
            *(self._patch(command.id, {"status": "accepted"}) for command, _ in fresh)
        )
        for (command, handler), delivery in zip(fresh, deliveries, strict=True):
            dispatched |= await self._accepted(command, handler, delivery)
        return dispatched

    async def _consider(
        self,
        item: Any,
        seen: set[str],
        fresh: list[tuple[Command, Handler]],
        answers: list[tuple[str, str, dict[str, Any]]],
    ) -> bool:
        """Sort one polled item: answer it, resume it, queue it for `accepted`, or skip it."""
        command, problem, command_id = parse_command(item)
        if command_id is not None:
            if command_id in seen or command_id in self._inflight:
                return False
            seen.add(command_id)
        if command is None:
            shown = f"command {command_id}" if command_id else repr(item)[:200]
            self._note_once(f"bad:{shown}", f"relay sent a malformed command: {problem}: {shown}")
            if command_id is not None:
                answers.append((command_id, "?", {"error": f"malformed command: {problem}"}))
            return False
        target = item.get("target")
        if isinstance(target, str) and target != self.agent_id:
            self._note_once(
                f"target:{command.id}",
                f"relay sent command {command.id} for {target!r}, not {self.agent_id}; ignored",
            )
            return False
        if command.id in self._unjournaled:
            await self._flush_outcome(command.id)
            return False
        entry = await self.journal.get(command.id)
        if entry is not None:
            return await self._resume(command, entry)
        handler = self.registry.get(command.type)
        if handler is None:
            self._note_once(
                f"type:{command.type}",
                f"unsupported command type {command.type!r} (command {command.id}); "
                "answering failed",
                logging.WARNING,
            )
            answers.append(
                (command.id, command.type, {"error": f"unsupported command type: {command.type}"})
            )
            return False
        if self._capacity() - len(fresh) <= 0:
            return False
        await self.journal.add(command.id, command.type, command.params)
        fresh.append((command, handler))
        return False

    async def _accepted(self, command: Command, handler: Handler, delivery: Delivery) -> bool:
        if delivery is Delivery.REFUSED:
            with contextlib.suppress(JournalError):
                await self.journal.forget(command.id)
            return False
        if delivery is Delivery.UNREACHABLE:
            log.info(
                "command %s: accept not confirmed by the relay; retried next cycle", command.id
            )
            return False
        with contextlib.suppress(JournalError):
            await self.journal.set_phase(command.id, j.ACCEPTED)
        log.info("command %s (%s) accepted", command.id, command.type)
        await self._spawn(command, handler, None)
        return True

    async def _answer(self, command_id: str, command_type: str, result: dict[str, Any]) -> None:
        """Fail a command without running it; not journaled: if the PATCH is lost, the relay
        offers the command again and it is answered again."""
        if self.metrics is not None:
            label = command_type if self.registry.get(command_type) else "unsupported"
            self.metrics.commands.labels(label, j.FAILED).inc()
        await self._patch(command_id, terminal_body(j.FAILED, final_result(result)))

    async def _resume(self, command: Command, entry: Entry) -> bool:
        """A command the journal already knows: never run twice, finish what is left."""
        if command.id in self._inflight:
            return False
        if entry.digest != j.params_digest(command.params):
            self._note_once(
                f"digest:{command.id}",
                f"command {command.id}: params differ from the journaled ones; using the journal",
            )
        command = Command(id=entry.id, type=entry.type, params=entry.params)
        if entry.phase == j.DONE:
            if entry.status != j.SETTLED:
                await self._report(entry.id, entry.status or j.FAILED, entry.result)
            return False
        handler = self.registry.get(entry.type)
        if handler is None:
            log.error("command %s: journaled type %s has no handler any more", entry.id, entry.type)
            result = final_result({"error": f"unsupported command type: {entry.type}"})
            await self._settle(entry.id, _Outcome(j.FAILED, result, reported=False))
            return False
        if entry.phase == j.RUNNING:
            log.warning(
                "command %s (%s) was running when hostd stopped; recovering", entry.id, entry.type
            )
            await self._spawn(command, handler, entry)
            return True
        if entry.phase == j.ACCEPTED:
            await self._spawn(command, handler, None)
            return True
        delivery = await self._patch(command.id, {"status": "accepted"})
        return await self._accepted(command, handler, delivery)

    async def _resume_unfinished(self) -> None:
        for entry in await self.journal.unfinished():
            if entry.id not in self._inflight:
                await self._resume(Command(entry.id, entry.type, entry.params), entry)

    async def _report_unreported(self) -> None:
        for command_id in [c for c in self._unjournaled if c not in self._inflight]:
            await self._flush_outcome(command_id)
        try:
            entries = await self.journal.unreported()
        except JournalError:
            return
        for entry in entries:
            if entry.id not in self._inflight and entry.id not in self._unjournaled:
                await self._report(entry.id, entry.status or j.FAILED, entry.result)

    async def _spawn(self, command: Command, handler: Handler, recovering: Entry | None) -> None:
        """Start the command's task; the repository is resolved first, in poll order, so commands
        on one repository take its lock in the order the relay sent them."""
        if command.id in self._inflight:
            return
        record = _InFlight(command)
        self._inflight[command.id] = record
        try:
            paths = handler.lock_paths(command.params)
            key = await asyncio.to_thread(repository_key, paths, self.config.base_dir)
        except Exception:
            log.exception("command %s: cannot resolve its repository; running unlocked", command.id)
            key = None
        record.task = asyncio.create_task(
            self._execute(record, handler, key, recovering), name=f"hostd-command-{command.id}"
        )
        record.task.add_done_callback(lambda task: self._finished(command.id, task))

    def _finished(self, command_id: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(command_id, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("command %s: task failed", command_id, exc_info=task.exception())

    async def _execute(
        self, record: _InFlight, handler: Handler, key: str | None, recovering: Entry | None
    ) -> None:
        command = record.command
        ctx = CommandContext(
            config=self.config,
            log=log.getChild(command.type),
            progress=lambda result: self._progress(command.id, result),
            request_exit=self.request_exit,
            git=self.git,
        )
        async with self.repo_locks.hold(key), self.slots.hold(handler.exclusive):
            if self._stopping:
                return
            record.started = time.monotonic()
            if recovering is not None:
                result = await self._call(handler.recover(command, recovering, ctx), command)
            else:
                if not await self._journal_start(command.id):
                    return
                delivery = await self._patch(command.id, {"status": "running"})
                if delivery is Delivery.REFUSED:
                    log.warning("command %s: relay refused `running`; not run", command.id)
                    await self._settle(command.id, _Outcome(j.SETTLED, None, reported=True))
                    return
                result = await self._call(handler.run(command, ctx), command)
            elapsed = time.monotonic() - record.started
        if result is None:
            log.info(
                "command %s (%s) finished in %.1fs; the relay settles it",
                command.id,
                command.type,
                elapsed,
            )
            await self._settle(command.id, _Outcome(j.SETTLED, None, reported=True))
            return
        result = final_result(result)
        status = status_of(result)
        if self.metrics is not None:
            self.metrics.commands.labels(command.type, status).inc()
        if status == j.FAILED:
            log.warning(
                "command %s (%s) failed in %.1fs: %s",
                command.id,
                command.type,
                elapsed,
                result["error"],
            )
        else:
            log.info("command %s (%s) succeeded in %.1fs", command.id, command.type, elapsed)
        await self._settle(command.id, _Outcome(status, result, reported=False))

    async def _journal_start(self, command_id: str) -> bool:
        """Journal that the command starts, waiting while the journal fails: a start the journal
        does not hold could run again after a restart. False when hostd stops first (the journal
        still says `accepted`, so the command runs at the next start)."""
        delay = 0.5
        while not self._stopping:
            try:
                await self.journal.set_phase(command_id, j.RUNNING)
            except JournalError:
                await asyncio.sleep(delay)
                delay = min(2 * delay, 30.0)
            else:
                return True
        return False

    async def _settle(self, command_id: str, outcome: _Outcome) -> None:
        """Journal the outcome, then report it. The journal failing never holds the report back:
        what the journal refuses stays in memory and is written on a later cycle."""
        self._unjournaled[command_id] = outcome
        await self._flush_outcome(command_id)

    async def _flush_outcome(self, command_id: str) -> None:
        outcome = self._unjournaled[command_id]
        journaled = await self._record(command_id, outcome)
        if not outcome.reported:
            delivery = await self._patch(command_id, terminal_body(outcome.status, outcome.result))
            outcome.reported = delivery is not Delivery.UNREACHABLE
            if outcome.reported:
                journaled = await self._record(command_id, outcome)
        if journaled:
            self._unjournaled.pop(command_id, None)

    async def _record(self, command_id: str, outcome: _Outcome) -> bool:
        try:
            await self.journal.record_outcome(
                command_id, outcome.status, outcome.result, reported=outcome.reported
            )
        except JournalError:
            return False
        return True

    async def _call(self, work: Any, command: Command) -> Result:
        try:
            result = await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("command %s (%s): handler raised", command.id, command.type)
            result = {"error": f"internal error in the {command.type} handler: {exc}"}
        if result is not None and not isinstance(result, dict):
            result = {"error": f"the {command.type} handler returned {type(result).__name__}"}
        if result is not None and result.get("error"):
            workspace = command.params.get("workspaceId")
            if isinstance(workspace, str) and "workspaceId" not in result:
                result = {"workspaceId": workspace, **result}
        return result

    async def _progress(self, command_id: str, result: dict[str, Any]) -> None:
        await self._patch(command_id, {"status": "running", "result": final_result(result)})

    async def _report(self, command_id: str, status: str, result: dict[str, Any] | None) -> None:
        delivery = await self._patch(command_id, terminal_body(status, result))
        if delivery is not Delivery.UNREACHABLE:
            with contextlib.suppress(JournalError):
                await self.journal.mark_reported(command_id)

    async def _patch(self, command_id: str, body: dict[str, Any]) -> Delivery:
        delays = self.patch_retry_delays

        def wait(state: RetryCallState) -> float:
            return delays[min(state.attempt_number, len(delays)) - 1]

        retrying = AsyncRetrying(
            stop=stop_after_attempt(len(delays) + 1),
            wait=wait,
            retry=retry_if_exception(_retriable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.client.patch_command(command_id, body)
        except RelayHTTPError as exc:
            if exc.retriable:
                self._patch_failed(command_id, body, exc)
                return Delivery.UNREACHABLE
            self._note_once(
                f"refused:{body['status']}:{command_id}",
                f"relay refused status {body['status']} of command {command_id}: {exc}",
                logging.WARNING,
            )
            return Delivery.REFUSED
        except RelayError as exc:
            self._patch_failed(command_id, body, exc)
            return Delivery.UNREACHABLE
        self._patch_trouble.resolved()
        return Delivery.OK

    def _patch_failed(self, command_id: str, body: dict[str, Any], exc: RelayError) -> None:
        kind = f"{type(exc).__name__} {getattr(exc, 'status', '')}"
        self._patch_trouble.problem(f"command {command_id} ({body['status']}): {exc}", kind)

    def _note_once(self, key: str, message: str, level: int = logging.ERROR) -> None:
        """Log a relay oddity the first time it is seen, at debug level after that."""
        if key in self._seen_problems:
            log.debug("%s", message)
            return
        if len(self._seen_problems) >= _REMEMBERED_PROBLEMS:
            self._seen_problems.clear()
        self._seen_problems.add(key)
        log.log(level, "%s", message)
