"""Generate the benchmark repository: a big `main` through `git fast-import`, agent worktrees.

Layout under `<workdir>/<spec.key>/`: `main/` (the repository and its main worktree) and
`agents/agent-NN/` (linked worktrees on branches `agent/NN`). `spec.json` is written last and
marks a finished repository that later runs reuse. Everything is derived from the seed.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

GENERATOR_VERSION = 1
T0 = 1_700_000_000
IDENT = b"Bench Author <bench@example.com>"
_VOCABULARY = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega config handler request worktree branch commit merge "
    "status index object tree blob ref patch hunk stream buffer cache token"
)
WORDS = _VOCABULARY.split()

Content = bytes | None  # None: the file is deleted


@dataclass(frozen=True)
class Spec:
    files: int = 20_000
    dirs: int = 200
    commits: int = 2_000
    worktrees: int = 20
    seed: int = 1

    @property
    def key(self) -> str:
        return (
            f"repo-f{self.files}-d{self.dirs}-c{self.commits}-w{self.worktrees}"
            f"-s{self.seed}-g{GENERATOR_VERSION}"
        )


@dataclass(frozen=True)
class Layout:
    root: Path
    main: Path
    worktrees: list[Path]
    largest: Path  # the worktree with the biggest diff against main


@dataclass
class Branch:
    index: int
    fork: int  # main commit number it starts from (1-based)
    ahead: int
    files_per_commit: int
    landed: bool = False  # its commits were also replayed onto main (a rebase merge)
    dirty: bool = False


def git(cwd: Path, *args: str, env: dict[str, str], check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def text_file(rng: random.Random, name: str, lines: int) -> bytes:
    body = "".join(
        f"{name}:{k:03d} {' '.join(rng.choices(WORDS, k=rng.randint(2, 8)))}\n"
        for k in range(lines)
    )
    return body.encode()


def initial_path(spec: Spec, n: int) -> str:
    return f"d{n % spec.dirs:03d}/f{n:05d}.{'bin' if n % 100 == 99 else 'txt'}"


def mutate(rng: random.Random, old: bytes, tag: str) -> bytes:
    """Rewrite one line and append one: two sides that both touch a file conflict."""
    if b"\0" in old:
        return b"\0BIN" + rng.randbytes(len(old))
    lines = old.decode().splitlines(keepends=True) or ["\n"]
    at = rng.randrange(len(lines))
    lines[at] = f"{tag} rewrote {' '.join(rng.choices(WORDS, k=4))}\n"
    lines.append(f"{tag} appended {' '.join(rng.choices(WORDS, k=3))}\n")
    return "".join(lines).encode()


class History:
    """Every version of every path on main, so a branch can start from any main commit."""

    def __init__(self) -> None:
        self.versions: dict[str, tuple[list[int], list[Content]]] = {}

    def set(self, commit: int, path: str, content: Content) -> None:
        numbers, contents = self.versions.setdefault(path, ([], []))
        numbers.append(commit)
        contents.append(content)

    def at(self, path: str, commit: int) -> Content:
        numbers, contents = self.versions.get(path, ([], []))
        i = bisect.bisect_right(numbers, commit)
        return contents[i - 1] if i else None


class FastImport:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def commit(
        self,
        ref: str,
        when: int,
        message: str,
        changes: dict[str, Content],
        mark: int | None = None,
        parent: int | None = None,
    ) -> None:
        w = self.out.write
        w(f"commit {ref}\n".encode())
        if mark is not None:
            w(f"mark :{mark}\n".encode())
        w(b"author " + IDENT + f" {when} +0000\n".encode())
        w(b"committer " + IDENT + f" {when} +0000\n".encode())
        msg = message.encode()
        w(f"data {len(msg)}\n".encode() + msg + b"\n")
        if parent is not None:
            w(f"from :{parent}\n".encode())
        for path, content in changes.items():
            if content is None:
                w(f"D {path}\n".encode())
            else:
                w(f"M 100644 inline {path}\ndata {len(content)}\n".encode() + content + b"\n")
        w(b"\n")


def plan_branches(spec: Spec, rng: random.Random) -> list[Branch]:
    branches = []
    for i in range(spec.worktrees):
        behind = 0 if i % 4 == 0 else rng.randint(1, max(1, min(300, spec.commits // 4)))
        ahead = 50 if i == 0 else rng.randint(1, 50)
        branches.append(
            Branch(
                index=i,
                fork=max(1, spec.commits - behind),
                ahead=ahead,
                files_per_commit=12 if i == 0 else rng.randint(1, 5),
                dirty=i % 3 == 2,
            )
        )
    if spec.worktrees >= 3 and spec.commits >= 20:
        landed = branches[1]
        landed.landed = True
        landed.ahead = min(landed.ahead, spec.commits // 10)
        landed.fork = spec.commits - landed.ahead - spec.commits // 10
    return branches


def landed_changes(branch: Branch, rng: random.Random) -> list[dict[str, Content]]:
    """Commits touching only the branch's own folder, so replaying them keeps their patch-ids."""
    files: dict[str, bytes] = {}
    commits = []
    for j in range(branch.ahead):
        path = f"features/agent-{branch.index:02d}/part{rng.randint(0, 4)}.txt"
        old = files.get(path)
        new = mutate(rng, old, f"a{branch.index}.{j}") if old else text_file(rng, path, 20)
        files[path] = new
        commits.append({path: new})
    return commits


