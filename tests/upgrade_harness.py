"""Real wheels, a managed install, a supervisor that does what the unit does, a relay process.

`build_wheelhouse` builds hostd at three versions from copies of this source tree (the current
one, a next one, a broken next one whose `hostd run` exits at start) and the dependency wheels
(from the configured package index, once), so upgrades install with `--no-index`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostd.versioning import to_pep440
from tests.procs import free_port, wait_for
from tests.relay_harness import FAST_RELAY

SOURCE = Path(__file__).resolve().parent.parent
NEXT, BROKEN = "0.2.0-rc.1", "0.3.0"
BUILD_TIMEOUT = 600
RESTART_DELAY = 0.2
_SUPERVISOR_ENV = ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID")
_BROKEN_SERVE = "async def serve(config: Config, config_path: str | None = None) -> int:\n"


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    current: str
    wheels: dict[str, Path]


def _copy_source(dest: Path, pep440: str, broken: bool) -> Path:
    shutil.copytree(SOURCE / "hostd", dest / "hostd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SOURCE / "README.md", dest / "README.md")
    pyproject = (SOURCE / "pyproject.toml").read_text()
    pyproject = re.sub(r'(?m)^version = ".*"$', f'version = "{pep440}"', pyproject, count=1)
    (dest / "pyproject.toml").write_text(pyproject)
    if broken:
        daemon = dest / "hostd" / "daemon.py"
        text = daemon.read_text()
        assert _BROKEN_SERVE in text
        daemon.write_text(text.replace(_BROKEN_SERVE, _BROKEN_SERVE + "    return 3\n"))
    return dest


def _pip(*args: str) -> None:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"


def build_wheelhouse(work: Path) -> Wheelhouse:
    house = work / "wheelhouse"
    house.mkdir(parents=True)
    meta = tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]
    current = meta["version"]
    sources = {
        current: _copy_source(work / "src-current", current, broken=False),
        NEXT: _copy_source(work / "src-next", to_pep440(NEXT), broken=False),
        BROKEN: _copy_source(work / "src-broken", to_pep440(BROKEN), broken=True),
    }
    jobs = [("wheel", "-q", "--no-deps", "-w", str(house), str(src)) for src in sources.values()]
    jobs.append(("wheel", "-q", "-w", str(house), *meta["dependencies"]))
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(lambda job: _pip(*job), jobs))
    wheels = {v: next(house.glob(f"hostd-{to_pep440(v)}-*.whl")) for v in sources}
    return Wheelhouse(house, current, wheels)


def managed_config(
    host_id: str, work: Path, relay_url: str, house: Wheelhouse, **upgrade: Any
) -> dict[str, Any]:
    """A hostd config for a managed install under `work`, upgrading from the wheelhouse."""
    return {
        "id": host_id,
        "base_dir": str(work / "base"),
        "state_dir": str(work / "state"),
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "relay": {"url": relay_url, **FAST_RELAY},
        "upgrade": {
            "supervisor": "external",
            "pip_args": ["--no-index", "--find-links", str(house.path)],
            **upgrade,
        },
    }


class Relay:
    """`hostd dev-relay` as a process, driven over HTTP."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostd", "dev-relay", "--listen", f"127.0.0.1:{self.port}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.reachable(), 20)

    def reachable(self) -> bool:
        try:
            self.call("GET", "/api/orchestrators")
        except OSError:
            return False
        return True

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = self.call(method, path, body)
        assert status < 300, (method, path, status, reply)
        return reply

    def upgrade(self, host_id: str, target: str, **extra: Any) -> str:
        body = {"action": "upgrade", "targetVersion": target, **extra}
        return self.ok("POST", f"/api/orchestrators/{host_id}/actions", body)["command"]["id"]

    def enqueue_upgrade(self, host_id: str, target: str, force: bool = False) -> str:
        params = {"targetVersion": target, "providers": ["orchestrator"], "force": force}
        body = {"type": "orchestrator.upgrade", "target": f"orchestrator-{host_id}"}
        return self.ok("POST", "/api/commands", {**body, "params": params})["id"]

    def command(self, command_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/commands/{command_id}")

    def settled(self, command_id: str, timeout: float = 120) -> dict[str, Any]:
        def terminal() -> dict[str, Any] | None:
            command = self.command(command_id)
            return command if command["status"] in ("succeeded", "failed") else None

        return wait_for(terminal, timeout, interval=0.1)

    def phases(self, command_id: str) -> list[str]:
        path = f"/api/_dev/requests?method=PATCH&path=/api/commands/{command_id}"
        bodies = [entry.get("json") or {} for entry in self.ok("GET", path)["requests"]]
        return [
            (body.get("result") or {}).get("phase") or body.get("status", "")
            for body in bodies
            if isinstance(body, dict)
        ]

    def orchestrator(self, host_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/orchestrators/{host_id}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


@dataclass
class Start:
    pid: int
    version: str | None
    code: int | None = None


@dataclass
class Supervisor:
    """What the unit does: run the guard, then `<root>/current/bin/hostd run`; restart on exit
    75 and on failure, not after exit 0. When hostd ends, what is left of its process group is
    killed, as systemd kills what is left of the unit's cgroup."""

    root: Path
    config: Path
    log: Path
    starts: list[Start] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        wait_for(lambda: self.proc is not None, 10)
        return self

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ENV}

    def _loop(self) -> None:
        with open(self.log, "ab") as log:
            while not self._stop.is_set():
                subprocess.run(
                    [str(self.root / "bin" / "hostd-guard")],
                    stdout=log,
                    stderr=log,
                    env=self._env(),
                    timeout=30,
                    check=False,
                )
                hostd = self.root / "current" / "bin" / "hostd"
                self.proc = subprocess.Popen(
                    [str(hostd), "run", "--config", str(self.config)],
                    stdout=log,
                    stderr=log,
                    env=self._env(),
                    start_new_session=True,
                )
                start = Start(self.proc.pid, _linked(self.root / "current"))
                self.starts.append(start)
                start.code = self.proc.wait()
                _kill_group(self.proc.pid)
                if start.code == 0:
                    return
                self._stop.wait(RESTART_DELAY)

    def kill_group(self) -> None:
        """kill -9 of hostd and everything it started (pip, venv)."""
        assert self.proc is not None
        _kill_group(self.proc.pid)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "supervised hostd did not stop"

    def codes(self) -> list[int | None]:
        return [start.code for start in self.starts]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _linked(link: Path) -> str | None:
    try:
        return os.readlink(link).rsplit("/", 1)[-1]
    except OSError:
        return None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run(
    argv: Sequence[str | Path], timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A program to completion, without the supervisor's variables unless `env` is given."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ENV}
    return subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
