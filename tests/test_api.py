"""The host API over real HTTP on loopback: auth, path rules, hostile input, CORS, 404s."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hostd.api import create_app
from hostd.config import Config, load_config
from tests.gitrepo import Repo, git, init_repo

TOKEN = "s3cret-token"
WORKSPACE_ROUTES = ["probe", "state", "diff", "merge-preview"]


def make_config(base_dir: Path, **overrides: Any) -> Config:
    values = {"base_dir": str(base_dir), "relay.token": TOKEN, "hostname": "test-host"}
    values.update(overrides)
    return load_config(env={}, overrides=values)


@pytest.fixture
async def client(aiohttp_client: Any, base_dir: Path) -> TestClient:
    return await aiohttp_client(create_app(make_config(base_dir)))


async def get(client: TestClient, route: str, token: str | None = TOKEN, **params: str):
    headers = {"X-Agent-Relay-Token": token} if token is not None else {}
    resp = await client.get(f"/api/workspace/{route}", params=params, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize("route", WORKSPACE_ROUTES)
async def test_workspace_routes_need_the_token(client: TestClient, route: str) -> None:
    assert await get(client, route, token=None) == (401, {"error": "unauthorized"})
    assert await get(client, route, token="wrong") == (401, {"error": "unauthorized"})
    assert await get(client, route, token=TOKEN + "x") == (401, {"error": "unauthorized"})
    status, _ = await get(client, route)
    assert status == 200


async def raw_get(client: TestClient, target: str, header: bytes) -> tuple[int, Any]:
    """GET with one header line sent as raw bytes (aiohttp's client would re-encode it)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".encode()
        + header
        + b"\r\n\r\n"
    )
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("value", [b"\xff", b"s3cret-token\xff", b"\xc3", b"\x80abc"])
async def test_token_header_that_is_not_utf8_is_401(client: TestClient, value: bytes) -> None:
    header = b"X-Agent-Relay-Token: " + value
    assert await raw_get(client, "/api/workspace/probe", header) == (
        401,
        {"error": "unauthorized"},
    )


async def test_token_header_sent_as_raw_utf8_bytes_matches(
    aiohttp_client: Any, base_dir: Path
) -> None:
    token = "jeton-é"
    client = await aiohttp_client(create_app(make_config(base_dir, **{"relay.token": token})))
    header = b"X-Agent-Relay-Token: " + token.encode()
    status, body = await raw_get(client, "/api/workspace/probe", header)
    assert status == 200 and body["isGitRepo"] is False


async def test_token_query_parameter_is_accepted(client: TestClient, repo: Repo) -> None:
    resp = await client.get("/api/workspace/probe", params={"path": str(repo.path), "token": TOKEN})
    assert resp.status == 200
    assert (await resp.json())["isGitRepo"] is True


async def test_open_routes_need_no_token(client: TestClient) -> None:
    for route in ("/api/health", "/api/version", "/api/openapi.json", "/metrics"):
        resp = await client.get(route)
        assert resp.status == 200, route


async def test_without_a_configured_token_loopback_is_open(
    aiohttp_client: Any, base_dir: Path, repo: Repo
) -> None:
    client = await aiohttp_client(create_app(make_config(base_dir, **{"relay.token": None})))
    status, body = await get(client, "probe", token=None, path=str(repo.path))
    assert status == 200 and body["isGitRepo"] is True


@pytest.mark.parametrize("route", WORKSPACE_ROUTES)
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{base}/../..", "path must be within base_dir: {base}"),
        ("{base}/repo/../../outside", "path must be within base_dir: {base}"),
        ("/etc", "path must be within base_dir: {base}"),
        ("{base}-sibling", "path must be within base_dir: {base}"),
        ("{base}/nope", "path does not exist: {base}/nope"),
        ("{base}/link-out", "path must be within base_dir: {base}"),
        ("{base}/repo\0/x", "path must not contain NUL bytes"),
        ("{base}/" + "a" * 5000, "path is longer than 4096 bytes"),
    ],
)
async def test_bad_paths_are_400(
    client: TestClient,
    base_dir: Path,
    repo: Repo,
    tmp_path: Path,
    route: str,
    raw: str,
    message: str,
) -> None:
    outside = tmp_path / "outside"
    init_repo(outside)
    (Path(f"{base_dir}-sibling")).mkdir(exist_ok=True)
    os.symlink(outside, base_dir / "link-out")
    before = repo.state_fingerprint()
    status, body = await get(client, route, path=raw.format(base=base_dir))
    assert (status, body) == (400, {"error": message.format(base=base_dir)})
    assert repo.state_fingerprint() == before


