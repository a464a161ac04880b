"""The ASGI middleware in front of the API: the bearer token and the request body size limit.

It answers before routing: 401 (with ``WWW-Authenticate: Bearer``) without the token, 413 for a
body over the limit (declared or counted as it arrives), 400 for a ``Content-Length`` that is
not a number. A body it lets through has been read whole, so the API never sees a partial one.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from collections.abc import Set as AbstractSet
from typing import Any

from .wire import SafeJSONResponse

__all__ = ["Guard"]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _answer(send: _Send, status: int, detail: str, headers: dict[str, str]) -> None:
    response = SafeJSONResponse({"detail": detail}, status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class Guard:
    """ASGI middleware: the bearer token (compared in constant time) and the body size limit."""

    def __init__(
        self, app: Any, token: str | None, max_body_bytes: int, open_paths: AbstractSet[str]
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body_bytes
        self.open_paths = open_paths

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if self.token is not None and scope["path"] not in self.open_paths:
            scheme, _, given = headers.get("authorization", b"").partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(given, self.token)):
                detail = "missing or wrong bearer token"
                return await _answer(send, 401, detail, {"WWW-Authenticate": "Bearer"})
        too_large = f"request body over {self.max_body} bytes"
        length = headers.get("content-length", b"0")
        if not length.isdigit():
            return await _answer(send, 400, "invalid Content-Length", {})
        if int(length) > self.max_body:
            await self._discard(receive, True)
            return await _answer(send, 413, too_large, {"Connection": "close"})
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:  # read it all first: a chunked body may be larger than it said
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await self._discard(receive, more)  # a client still sending would get a reset
                return await _answer(send, 413, too_large, {"Connection": "close"})
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _discard(self, receive: _Receive, more: bool) -> None:
        """Read and drop the rest of a body, up to ten times the limit."""
        dropped = 0
        while more and dropped <= 10 * self.max_body:
            message = await receive()
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False) and message["type"] != "http.disconnect"
