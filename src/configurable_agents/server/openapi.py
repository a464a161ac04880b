"""What the OpenAPI document says beyond what FastAPI infers: every status each operation can
answer, with its model, the bearer scheme when a token is configured, and the request bodies of
one workflow (its inputs)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from .schemas import Error

__all__ = ["BEARER_SCHEME", "finish_document", "ok", "responses"]

BEARER_SCHEME = "bearerAuth"
"""Name of the bearer token's security scheme in ``components.securitySchemes``."""

_JSON_ERRORS: dict[int, str] = {
    400: "Malformed request (a `Content-Length` that is not a number).",
    401: "Missing or wrong bearer token.",
    404: "No such run of this workflow.",
    409: "The run already ended, or is not run by this server.",
    413: "Request body over the server's `--max-body-bytes`.",
}

_REF = "#/components/schemas/{model}"

_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}


def ok(model: type[BaseModel], description: str, **extra: Any) -> dict[str, Any]:
    """An answer of an operation: its model, what it means, and e.g. its ``headers``."""
    return {"model": model, "description": description, **extra}


def responses(
    *statuses: int, auth: bool, notes: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The error answers of an operation: the given statuses, 400 and 413 (any request can
    carry them), and 401 when a token is required (``auth``); ``notes`` says what a status means
    for this operation, where it differs."""
    wanted = sorted({*statuses, 400, 413, *([401] if auth else [])})
    documented: dict[int | str, dict[str, Any]] = {}
    for status in wanted:
        description = (notes or {}).get(status, _JSON_ERRORS[status])
        documented[status] = {"model": Error, "description": description}
        if status == 401:
            documented[status]["headers"] = _WWW_AUTHENTICATE
    return documented


def _plain_path_only(operation: dict[str, Any]) -> bool:
    """Whether nothing of a request to the operation can fail validation (no body, only
    unconstrained text in the path)."""
    if "requestBody" in operation:
        return False
    for parameter in operation.get("parameters", []):
        unconstrained = set(parameter["schema"]) <= {"type", "title", "description"}
        if parameter["in"] != "path" or parameter["schema"].get("type") != "string":
            return False
        if not unconstrained:
            return False
    return True


def _errors_as_json(operation: dict[str, Any]) -> None:
    """Error answers are JSON whatever the operation's own media type (``/metrics``: text)."""
    for status, response in operation["responses"].items():
        content = response.get("content", {})
        if int(status) >= 400 and content and "application/json" not in content:
            response["content"] = {"application/json": next(iter(content.values()))}


def _no_anything_json(operation: dict[str, Any]) -> None:
    """An answer documented in another media type (an event stream) is not also JSON of any
    shape (FastAPI adds ``application/json`` with an empty schema to every answer)."""
    for response in operation["responses"].values():
        content = response.get("content", {})
        if len(content) > 1 and content.get("application/json", {}).get("schema") == {}:
            del content["application/json"]


def finish_document(
    app: FastAPI,
    token_required: bool,
    open_paths: Collection[str],
    models: Mapping[str, type[BaseModel]] | None = None,
) -> None:
    """Finish ``app``'s OpenAPI document when it is first built: the bearer scheme on every
    operation outside ``open_paths`` when ``token_required``, error answers as JSON, no 422
    where validation cannot fail (FastAPI lists it for any operation with a parameter), and
    ``models`` documenting the components of their names (the routes, shared by every app,
    validate with the general model; e.g. ``RunRequest`` documented with this workflow's
    inputs)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, model in (models or {}).items():
            components[name] = model.model_json_schema(ref_template=_REF)
        for path, item in document["paths"].items():
            for operation in item.values():
                _errors_as_json(operation)
                _no_anything_json(operation)
                if _plain_path_only(operation):
                    operation["responses"].pop("422", None)
                if token_required and path not in open_paths:
                    operation["security"] = [{BEARER_SCHEME: []}]
        if token_required:
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER_SCHEME] = {"type": "http", "scheme": "bearer"}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