async def test_plus_in_query_is_a_space(client: TestClient, base_dir: Path) -> None:
    spaced = init_repo(base_dir / "my repo")
    resp = await client.get(
        f"/api/workspace/probe?path={base_dir}/my+repo", headers={"X-Agent-Relay-Token": TOKEN}
    )
    body = await resp.json()
    assert body["isGitRepo"] is True
    assert body["repoRoot"] == str(spaced.path)


async def test_relative_path_is_taken_from_base_dir(client: TestClient, repo: Repo) -> None:
    status, body = await get(client, "probe", path="repo")
    assert status == 200 and body["repoRoot"] == str(repo.path)


async def test_default_path_is_base_dir(client: TestClient, base_dir: Path) -> None:
    status, body = await get(client, "probe")
    assert (status, body) == (200, {"path": str(base_dir), "isGitRepo": False})


async def test_repository_above_base_dir_is_not_claimed(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    home = init_repo(tmp_path / "home")
    inner = home.path / "work" / "project"
    inner.mkdir(parents=True)
    client = await aiohttp_client(create_app(make_config(home.path / "work")))
    for raw in (str(inner), str(home.path / "work")):
        status, body = await get(client, "probe", path=raw)
        assert (status, body) == (200, {"path": raw, "isGitRepo": False})
        status, body = await get(client, "state", path=raw)
        assert status == 200 and body == {"error": f"not a git repository: {raw}"}


async def test_non_repository_directory(client: TestClient, base_dir: Path) -> None:
    (base_dir / "plain").mkdir()
    path = str(base_dir / "plain")
    assert await get(client, "probe", path=path) == (200, {"path": path, "isGitRepo": False})
    assert await get(client, "state", path=path) == (
        200,
        {"error": f"not a git repository: {path}"},
    )
    status, body = await get(client, "diff", path=path)
    assert status == 200 and body["files"] == [] and "not a git repository" in body["error"]
    status, body = await get(client, "merge-preview", path=path)
    assert status == 200 and "not a git repository" in body["error"]
    assert body["strategy"] == "rebase-ff"


async def test_a_file_is_not_a_directory(client: TestClient, repo: Repo) -> None:
    path = str(repo.path / "README.md")
    assert await get(client, "probe", path=path) == (
        200,
        {"path": path, "isGitRepo": False, "error": f"not a directory: {path}"},
    )
    assert await get(client, "state", path=path) == (200, {"error": f"not a directory: {path}"})


async def test_bare_repository_and_git_dir_are_not_work_trees(
    client: TestClient, base_dir: Path, repo: Repo
) -> None:
    git(base_dir, "clone", "-q", "--bare", str(repo.path), str(base_dir / "bare.git"))
    for path in (
        str(base_dir / "bare.git"),
        str(repo.path / ".git"),
        str(repo.path / ".git" / "objects"),
    ):
        assert await get(client, "probe", path=path) == (200, {"path": path, "isGitRepo": False})


async def test_symlink_inside_base_dir_is_followed(
    client: TestClient, base_dir: Path, repo: Repo
) -> None:
    os.symlink(repo.path, base_dir / "alias")
    status, body = await get(client, "probe", path=str(base_dir / "alias"))
    assert status == 200
    assert body["path"] == str(base_dir / "alias")
    assert body["repoRoot"] == str(repo.path)


@pytest.mark.parametrize("ref", ["-h", "--output=/tmp/x", "main\0", "x" * 5000, "HEAD:../"])
async def test_hostile_base_refs_do_not_resolve(client: TestClient, repo: Repo, ref: str) -> None:
    before = repo.state_fingerprint()
    status, body = await get(client, "state", path=str(repo.path), baseRef=ref)
    assert status == 200
    assert "baseRef" not in body and "ahead" not in body
    status, body = await get(client, "merge-preview", path=str(repo.path), baseRef=ref)
    assert status == 200 and body["error"] == "base ref unavailable"
    assert repo.state_fingerprint() == before


@pytest.mark.parametrize("strategy", ["garbage", "auto", "", "PR", "rebase-ff; rm -rf /"])
async def test_garbage_strategy_means_auto(client: TestClient, repo: Repo, strategy: str) -> None:
    status, body = await get(
        client, "merge-preview", path=str(repo.path), baseRef="main", strategy=strategy
    )
    assert status == 200 and body["strategy"] in ("pr", "rebase-ff")


async def test_unknown_route_and_method_are_json_404(client: TestClient) -> None:
    for method, route in (
        ("GET", "/nope"),
        ("POST", "/api/health"),
        ("DELETE", "/api/version"),
        ("PUT", "/api/workspace/probe"),
    ):
        resp = await client.request(method, route, headers={"X-Agent-Relay-Token": TOKEN})
        assert resp.status == 404, (method, route)
        assert await resp.json() == {"error": "not found"}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors(client: TestClient) -> None:
    resp = await client.options("/api/workspace/state")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type, X-Agent-Relay-Token"
    for route in ("/api/health", "/api/workspace/probe"):
        resp = await client.get(route)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_deadline_answers_504(aiohttp_client: Any, base_dir: Path, repo: Repo) -> None:
    repo.commit("many files", {f"d/f{i}.txt": "x\n" * 50 for i in range(1500)})
    agent = repo.worktree(base_dir / "wt", "agent/slow")
    agent.commit("touch all", {f"d/f{i}.txt": "y\n" * 50 for i in range(1500)})
    client = await aiohttp_client(
        create_app(make_config(base_dir, **{"api.request_timeout": "1ms"}))
    )
    status, body = await get(client, "diff", path=str(agent.path), baseRef="main")
    assert (status, body) == (504, {"error": "timed out after 1ms"})
    health = await client.get("/api/health")
    assert health.status == 200


async def test_health_and_version(client: TestClient) -> None:
    health = await (await client.get("/api/health")).json()
    assert health["status"] == "ok" and health["ok"] is True
    assert health["id"] == "test-host" and health["hostname"] == "test-host"
    assert {"degraded", "relay", "registration", "commandLoop", "uptimeS"} <= set(health)
    version = await (await client.get("/api/version")).json()
    assert version["package"]["name"] == "hostd"
    assert version["version"] == version["package"]["version"] == health["version"]
    assert isinstance(version["protocolVersion"], int)
    assert all(value is True for value in version["capabilities"].values())


async def test_metrics_count_requests_without_paths(client: TestClient, repo: Repo) -> None:
    await get(client, "probe", path=str(repo.path))
    text = await (await client.get("/metrics")).text()
    assert (
        'hostd_http_requests_total{method="GET",route="/api/workspace/probe",status="200"}' in text
    )
    assert "hostd_event_loop_lag_seconds" in text
    assert str(repo.path) not in text


async def test_token_and_query_values_are_never_logged(
    client: TestClient, repo: Repo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="hostd.api")
    await client.get(
        "/api/workspace/state",
        params={"path": str(repo.path), "token": TOKEN, "baseRef": "secret-branch"},
    )
    await get(client, "probe", token="wrong-token-value", path=str(repo.path))
    lines = "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/workspace/state 200" in lines
    assert "/api/workspace/probe 401" in lines
    for secret in (TOKEN, "wrong-token-value", "secret-branch", str(repo.path)):
        assert secret not in lines


@pytest.mark.parametrize("keep_status", ["true", "false"])
async def test_status_follows_every_change(
    aiohttp_client: Any, base_dir: Path, repo: Repo, keep_status: str
) -> None:
    config = make_config(base_dir, **{"workspaces.keep_status": keep_status})
    client = await aiohttp_client(create_app(config))
    path = str(repo.path)
    for step in range(4):
        _, body = await get(client, "state", path=path)
        expected = len(git(repo.path, "--no-optional-locks", "status", "--porcelain").splitlines())
        assert body["dirtyCount"] == expected == step
        repo.write(f"new-{step}.txt", "x\n")


def porcelain_count(path: Path) -> int:
    return len(git(path, "--no-optional-locks", "status", "--porcelain").splitlines())


@pytest.mark.parametrize(
    "params", [{"baseRef": "main"}, {}, {"baseRef": "no-such-branch"}, {"baseSha": "0" * 40}]
)
async def test_diff_always_carries_dirty_count(
    client: TestClient, base_dir: Path, repo: Repo, params: dict[str, str]
) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/a")
    wt.commit("work", {"a.txt": "a\n"})
    for step in range(3):
        status, body = await get(client, "diff", path=str(wt.path), **params)
        assert status == 200 and "error" not in body
        assert body["dirtyCount"] == porcelain_count(wt.path) == step
        wt.write(f"untracked-{step}.txt", "x\n")


async def test_merge_preview_leaves_unmerged_ahead_out_when_ahead_is_zero(
    client: TestClient, base_dir: Path, repo: Repo
) -> None:
    wt = repo.worktree(base_dir / "wt", "agent/a")
    _, state = await get(client, "state", path=str(wt.path), baseRef="main")
    _, preview = await get(client, "merge-preview", path=str(wt.path), baseRef="main")
    assert state["ahead"] == preview["ahead"] == 0
    assert "unmergedAhead" not in state and "unmergedAhead" not in preview
    wt.commit("work", {"a.txt": "a\n"})
    _, preview = await get(client, "merge-preview", path=str(wt.path), baseRef="main")
    ahead = int(git(wt.path, "rev-list", "--count", "main..HEAD"))
    assert preview["ahead"] == preview["unmergedAhead"] == ahead == 1
