"""Request body parsing, field validation and JSON error replies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

MAX_BODY_BYTES = 64 * 1024
# RequestKey is missing from older aiohttp releases, which accept (and warn about) a str key.
BODY: Any = web.RequestKey("body", bytes) if hasattr(web, "RequestKey") else "devrelay.body"


class ValidationError(Exception):
    """Bad client input; answered with 400 and the message."""


class BodyTooLarge(Exception):
    """The request body exceeds MAX_BODY_BYTES."""


def error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def read_capped(request: web.Request, cap: int = MAX_BODY_BYTES) -> bytes:
    """Read the whole body, raising BodyTooLarge as soon as it passes `cap` bytes."""
    if request.content_length is not None and request.content_length > cap:
        raise BodyTooLarge
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > cap:
            raise BodyTooLarge
    return bytes(data)


def json_body(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The JSON value of the body the middleware read; empty counts as `{}` if allowed."""
    raw: bytes = request[BODY]
    if not raw.strip():
        if allow_empty:
            return {}
        raise ValidationError("body required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"invalid JSON body: {exc}") from None


def json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    body = json_body(request, allow_empty=allow_empty)
    if not isinstance(body, dict):
        raise ValidationError("body required")
    return body


def opt_str(body: dict[str, Any], name: str, *, max_len: int = 1000, label: str = "") -> str | None:
    """A string field; absent, null or blank gives None."""
    value = body.get(name)
    label = label or name
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{label} must be a string")
    value = value.strip()
    if len(value) > max_len:
        raise ValidationError(f"{label} must be at most {max_len} characters")
    return value or None


def req_str(body: dict[str, Any], name: str, *, max_len: int = 1000) -> str:
    value = opt_str(body, name, max_len=max_len)
    if value is None:
        raise ValidationError(f"{name} required")
    return value


def opt_enum(
    body: dict[str, Any], name: str, allowed: Sequence[str], default: str | None = None
) -> str | None:
    value = opt_str(body, name, max_len=200)
    if value is None:
        return default
    if value not in allowed:
        raise ValidationError(f"{name} must be one of: {', '.join(allowed)}")
    return value


def opt_type(body: dict[str, Any], name: str, kind: type, description: str) -> Any:
    """A field of a given JSON type (bool is not an int here); absent or null gives None."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValidationError(f"{name} must be {description}")
    return value


def opt_str_list(body: dict[str, Any], name: str) -> list[str] | None:
    value = opt_type(body, name, list, "an array of strings")
    if value is not None and not all(isinstance(item, str) for item in value):
        raise ValidationError(f"{name} must be an array of strings")
    return value


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}")
    return value
