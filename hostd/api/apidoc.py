"""docs/http-api.md, rendered from the OpenAPI document (a test keeps the file in step).

python -m hostd.api.apidoc > docs/http-api.md
"""

from __future__ import annotations

from typing import Any

from hostd.api.openapi import openapi_document

INTRO = """# HTTP API

Generated from the document hostd serves at `/api/openapi.json`
(`python -m hostd.api.apidoc > docs/http-api.md`); do not edit by hand.

Conventions of every route:

- `/api/workspace/*` need the relay's shared token (`relay.token`) in the header
  `X-Agent-Relay-Token` or the query parameter `token`; without it: `401 {"error":"unauthorized"}`.
  With no token configured they are open, and hostd listens on loopback only.
- `path` is made absolute (relative to `base_dir`) and must lie inside `base_dir`, with its
  symlinks resolved too: else `400 {"error":"path must be within base_dir: <base_dir>"}`; also
  400 when it does not exist, holds a NUL byte or is over 4096 bytes.
- Git problems are `200` with an `error` field; optional fields are left out, never `null`.
- Every request finishes within `api.request_timeout`: past it `504 {"error":"timed out after
  5s"}`.
- Unknown routes and methods: `404 {"error":"not found"}`. A malformed request (a request line or
  header over 8 190 bytes, too many headers): `400 {"error": ...}`. `OPTIONS`: 204 with CORS
  headers; every answer carries `Access-Control-Allow-Origin: *`.
"""


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema['items'])}"
    if schema.get("enum"):
        return " or ".join(f"`{value}`".lower() for value in schema["enum"])
    return kind


def _fields(schema: dict[str, Any], prefix: str = "") -> list[str]:
    rows: list[str] = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        label = f"`{prefix}{name}`"
        always = "always" if name in required else ""
        rows.append(f"| {label} | {_type(prop)} | {always} | {prop.get('description', '')} |")
        nested = prop["items"] if prop.get("type") == "array" else prop
        if nested.get("properties"):
            inner = f"{prefix}{name}[]." if prop.get("type") == "array" else f"{prefix}{name}."
            rows.extend(_fields(nested, inner))
    return rows


def _operation(path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"## `GET {path}`", "", op["summary"], ""]
    lines.append("Needs the token." if op.get("security") else "No token needed.")
    lines.append("")
    if op.get("parameters"):
        lines += ["| parameter | meaning |", "| --- | --- |"]
        lines += [f"| `{p['name']}` | {p['description']} |" for p in op["parameters"]]
        lines.append("")
    for status, response in op["responses"].items():
        lines.append(f"**{status}**: {response['description']}")
        lines.append("")
        content = next(iter(response.get("content", {}).values()), {})
        schema = content.get("schema", {})
        if status == "200" and schema.get("properties"):
            lines += ["| field | type | present | meaning |", "| --- | --- | --- | --- |"]
            lines += _fields(schema)
            lines.append("")
    return lines


def render_markdown() -> str:
    lines = [INTRO]
    for path, item in openapi_document()["paths"].items():
        lines += _operation(path, item["get"])
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
