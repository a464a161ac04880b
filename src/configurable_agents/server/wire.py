"""What crosses the wire: strict JSON in, JSON that any client can parse out, and the answers
FastAPI would otherwise get wrong (validation errors echoing unencodable input, 405s naming one
method of the path).

Request bodies are parsed as RFC 8259 JSON: no ``NaN`` or ``Infinity`` (nor numbers that
overflow to them), no lone surrogates, UTF-8 only, integers Python can parse, nesting at most
:data:`MAX_JSON_DEPTH` deep. Anything else is a 422 ``json_invalid``, like any malformed body.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

__all__ = [
    "MAX_JSON_DEPTH",
    "SafeJSONResponse",
    "StrictJSONRoute",
    "allowed_methods",
    "http_error",
    "json_safe",
    "parse_json",
    "validation_error",
]

MAX_JSON_DEPTH = 64
"""Most arrays and objects a request body may nest, itself included."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_SAFE_DEPTH = 200


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # over sys.get_int_max_str_digits()
        most = sys.get_int_max_str_digits()
        raise ValueError(f"integer of {len(text)} digits (most {most})") from None


def _flaw(value: Any) -> str | None:
    """Why a parsed body is not strict JSON (a lone surrogate, nesting too deep), or ``None``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return "lone surrogate in a string (not Unicode text)"
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH}"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                item = item.values()
            stack.extend((member, depth + 1) for member in item)
    return None


def parse_json(raw: bytes) -> Any:
    """A request body as strict JSON.

    Raises:
        json.JSONDecodeError: the body is not UTF-8, not JSON, or not strict JSON.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("not UTF-8", "", exc.start) from None
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_int
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH}", "", 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None
    flaw = _flaw(value)
    if flaw:
        raise json.JSONDecodeError(flaw, "", 0)
    return value


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` with what JSON cannot carry replaced: non-finite floats by ``None``, lone
    surrogates by U+FFFD, bytes decoded, tuples as lists, other objects as their text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 14_000 else None  # json cannot print it
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if _depth > _SAFE_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        return {json_safe(str(k)): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, _depth + 1) for v in value]
    return json_safe(str(value))


def _dumps(content: Any) -> bytes:
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


class SafeJSONResponse(JSONResponse):
    """A JSON response that is always valid JSON (see :func:`json_safe`), never an error."""

    def render(self, content: Any) -> bytes:
        """``content`` as JSON; values JSON cannot carry are replaced, not raised on."""
        try:
            return _dumps(content)
        except (ValueError, TypeError, RecursionError):  # NaN, surrogates, objects, depth
            return _dumps(json_safe(content))


class _StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by :func:`parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a request that parses strictly."""
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictRequest(request.scope, request.receive))

        return strict


async def validation_error(_: Request, exc: Exception) -> Response:
    """422 with FastAPI's field errors, their echoed ``input`` made JSON."""
    assert isinstance(exc, RequestValidationError)
    return SafeJSONResponse({"detail": json_safe(exc.errors())}, 422)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        served = getattr(route, "methods", None)
        if served and route.matches(request.scope)[0] is not Match.NONE:
            methods |= served
    return sorted(methods)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors as ``{"detail": ...}``; a 405's ``Allow`` names all the path's
    methods (Starlette names those of the first route matching the path only)."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return SafeJSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)
