"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from hostd.api import create_app
from hostd.api.openapi import openapi_document
from tests.gitrepo import Repo
from tests.test_api import TOKEN, make_config


def _check(schema: dict[str, Any], value: Any, where: str) -> None:
    """A small structural validator: types, enums, required keys, no undocumented keys."""
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float)}
    if kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
    if "enum" in schema:
        assert value in schema["enum"], where
    if kind == "object" and "properties" in schema:
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        for key, item in value.items():
            assert key in schema["properties"], f"{where}: undocumented {key}"
            _check(schema["properties"][key], item, f"{where}.{key}")
    if kind == "array":
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{i}]")


async def test_document_matches_the_router(aiohttp_client: Any, base_dir: Path) -> None:
    app = create_app(make_config(base_dir))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    documented = {
        (method.upper(), path)
        for path, ops in openapi_document()["paths"].items()
        for method in ops
    }
    assert served == documented


async def test_responses_match_their_schemas(
    aiohttp_client: Any, base_dir: Path, repo: Repo
) -> None:
    client: TestClient = await aiohttp_client(create_app(make_config(base_dir)))
    agent = repo.worktree(base_dir / "wt", "agent/a")
    agent.commit("agent", {"new.txt": "new\n"})
    agent.write("dirty.txt", "x\n")
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        if path == "/metrics":
            continue
        for query in (
            {},
            {"path": str(agent.path), "baseRef": "main"},
            {"path": str(base_dir / "nope")},
        ):
            resp = await client.get(path, params=query, headers={"X-Agent-Relay-Token": TOKEN})
            responses = ops["get"]["responses"]
            assert str(resp.status) in responses, (path, query, resp.status)
            schema = responses[str(resp.status)]["content"]["application/json"]["schema"]
            _check(schema, await resp.json(), f"{path} {query}")
