"""Fetch and push with the `git` executable, so the user's credentials keep working.

Every call has a timeout; on expiry the whole process group (git and its ssh or credential
helpers) is killed. Prompts are off: a call that would ask for a password fails instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

import pygit2

from hostd.git.refs import upstream_of

_OUTPUT_TAIL = 2000


class RemoteError(Exception):
    """A fetch or push failed or timed out; the message is git's."""


@dataclass(frozen=True)
class Upstream:
    """Where a local branch is pushed to and fetched from."""

    remote: str
    merge_ref: str
    tracking_ref: str


@dataclass(frozen=True)
class PushOutcome:
    ok: bool
    rejected: bool
    message: str


def git_env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


def run_git(git_dir: str, args: list[str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `git --git-dir=<git_dir> <args>`, stdin closed."""
    return run_tool(["git", f"--git-dir={git_dir}", *args], None, timeout, "git " + args[0])


def run_tool(argv: list[str], cwd: str | None, timeout: float, what: str) -> tuple[int, str, str]:
    """Run a network tool in its own process group; killed with its children on timeout."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=git_env(),
            start_new_session=True,
        )
    except OSError as exc:
        raise RemoteError(f"{what}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise RemoteError(f"{what} timed out after {timeout:g}s") from None
    except BaseException:
        _kill_group(proc)
        raise
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _tail(text: str) -> str:
    text = text.strip()
    return text[-_OUTPUT_TAIL:]


def branch_upstream(repo: pygit2.Repository, branch: str) -> Upstream | None:
    """The configured upstream of a local branch on a real remote, or None."""
    local = repo.branches.local.get(branch)
    if local is None:
        return None
    try:
        remote = repo.config[f"branch.{branch}.remote"]
        merge_ref = repo.config[f"branch.{branch}.merge"]
    except (KeyError, pygit2.GitError):
        return None
    if remote == "." or not merge_ref.startswith("refs/heads/"):
        return None
    tracking = upstream_of(local)
    if tracking is None:
        tracking_ref = f"refs/remotes/{remote}/{merge_ref.removeprefix('refs/heads/')}"
    else:
        tracking_ref = tracking.name
    return Upstream(remote, merge_ref, tracking_ref)


def fetch_args(upstream: Upstream) -> list[str]:
    """`git fetch` arguments that update the remote-tracking ref of `upstream` only."""
    refspec = f"+{upstream.merge_ref}:{upstream.tracking_ref}"
    return ["fetch", "--quiet", "--no-tags", "--", upstream.remote, refspec]


def fetch(git_dir: str, upstream: Upstream, timeout: float) -> None:
    """Update the remote-tracking ref of `upstream` from its remote."""
    code, _, err = run_git(git_dir, fetch_args(upstream), timeout)
    if code != 0:
        raise RemoteError(_tail(err) or f"git fetch exited with status {code}")


def remote_sha(git_dir: str, remote: str, ref: str, timeout: float) -> str | None:
    """The value of `ref` on the remote (`git ls-remote`), None when it does not exist."""
    code, out, err = run_git(git_dir, ["ls-remote", "--", remote, ref], timeout)
    if code != 0:
        raise RemoteError(_tail(err) or f"git ls-remote exited with status {code}")
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return None


def push(
    git_dir: str, remote: str, sha: str, ref: str, lease: str | None, timeout: float
) -> PushOutcome:
    """Push `sha` to `ref` on the remote, only if the remote's `ref` is `lease` ("" = must not
    exist; None = no lease, a plain fast-forward push)."""
    args = ["push", "--porcelain"]
    if lease is not None:
        args.append(f"--force-with-lease={ref}:{lease}")
    args += ["--", remote, f"{sha}:{ref}"]
    code, out, err = run_git(git_dir, args, timeout)
    if code == 0:
        return PushOutcome(True, False, "")
    rejected = any(line.startswith("!") for line in out.splitlines())
    return PushOutcome(False, rejected, _tail(err) or _tail(out) or f"git push exited {code}")
