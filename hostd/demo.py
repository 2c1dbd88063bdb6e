"""`hostd demo`: the development relay and a hostd child process on a sandbox repository.

Everything a newcomer needs to see hostd work, with nothing else running: a small repository
with two agent worktrees, a relay holding their workspace records, and hostd registered with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from hostd.config import split_listen
from hostd.devrelay import start as start_relay
from hostd.devrelay.app import listen_error
from hostd.lifeline import PARENT_ENV

HOST_ID = "demo-host"
REGISTRATION_TIMEOUT = 30.0


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Demo Agent",
        "GIT_AUTHOR_EMAIL": "agent@example.com",
        "GIT_COMMITTER_NAME": "Demo Agent",
        "GIT_COMMITTER_EMAIL": "agent@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _commit(cwd: Path, message: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text(text)
    _git(cwd, "add", "-A")
    _git(cwd, "commit", "-q", "-m", message)


def build_sandbox(root: Path) -> dict[str, Path]:
    """A repository `app` with worktrees for `agent/greeting` (clean) and `agent/readme` (dirty)."""
    repo = root / "app"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, "Initial app", {"app.py": "print('hello')\n", "README.md": "# app\n"})
    _commit(repo, "Add a test", {"test_app.py": "def test():\n    assert True\n"})
    workspaces = root / ".agent-relay" / "workspaces"
    greeting = workspaces / "greeting"
    readme = workspaces / "readme"
    _git(repo, "worktree", "add", "-q", "-b", "agent/greeting", str(greeting), "main")
    _commit(greeting, "Greet by name", {"app.py": "import sys\nprint('hello', sys.argv[1:])\n"})
    _commit(greeting, "Document the greeting", {"GREETING.md": "Pass a name.\n"})
    _git(repo, "worktree", "add", "-q", "-b", "agent/readme", str(readme), "main")
    _commit(readme, "Expand the README", {"README.md": "# app\n\nSays hello.\n"})
    (readme / "notes.txt").write_text("work in progress\n")
    _commit(repo, "Fix the test on main", {"test_app.py": "def test():\n    assert 1\n"})
    return {"repo": repo, "greeting": greeting, "readme": readme}


def _write_config(root: Path, api_listen: str, relay_url: str, token: str) -> Path:
    config = root / "hostd.yaml"
    config.write_text(
        json.dumps(
            {
                "id": HOST_ID,
                "base_dir": str(root),
                "state_dir": str(root / ".hostd-state"),
                "api": {"listen": api_listen, "public_url": f"http://{api_listen}"},
                "relay": {
                    "url": relay_url,
                    "token": token,
                    "heartbeat_interval": "5s",
                    "poll_interval": "1s",
                },
            },
            indent=2,
        )
    )
    return config


async def _wait_registered(
    session: ClientSession, relay_url: str, child: asyncio.subprocess.Process
) -> None:
    deadline = asyncio.get_running_loop().time() + REGISTRATION_TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        if child.returncode is not None:
            raise RuntimeError(f"hostd exited with status {child.returncode}")
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with session.get(f"{relay_url}/api/orchestrators/{HOST_ID}") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError("hostd did not register with the development relay in time")


async def _create_workspaces(
    session: ClientSession, relay_url: str, paths: dict[str, Path]
) -> list[str]:
    ids = []
    for name in ("greeting", "readme"):
        body: dict[str, Any] = {
            "id": f"ws-{name}",
            "mode": "isolated",
            "repoRoot": str(paths["repo"]),
            "sourceCwd": str(paths["repo"]),
            "worktreePath": str(paths[name]),
            "branch": f"agent/{name}",
            "baseRef": "main",
        }
        async with session.post(f"{relay_url}/api/workspaces", json=body) as resp:
            resp.raise_for_status()
            ids.append((await resp.json())["id"])
    return ids


def _instructions(relay_url: str, api_url: str, token: str, ids: list[str], root: Path) -> str:
    """What to try; every URL and command printed here works exactly as printed."""
    auth = f"-H 'X-Agent-Relay-Token: {token}'"
    first = ids[0]
    query = f"?token={token}"
    return "\n".join(
        [
            f"hostd demo is running (sandbox: {root})",
            f"  development relay : {relay_url}/api/orchestrators{query}",
            "                      (a development tool, not a production relay)",
            f"  hostd API         : {api_url}/api/health",
            "",
            "Dashboard-style views of the two agent workspaces (open them in a browser):",
            *(f"  {relay_url}/api/workspaces/{ws}/git-state{query}" for ws in ids),
            *(f"  {relay_url}/api/workspaces/{ws}/merge-preview{query}" for ws in ids),
            "",
            "Try:",
            f"  curl -s {auth} {relay_url}/api/workspaces/{first}/git-state",
            f"  curl -s {auth} '{relay_url}/api/workspaces/{first}/merge-preview?strategy=auto'",
            f"  curl -s {auth} -H 'Content-Type: application/json' "
            f'-d \'{{"action":"merge"}}\' {relay_url}/api/workspaces/{first}/actions',
            f"    (lands {first}'s branch on main, then removes its worktree: git -C "
            f"{root / 'app'} log --oneline main)",
            "",
            "Press Ctrl-C to stop.",
        ]
    )


class _SignalRelay:
    """hostd runs in its own process group, so a Ctrl-C (which the terminal sends to the whole
    foreground group) reaches the demo alone; each signal the demo gets is passed on once."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self.child = child
        self.received = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            loop.add_signal_handler(sig, self._forward, sig)

    def _forward(self, sig: signal.Signals) -> None:
        self.received.set()
        if self.child.returncode is None:
            self.child.send_signal(signal.SIGQUIT if sig == signal.SIGQUIT else signal.SIGTERM)

    async def stop_child(self) -> int:
        if self.child.returncode is None and not self.received.is_set():
            self.child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.child.wait(), 70)
        except TimeoutError:
            self.child.kill()
            await self.child.wait()
        return self.child.returncode or 0


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` unless a stop signal comes first (then `work` is cancelled); True if it ran."""
    task = asyncio.create_task(work)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True


async def run_demo(sandbox: Path | None, relay_listen: str, api_listen: str) -> int:
    """The exit code: 0 after Ctrl-C, 1 when something could not start, 2 for a bad --dir."""
    if sandbox is not None and sandbox.exists() and any(sandbox.iterdir()):
        print(f"hostd demo: {sandbox} is not empty; pass an empty or new --dir", file=sys.stderr)
        return 2
    busy = _busy_address(api_listen)
    if busy:
        print(busy, file=sys.stderr)
        return 1
    relay_host, relay_port = split_listen(relay_listen)
    token = secrets.token_hex(8)
    try:
        runner, relay_url = await start_relay(relay_host, relay_port, token=token)
    except OSError as exc:
        print(listen_error("hostd demo", relay_host, relay_port, exc), file=sys.stderr)
        return 1
    root = Path(sandbox or tempfile.mkdtemp(prefix="hostd-demo-")).resolve()
    try:
        return await _run(root, runner, relay_url, api_listen, token)
    finally:
        await runner.cleanup()
        if sandbox is None:
            shutil.rmtree(root, ignore_errors=True)
            print(f"sandbox {root} removed", flush=True)
        else:
            print(f"sandbox kept in {root}", flush=True)


def _busy_address(listen: str) -> str | None:
    """One line when `listen` cannot be bound (checked before anything starts)."""
    host, port = split_listen(listen)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return listen_error("hostd demo", host, port, exc)
    return None


async def _run(
    root: Path, runner: web.AppRunner, relay_url: str, api_listen: str, token: str
) -> int:
    paths = build_sandbox(root)
    config = _write_config(root, api_listen, relay_url, token)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hostd",
        "run",
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        process_group=0,
        env={**os.environ, PARENT_ENV: str(os.getpid())},
    )
    signals = _SignalRelay(child)

    async def introduce() -> None:
        async with ClientSession(
            headers={"X-Agent-Relay-Token": token}, timeout=ClientTimeout(total=10)
        ) as session:
            await _wait_registered(session, relay_url, child)
            ids = await _create_workspaces(session, relay_url, paths)
            async with session.get(f"{relay_url}/api/orchestrators/{HOST_ID}") as resp:
                api_url = (await resp.json()).get("apiUrl", f"http://{api_listen}")
        print(_instructions(relay_url, api_url, token, ids, root), flush=True)
        await child.wait()

    failed: str | None = None
    try:
        await _unless_stopped(introduce(), signals.received)
    except RuntimeError as exc:
        failed = str(exc)
    finally:
        status = await signals.stop_child()
    if failed:
        print(f"hostd demo: {failed}", file=sys.stderr)
        return 1
    print("hostd demo stopped", flush=True)
    return 0 if status == 0 else 1
