"""A repository outside base_dir stays unreachable through worktrees and `.git` files inside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hostd.api import create_app
from hostd.git.discover import find_repository
from tests.gitrepo import Repo, git, init_repo
from tests.test_api import TOKEN, make_config
from tests.test_probe import git_worktrees

SECRET = "the outside secret\n"
ROUTES = ["probe", "state", "diff", "merge-preview"]


@pytest.fixture
def outside(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "outside")
    repo.commit("secret", {"secret.txt": SECRET})
    return repo


def crafted_admin(base_dir: Path, outside: Repo) -> Path:
    """`fake/.git` names an admin dir inside base_dir whose `commondir` is the outside repo."""
    admin = base_dir / "admin"
    admin.mkdir()
    (admin / "HEAD").write_text("ref: refs/heads/main\n")
    (admin / "commondir").write_text(str(outside.path / ".git") + "\n")
    fake = base_dir / "fake"
    fake.mkdir()
    (admin / "gitdir").write_text(str(fake / ".git") + "\n")
    (fake / ".git").write_text(f"gitdir: {admin}\n")
    return fake


def crafted_outside_admin(base_dir: Path, outside: Repo) -> Path:
    """`fake/.git` names an admin dir inside the outside repository."""
    outside.git("worktree", "add", "-q", "--detach", str(outside.path.parent / "ow"), "HEAD")
    fake = base_dir / "fake"
    fake.mkdir()
    (fake / ".git").write_text(f"gitdir: {outside.path / '.git' / 'worktrees' / 'ow'}\n")
    return fake


def linked_from_outside(base_dir: Path, outside: Repo) -> Path:
    """A real `git worktree add` from the outside repository into base_dir."""
    return outside.worktree(base_dir / "fake", "agent/outside").path


LAYOUTS = [crafted_admin, crafted_outside_admin, linked_from_outside]


@pytest.fixture
async def client(aiohttp_client: Any, base_dir: Path) -> TestClient:
    return await aiohttp_client(create_app(make_config(base_dir)))


async def get(client: TestClient, route: str, **params: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(
        f"/api/workspace/{route}", params=params, headers={"X-Agent-Relay-Token": TOKEN}
    )
    return resp.status, await resp.json()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_git_itself_serves_the_outside_repository(
    base_dir: Path, outside: Repo, layout: Any
) -> None:
    fake = layout(base_dir, outside)
    assert git(fake, "show", "HEAD:secret.txt") == SECRET
    assert find_repository(str(fake), str(base_dir)) is None


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("layout", LAYOUTS)
async def test_outside_repository_is_not_a_repository(
    client: TestClient, base_dir: Path, outside: Repo, layout: Any, route: str
) -> None:
    fake = layout(base_dir, outside)
    before = outside.state_fingerprint()
    status, body = await get(client, route, path=str(fake), baseRef="main~1")
    assert status == 200
    assert "secret" not in json.dumps(body)
    if route == "probe":
        assert body == {"path": str(fake), "isGitRepo": False}
    else:
        assert body["error"] == f"not a git repository: {fake}"
        assert "files" not in body or body["files"] == []
    assert outside.state_fingerprint() == before


async def test_probe_leaves_out_worktrees_outside_base_dir(
    client: TestClient, base_dir: Path, repo: Repo, tmp_path: Path
) -> None:
    inside = repo.worktree(base_dir / "wt" / "inside", "agent/inside")
    repo.worktree(tmp_path / "elsewhere", "agent/elsewhere")
    status, body = await get(client, "probe", path=str(repo.path))
    assert status == 200
    from_git = git_worktrees(repo)
    assert len(from_git) == 3
    assert body["worktrees"] == [w for w in from_git if "elsewhere" not in w["path"]]
    assert [w["path"] for w in body["worktrees"]] == [str(repo.path), str(inside.path)]
