"""About the served workflow and the process: ``/schema``, ``/health``, ``/ready`` and
``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

from .openapi import ok, responses
from .schemas import Health, NotReady, Ready, WorkflowSchemas
from .served import ServedDep
from .wire import SafeJSONResponse

__all__ = ["add_info_routes", "health", "prometheus_metrics", "readiness", "schema"]

_TEXT = {"text/plain": {"schema": {"type": "string"}}}


async def schema(served: ServedDep) -> Response:
    """JSON Schemas of the inputs a run accepts and the outputs it returns."""
    return SafeJSONResponse(served.schemas)


async def health() -> Response:
    """Liveness: the process answers."""
    return SafeJSONResponse({"status": "ok"})


async def readiness(served: ServedDep) -> Response:
    """Readiness: started, not shutting down, and the job table answers."""
    if not served.ready.is_set():
        return SafeJSONResponse({"status": "not ready"}, 503)
    await served.runs.list(served.name, limit=1)
    return SafeJSONResponse({"status": "ready", "workflow": served.name})


async def prometheus_metrics(served: ServedDep) -> Response:
    """Prometheus metrics (text exposition format)."""
    body, content_type = served.metrics.render()
    return Response(body, media_type=content_type)


def add_info_routes(app: FastAPI, auth: bool) -> None:
    """Add the operations about the workflow and the process to ``app``; with a token required
    (``auth``), 401 is among their answers but those of ``/health`` and ``/ready`` (open)."""
    described = {200: ok(WorkflowSchemas, "The schemas."), **responses(auth=auth)}
    app.add_api_route("/schema", schema, response_model=None, responses=described)
    alive = {200: ok(Health, "Alive."), **responses(auth=False)}
    app.add_api_route("/health", health, response_model=None, responses=alive)
    probed: dict[int | str, dict[str, Any]] = {
        200: ok(Ready, "Ready."),
        503: ok(NotReady, "Starting or stopping."),
        **responses(auth=False),
    }
    app.add_api_route("/ready", readiness, response_model=None, responses=probed)
    exposition: dict[int | str, dict[str, Any]] = {
        200: {"description": "Prometheus text exposition.", "content": _TEXT},
        **responses(auth=auth),
    }
    app.add_api_route(
        "/metrics",
        prometheus_metrics,
        response_class=PlainTextResponse,
        responses=exposition,
    )
