"""Build a version's venv at its final path, marked incomplete, and smoke-test those files.

A venv's scripts carry the absolute path they were built at, so the venv is created right at
`versions/<v>` with a `.staging` mark that is removed only once the smoke test passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from hostd.upgrade.layout import CURRENT, PREVIOUS, Layout, remove_tree
from hostd.versioning import to_pep440

log = logging.getLogger("hostd.upgrade")

PIP_OUTPUT_KEPT = 1000
RETRY_FIRST_DELAY = 5.0
_NOT_PUBLISHED_YET = ("No matching distribution found", "Could not find a version that satisfies")
_CLEARED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


class StageError(Exception):
    """Staging failed; the message is what the relay is told (pip's output, capped)."""


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}


async def run_process(argv: Sequence[str], timeout: float) -> Outcome:
    """Run a program with stdout and stderr merged; killed at the timeout."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return Outcome(proc.returncode or 0, out.decode(errors="replace"))


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= PIP_OUTPUT_KEPT else "…" + text[-PIP_OUTPUT_KEPT:]


async def _checked(argv: Sequence[str], timeout: float, what: str) -> Outcome:
    try:
        outcome = await run_process(argv, timeout)
    except TimeoutError:
        raise StageError(f"{what} did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise StageError(f"{what} could not start: {exc}") from None
    return outcome


async def create_venv(layout: Layout, version: str, timeout: float) -> None:
    target = layout.version_dir(version)
    await asyncio.to_thread(remove_tree, target)
    target.mkdir(parents=True)
    layout.staging_mark(version).write_text("incomplete: removed when the smoke test passes\n")
    outcome = await _checked([sys.executable, "-m", "venv", str(target)], timeout, "python -m venv")
    if outcome.code != 0:
        raise StageError(f"python -m venv failed: {_tail(outcome.output)}")


async def pip_install(
    layout: Layout,
    version: str,
    requirement: str,
    pip_args: Sequence[str],
    attempts: int,
    timeout: float,
) -> None:
    python = str(layout.version_dir(version) / "bin" / "python")
    argv = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    argv += [*pip_args, requirement]
    delay = RETRY_FIRST_DELAY
    for attempt in range(1, attempts + 1):
        outcome = await _checked(argv, timeout, "pip install")
        if outcome.code == 0:
            return
        retriable = any(marker in outcome.output for marker in _NOT_PUBLISHED_YET)
        if not retriable or attempt == attempts:
            raise StageError(f"pip install {requirement} failed: {_tail(outcome.output)}")
        log.info("pip found no %s yet (attempt %d); retrying in %gs", requirement, attempt, delay)
        await asyncio.sleep(delay)
        delay *= 2


async def smoke_test(layout: Layout, version: str, config_path: str | None, timeout: float) -> None:
    """The staged `hostd` must print exactly `version` and load the live config and pygit2."""
    hostd = str(layout.version_dir(version) / "bin" / "hostd")
    outcome = await _checked([hostd, "--version"], timeout, "hostd --version")
    printed = outcome.output.strip()
    if outcome.code != 0 or printed != version:
        raise StageError(
            f"smoke test: {hostd} --version printed {_tail(printed)!r}"
            f" (exit {outcome.code}), expected {version!r}"
        )
    check = [hostd, "check", *(["--config", config_path] if config_path else [])]
    outcome = await _checked(check, timeout, "hostd check")
    if outcome.code != 0:
        raise StageError(f"smoke test: hostd check failed: {_tail(outcome.output)}")


async def stage(
    layout: Layout,
    version: str,
    pip_args: Sequence[str],
    config_path: str | None,
    attempts: int,
    timeout: float,
    requirement: str | None = None,
) -> None:
    """Install `requirement` (default `hostd==<version>`) into `versions/<version>` and
    smoke-test it there; it stays marked staging until `complete`.

    On any failure, or when cancelled, the staged folder is deleted."""
    requirement = requirement or f"hostd=={to_pep440(version)}"
    if version in (layout.linked(CURRENT), layout.linked(PREVIOUS)):
        raise StageError(f"versions/{version} is in use; not rebuilt")
    try:
        await create_venv(layout, version, timeout)
        await pip_install(layout, version, requirement, pip_args, attempts, timeout)
        await smoke_test(layout, version, config_path, timeout)
    except BaseException:
        await asyncio.to_thread(remove_tree, layout.version_dir(version))
        raise


def complete(layout: Layout, version: str) -> None:
    layout.staging_mark(version).unlink(missing_ok=True)
