"""Property-based tests of the served host API against its own OpenAPI document (schemathesis).

The app runs on a real loopback port in a background thread with its own event loop. Its
`base_dir` holds a repository with a linked worktree; generated `path` and `baseRef` values are
drawn partly from the names below (relative paths resolve against `base_dir`), so that requests
reach the git code, not only the path checks.

schemathesis' pytest loader `from_fixture` does not run under pytest 9.2, so the schemas are
built at import from the in-process document, and a test checks that the app serves exactly it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from schemathesis import Case, CheckContext, Response

from hostd.api import create_app
from hostd.api.openapi import openapi_document
from tests.gitrepo import init_repo
from tests.test_api import TOKEN, make_config

MAX_EXAMPLES = 25
SEED = 4860
TIMEOUT = 10.0
CHECKS = {
    name: {"enabled": True}
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "ignored_auth",
    )
}
GENERATION = {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"}
PATHS = ["repo", "wt", "wt/src", "plain", "repo/README.md", "repo/.git", "nope", "..", "/", ""]
REFS = ["main", "refs/heads/main", "agent/a", "HEAD", "HEAD~1", "main~1", "-h", "nope"]

with_token = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "auth": {"openapi": {"relayToken": {"api_key": TOKEN}}},
            "generation": GENERATION,
            "checks": {"enabled": False, **CHECKS},
            "dictionaries": {"paths": {"values": PATHS}, "refs": {"values": REFS}},
            "parameters": {
                "query.path": {"dictionary": "paths", "probability": 0.8},
                "query.baseRef": {"dictionary": "refs", "probability": 0.8},
                "query.baseSha": {"dictionary": "refs", "probability": 0.3},
            },
        }
    ),
)
# No credentials configured: schemathesis generates the header and query token (or leaves them
# out); latin-1 lets header values carry bytes above 0x7f, as any client can send.
with_generated_token = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {**GENERATION, "codec": "latin-1"},
            "checks": {"enabled": False, **CHECKS},
        }
    ),
).include(path_regex="^/api/workspace/")


@contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) from a thread; yield its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hostd-api", daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner.addresses[0][1]

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


def build_workspace(base_dir: Path) -> None:
    """A repository and a linked worktree with committed and uncommitted work."""
    repo = init_repo(base_dir / "repo")
    repo.commit("second", {"src/a.txt": "a\n"})
    agent = repo.worktree(base_dir / "wt", "agent/a")
    agent.commit("agent work", {"src/new.txt": "new\n", "README.md": "changed\n"})
    agent.write("dirty.txt", "x\n")
    (base_dir / "plain").mkdir()


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base_dir = (tmp_path_factory.mktemp("schemathesis") / "base").resolve()
    base_dir.mkdir()
    build_workspace(base_dir)
    with serve(create_app(make_config(base_dir))) as url:
        yield url


def _json(response: Response) -> Any:
    return response.json() if response.content else None


def cors_on_every_response(ctx: CheckContext, response: Response, case: Case) -> None:
    assert response.headers.get("access-control-allow-origin") == ["*"], response.headers


def undocumented_methods_follow_the_contract(
    ctx: CheckContext, response: Response, case: Case
) -> None:
    """OPTIONS answers 204 (CORS preflight); any other method the document lacks is a JSON 404."""
    method = response.request.method
    if method == "OPTIONS":
        assert response.status_code == 204, response.status_code
    elif method != "GET":
        assert (response.status_code, _json(response)) == (404, {"error": "not found"})


def rejected_without_the_token(ctx: CheckContext, response: Response, case: Case) -> None:
    if response.request.method == "GET":
        assert (response.status_code, _json(response)) == (401, {"error": "unauthorized"})


def test_the_served_document_is_the_one_tested(api_url: str) -> None:
    response = requests.get(f"{api_url}/api/openapi.json", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == openapi_document()


@with_token.parametrize()
def test_api_follows_its_document(case: Case, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url,
        additional_checks=[cors_on_every_response, undocumented_methods_follow_the_contract],
    )


@with_generated_token.parametrize()
def test_wrong_or_missing_token_is_the_documented_401(case: Case, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url, additional_checks=[cors_on_every_response, rejected_without_the_token]
    )
