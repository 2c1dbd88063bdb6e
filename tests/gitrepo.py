"""Build real repositories with the git CLI, and ask the git CLI (the oracle) about them."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def git(
    cwd: str | os.PathLike[str], *args: str, check: bool = True, input: bytes | None = None
) -> str:
    """Run git in `cwd` and return stdout (decoded, surrogate-escaped, not stripped)."""
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode("utf-8", "surrogateescape")


def git_rc(cwd: str | os.PathLike[str], *args: str) -> tuple[int, str]:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "surrogateescape")


@dataclass
class Repo:
    """A working tree (main or linked) driven through the git CLI."""

    path: Path

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.path, *args, check=check)

    def write(self, rel: str, content: str | bytes) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content)
        else:
            target.write_bytes(content)
        return target

    def commit(
        self,
        message: str = "change",
        files: dict[str, str | bytes] | None = None,
        allow_empty: bool = False,
    ) -> str:
        for rel, content in (files or {}).items():
            self.write(rel, content)
        self.git("add", "-A")
        args = ["commit", "-q", "-m", message]
        if allow_empty:
            args.append("--allow-empty")
        self.git(*args)
        return self.head()

    def conflicted_merge(self, path: str) -> None:
        """Leave a merge stopped on a conflict in `path`: `side` and the current branch
        (`main`) both change it."""
        self.git("checkout", "-q", "-b", "side")
        self.commit("side", {path: "side\n"})
        self.git("checkout", "-q", "main")
        self.commit("main", {path: "main\n"})
        self.git("merge", "-q", "side", check=False)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def worktree(self, path: Path, branch: str, start: str = "HEAD") -> Repo:
        self.git("worktree", "add", "-q", "-b", branch, str(path), start)
        return Repo(path)

    def state_fingerprint(self) -> tuple[str, str, str]:
        """Refs, object count and worktree list: what a read-only request must not change."""
        refs = self.git("for-each-ref", "--format=%(refname) %(objectname)")
        objects = self.git("count-objects", "-v")
        worktrees = self.git("worktree", "list", "--porcelain")
        return refs, objects, worktrees


def init_repo(path: Path, branch: str = "main", initial: bool = True) -> Repo:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    repo = Repo(path)
    if initial:
        repo.commit("initial", {"README.md": "hello\n"})
    return repo


def clone_with_origin(tmp: Path, name: str = "work") -> tuple[Repo, Path]:
    """A bare `origin` and a clone of it whose `main` tracks `origin/main`."""
    seed = init_repo(tmp / f"{name}-seed")
    origin = tmp / f"{name}-origin.git"
    git(tmp, "clone", "-q", "--bare", str(seed.path), str(origin))
    git(tmp, "clone", "-q", str(origin), str(tmp / name))
    return Repo(tmp / name), origin