def write_history(spec: Spec, branches: list[Branch], out: BinaryIO) -> None:
    rng = random.Random(f"bench-{spec.seed}")
    fi = FastImport(out)
    history = History()
    alive: list[str] = []
    initial: dict[str, Content] = {}
    for n in range(spec.files):
        path = initial_path(spec, n)
        if path.endswith(".bin"):
            initial[path] = b"\0BIN" + rng.randbytes(rng.randint(200, 2000))
        else:
            initial[path] = text_file(rng, f"f{n:05d}", rng.randint(10, 60))
        history.set(1, path, initial[path])
        alive.append(path)
    fi.commit("refs/heads/main", T0, "Initial import", initial, mark=1)

    replays: dict[int, tuple[Branch, int, dict[str, Content]]] = {}
    landed_plans: dict[int, list[dict[str, Content]]] = {}
    for b in branches:
        if b.landed:
            plan = landed_plans[b.index] = landed_changes(b, random.Random(f"landed-{b.index}"))
            start = spec.commits - spec.commits // 10
            for j, changes in enumerate(plan):
                replays[start + j] = (b, j, changes)

    for c in range(2, spec.commits + 1):
        if c in replays:
            b, j, changes = replays[c]
            message = f"agent-{b.index:02d}: step {j + 1} (rebased)"
        else:
            changes = {}
            for _ in range(rng.randint(1, 4)):
                roll = rng.random()
                if roll < 0.08:
                    path = f"d{rng.randrange(spec.dirs):03d}/new{c:05d}_{len(changes)}.txt"
                    changes[path] = text_file(rng, path, rng.randint(5, 30))
                    alive.append(path)
                elif roll < 0.12 and len(alive) > 10:
                    k = rng.randrange(len(alive))
                    alive[k], alive[-1] = alive[-1], alive[k]
                    changes[alive.pop()] = None
                else:
                    path = rng.choice(alive)
                    old = changes.get(path) or history.at(path, c - 1)
                    changes[path] = mutate(rng, old or b"\n", f"m{c}")
            message = f"main: change {c}\n\nTouches {len(changes)} file(s)."
        for path, content in changes.items():
            history.set(c, path, content)
        fi.commit("refs/heads/main", T0 + c * 600, message, changes, mark=c)
    out.write(f"reset refs/remotes/origin/main\nfrom :{spec.commits}\n\n".encode())

    for b in branches:
        ref = f"refs/heads/agent/{b.index:02d}"
        when = T0 + (spec.commits + 10 + b.index * 60) * 600
        if b.landed:
            for j, changes in enumerate(landed_plans[b.index]):
                parent = b.fork if j == 0 else None
                fi.commit(
                    ref, when + j * 60, f"agent-{b.index:02d}: step {j + 1}", changes, None, parent
                )
            continue
        brng = random.Random(f"branch-{spec.seed}-{b.index}")
        own: dict[str, Content] = {}
        for j in range(b.ahead):
            changes = {}
            for _ in range(b.files_per_commit):
                path = initial_path(spec, brng.randrange(spec.files))
                old = own[path] if path in own else history.at(path, b.fork)
                roll = brng.random()
                if old is None or roll < 0.05:
                    path = f"work/a{b.index:02d}/{j:03d}_{len(changes)}.txt"
                    changes[path] = text_file(brng, path, brng.randint(5, 40))
                elif roll < 0.08:
                    changes[path] = None
                    stem, dot, ext = path.rpartition(".")
                    changes[f"{stem}_moved{dot}{ext}"] = old
                else:
                    changes[path] = mutate(brng, old, f"b{b.index}.{j}")
                own.update(changes)
            parent = b.fork if j == 0 else None
            fi.commit(
                ref, when + j * 60, f"agent-{b.index:02d}: step {j + 1}", changes, None, parent
            )
    out.write(b"done\n")


