"""HTTP calls to the relay; every failure surfaces as a RelayError.

However the relay answers (redirects, bodies nested too deep to parse, headers aiohttp refuses),
the caller sees a RelayError, never another exception. Redirects are never followed: the token
header would go wherever the relay points.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
TOKEN_HEADER = "X-Agent-Relay-Token"
MAX_TOKEN_CHARS = 4096
_PLAIN_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_CHARS}}}")

log = logging.getLogger("hostd.relay")


def plain_token(value: object) -> bool:
    """A token fit for a header: visible ASCII only, no spaces or line breaks, bounded length."""
    return isinstance(value, str) and _PLAIN_TOKEN.fullmatch(value) is not None


class RelayError(Exception):
    """A relay call failed; the message is fit for a log line."""


class RelayTransportError(RelayError):
    """No HTTP answer: connection refused or reset, DNS failure, TLS error."""


class RelayTimeout(RelayTransportError):
    """No complete answer within the request timeout."""


class RelayHTTPError(RelayError):
    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}{': ' + detail if detail else ''}")
        self.status = status

    @property
    def client_error(self) -> bool:
        return 400 <= self.status < 500

    @property
    def retriable(self) -> bool:
        return self.status in (408, 429) or self.status >= 500


class RelayProtocolError(RelayError):
    """A 2xx answer whose body is not what the contract says (not JSON, too big)."""


class RelayClient:
    """One aiohttp session; the token is the runtime token once adopted, else the bootstrap one."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = str(URL(base_url.rstrip("/")))
        self.bootstrap_token = token
        self.runtime_token: str | None = None
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    @property
    def token(self) -> str | None:
        return self.runtime_token or self.bootstrap_token

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/orchestrators; adopts `runtimeToken.token` when the relay hands one out."""
        answer = await self._request("POST", "/api/orchestrators", body)
        if not isinstance(answer, dict):
            return {}
        runtime = answer.get("runtimeToken")
        token = runtime.get("token") if isinstance(runtime, dict) else None
        if plain_token(token):
            self.runtime_token = token
        elif token is not None:
            log.warning(
                "relay offered a runtime token that is not a plain token (%s); ignored",
                _shape(token),
            )
        return answer

    async def heartbeat(self, host_id: str, body: dict[str, Any]) -> None:
        await self._request(
            "POST", f"/api/orchestrators/{quote(host_id, safe='')}/heartbeat", body, parse=False
        )

    async def pending_commands(self, target: str, limit: int) -> Any:
        """The parsed JSON the relay answers; the caller checks its shape."""
        query = f"?target={quote(target, safe='')}&status=pending&limit={limit}"
        return await self._request("GET", "/api/commands" + query)

    async def patch_command(self, command_id: str, body: dict[str, Any]) -> None:
        await self._request(
            "PATCH", f"/api/commands/{quote(command_id, safe='')}", body, parse=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "hostd"},
            )
        return self._session

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, parse: bool = True
    ) -> Any:
        """One call; a 4xx answered to the runtime token drops it and the call is made once more
        with the bootstrap token."""
        token = self.token
        try:
            return await self._send(method, path, body, parse, token)
        except RelayHTTPError as exc:
            if not exc.client_error or token is None or token == self.bootstrap_token:
                raise
            if self.runtime_token == token:
                self.runtime_token = None
                log.info("relay refused the runtime token (%s); using the bootstrap token", exc)
            return await self._send(method, path, body, parse, self.bootstrap_token)

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, parse: bool, token: str | None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if token:
            headers[TOKEN_HEADER] = token
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        session = self._session_for_loop()
        short = path.split("?", 1)[0]
        location = None
        try:
            async with session.request(
                method,
                URL(self.base_url + path, encoded=True),
                data=data,
                headers=headers,
                allow_redirects=False,
            ) as r:
                raw = await self._read_capped(r, method, short)
                status = r.status
                location = r.headers.get("Location")
        except TimeoutError:
            raise RelayTimeout(f"{method} {short}: timed out after {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise RelayTransportError(f"{method} {short}: {_describe(exc)}") from None
        if 300 <= status < 400:
            shown = repr(location)[:200] if location else "nowhere"
            raise RelayHTTPError(method, short, status, f"redirect to {shown} not followed")
        if not 200 <= status < 300:
            raise RelayHTTPError(method, short, status, _error_detail(raw))
        if not parse:
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            snippet = raw[:120].decode("utf-8", "replace")
            reason = "nested too deep" if isinstance(exc, RecursionError) else "not JSON"
            raise RelayProtocolError(
                f"{method} {short}: answer is {reason} ({len(raw)} bytes: {snippet!r})"
            ) from None

    async def _read_capped(self, response: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_response_bytes:
                response.close()
                raise RelayProtocolError(
                    f"{method} {path}: answer larger than {self.max_response_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _shape(value: object) -> str:
    """What a rejected token looks like, without showing it."""
    if not isinstance(value, str):
        return type(value).__name__
    return f"{len(value)} characters"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValueError):
        return f"request not sent: aiohttp refused it ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return text


def _error_detail(raw: bytes) -> str:
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return raw[:200].decode("utf-8", "replace").strip()
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"][:200]
    return ""