def make_dirty(tree: Path, rng: random.Random) -> None:
    tracked = sorted(p for p in tree.glob("d00*/f*.txt"))
    for path in rng.sample(tracked, min(len(tracked), rng.randint(1, 5))):
        with path.open("a") as f:
            f.write("uncommitted edit\n")
    for k in range(rng.randint(1, 3)):
        (tree / f"untracked-{k}.txt").write_text(f"scratch {k}\n")
    (tree / "scratch").mkdir(exist_ok=True)
    for k in range(2):
        (tree / "scratch" / f"notes{k}.md").write_text("notes\n")


def iter_worktrees(root: Path, spec: Spec) -> Iterator[Path]:
    for i in range(spec.worktrees):
        yield root / "agents" / f"agent-{i:02d}"


def generate(root: Path, spec: Spec, env: dict[str, str]) -> None:
    main = root / "main"
    main.mkdir(parents=True)
    git(main, "init", "-q", "-b", "main", env=env)
    for key, value in (
        ("gc.auto", "0"),
        ("remote.origin.url", str(root / "origin.git")),
        ("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"),
        ("branch.main.remote", "origin"),
        ("branch.main.merge", "refs/heads/main"),
    ):
        git(main, "config", key, value, env=env)
    branches = plan_branches(spec, random.Random(f"plan-{spec.seed}"))
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=main, env=env, stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    with proc.stdin:
        write_history(spec, branches, proc.stdin)
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")

    trees = list(iter_worktrees(root, spec))
    for b, tree in zip(branches, trees, strict=True):
        git(
            main,
            "worktree",
            "add",
            "-q",
            "--no-checkout",
            str(tree),
            f"agent/{b.index:02d}",
            env=env,
        )
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(lambda t: git(t, "reset", "-q", "--hard", env=env), [main, *trees]))
    for b, tree in zip(branches, trees, strict=True):
        if b.dirty:
            make_dirty(tree, random.Random(f"dirty-{spec.seed}-{b.index}"))
    # Refresh every index after a second has passed, so no entry stays racily clean.
    time.sleep(1.01 - time.time() % 1)
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        refresh = ["update-index", "-q", "--refresh"]
        list(pool.map(lambda t: git(t, *refresh, env=env, check=False), [main, *trees]))


def ensure_repo(workdir: Path, spec: Spec, env: dict[str, str]) -> tuple[Layout, float | None]:
    """The repository for `spec` and the seconds it took to generate (None when reused)."""
    root = workdir / spec.key
    marker = root / "spec.json"
    took = None
    if not (marker.exists() and json.loads(marker.read_text()) == asdict(spec)):
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        generate(root, spec, env)
        marker.write_text(json.dumps(asdict(spec)))
        took = time.perf_counter() - started
    trees = list(iter_worktrees(root, spec))
    return Layout(root, root / "main", trees, trees[0]), took
