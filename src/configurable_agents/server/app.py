"""The FastAPI application serving one workflow: runs, their status, its schema and metrics.

``POST /runs`` starts a run exactly once and waits up to ``wait_seconds`` for it: 200 with the
result, else 202 with the run's ``status_url`` while the same execution goes on. Runs live in the
job table (:mod:`.jobs`), so ``GET /runs/{id}`` answers after a restart too.

Every answer is JSON (``/metrics`` is text) and in the OpenAPI document with its model: request
bodies are parsed strictly (:mod:`.wire`), the token and body limit are checked first
(:mod:`.guard`), and the document names every status (:mod:`.openapi`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, StringConstraints
from starlette.exceptions import HTTPException

from ..config.loader import Workflow
from ..engine import InputError, PreparedWorkflow
from ..observability.prometheus import Metrics
from .executor import Executor, LocalExecutor
from .guard import Guard
from .jobs import UNFINISHED, JobStore
from .openapi import finish_document, responses
from .schemas import (
    MAX_WAIT_S,
    Accepted,
    Health,
    NotReady,
    Ready,
    Run,
    RunList,
    RunRequest,
    RunState,
    WorkflowSchemas,
    io_schemas,
    run_request_model,
)
from .wire import (
    MAX_JSON_DEPTH,
    SafeJSONResponse,
    StrictJSONRoute,
    http_error,
    validation_error,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPEN_PATHS", "TOKEN_ENV", "create_app"]

TOKEN_ENV = "CONFIGURABLE_AGENTS_API_TOKEN"
"""When set, every request but :data:`OPEN_PATHS` needs ``Authorization: Bearer <token>``."""

OPEN_PATHS = frozenset({"/health", "/ready"})
"""Paths answered without a token (liveness and readiness probes)."""

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB); larger ones get 413."""

_log = logging.getLogger(__name__)

_Tag = Annotated[str, StringConstraints(pattern=r"^[^=]+=")]
"""A ``tag`` query value: ``KEY=VALUE``, the key not empty."""

_CONDUCT = (
    "Answers are JSON (`/metrics` is Prometheus text). Request bodies must be strict JSON "
    f"(UTF-8, no NaN or Infinity, no lone surrogates, nested at most {MAX_JSON_DEPTH} deep), "
    "else 422. A method a path does not serve gets 405 with `Allow`."
)


def _field_errors(error: InputError) -> list[dict[str, Any]]:
    """FastAPI-style field errors, one per problem, located at the input it names."""
    errors = []
    for problem in error.problems:
        name = re.search(r"'([^']+)'", problem)
        location = ["body", "inputs", name.group(1)] if name else ["body", "inputs"]
        errors.append({"loc": location, "msg": problem, "type": "value_error"})
    return errors


def create_app(
    prepared: PreparedWorkflow,
    *,
    jobs: JobStore,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    shutdown_timeout: float = 10.0,
    max_runs: int | None = None,
    executor: Executor | None = None,
) -> FastAPI:
    """The API of one prepared workflow.

    Args:
        prepared: The workflow, compiled once for every run.
        jobs: The job table; running rows of dead servers are marked failed at start-up.
        token: Bearer token every request but ``/health`` and ``/ready`` must carry.
        max_body_bytes: Larger request bodies get 413.
        shutdown_timeout: At shutdown, seconds running runs may take to finish before they
            are cancelled (then spooled traces get as long again to be written).
        max_runs: Most runs in progress at once; more wait ``queued`` (default: no limit).
        executor: Runs the runs (default: in this process, :class:`LocalExecutor`).
    """
    workflow = prepared.workflow
    metrics = Metrics.for_workflow(prepared)
    runner: Executor = executor or LocalExecutor(prepared, jobs, metrics, max_runs)
    ready = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        interrupted = jobs.recover()
        if interrupted:
            _log.warning("%d run(s) interrupted by a previous stop are marked failed", interrupted)
        ready.set()
        yield
        ready.clear()
        await runner.shutdown(shutdown_timeout)
        from ..observability.recorder import Recorder, flush_all

        if prepared.observer(Recorder) is not None:
            await asyncio.to_thread(flush_all, shutdown_timeout)

    auth = bool(token)
    app = FastAPI(
        title=f"{workflow.name} (configurable-agents)",
        version=workflow.config.flow.version or "0",
        description=_description(workflow, auth),
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.router.route_class = StrictJSONRoute
    app.state.metrics = metrics
    app.add_middleware(Guard, token=token, max_body_bytes=max_body_bytes, open_paths=OPEN_PATHS)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return SafeJSONResponse({"detail": "internal error; see the server's log"}, 500)

    _start_route(app, workflow, runner, jobs, auth)
    _run_routes(app, workflow.name, runner, jobs, auth)
    _info_routes(app, workflow, metrics, jobs, ready, auth)
    finish_document(app, auth, OPEN_PATHS)
    return app


def _description(workflow: Workflow, auth: bool) -> str:
    first = workflow.config.flow.description or f"Runs of the workflow {workflow.name}."
    token = (
        "Every operation but `/health` and `/ready` needs `Authorization: Bearer <token>`."
        if auth
        else ""
    )
    return f"{first}\n\n{_CONDUCT} {token}".rstrip()


def _ok(model: type[BaseModel], description: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "description": description, **extra}


def _start_route(
    app: FastAPI, workflow: Workflow, runner: Executor, jobs: JobStore, auth: bool
) -> None:
    """``POST /runs``, its body documented with the workflow's inputs."""

    async def start_run(body: RunRequest) -> Response:
        """Start a run; its result if it ends within ``wait_seconds``, else 202 and its URL."""
        try:
            run_id = await runner.submit(body.inputs, body.tags)
        except InputError as exc:
            return SafeJSONResponse({"detail": _field_errors(exc)}, 422)
        ended = await runner.wait(run_id, body.wait_seconds)
        view = await asyncio.to_thread(jobs.get, run_id)
        if ended:
            return SafeJSONResponse(view)
        url = f"/runs/{run_id}"
        accepted = {"run_id": run_id, "status": (view or {}).get("status"), "status_url": url}
        return SafeJSONResponse(accepted, 202, {"Location": url})

    start_run.__annotations__["body"] = run_request_model(workflow)
    location = {"Location": {"description": "`status_url`", "schema": {"type": "string"}}}
    documented = {
        200: _ok(Run, "The run ended within `wait_seconds`: its result (any status)."),
        202: _ok(Accepted, "Still queued or running; poll `status_url`.", headers=location),
        **responses(auth=auth),
    }
    app.post("/runs", response_model=None, responses=documented)(start_run)


def _run_routes(app: FastAPI, name: str, runner: Executor, jobs: JobStore, auth: bool) -> None:
    """``GET /runs/{id}``, ``GET /runs`` and ``DELETE /runs/{id}``."""
    one = {200: _ok(Run, "The run."), **responses(404, auth=auth)}

    @app.get("/runs/{run_id}", response_model=None, responses=one)
    async def get_run(
        run_id: str,
        wait_seconds: Annotated[float, Query(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)] = 0.0,
    ) -> Response:
        """A run: status, outputs, state, cost, tokens, trace id, error. ``wait_seconds`` waits
        for a running run to end first."""
        if wait_seconds:
            await runner.wait(run_id, wait_seconds)
        view = await asyncio.to_thread(jobs.get, run_id)
        if view is None or view["workflow"] != name:
            return SafeJSONResponse({"detail": f"no run {run_id!r}"}, 404)
        return SafeJSONResponse(view)

    many = {200: _ok(RunList, "Runs, most recent first."), **responses(auth=auth)}

    @app.get("/runs", response_model=None, responses=many)
    async def list_runs(
        status: RunState | None = None,  # type: ignore[valid-type]
        tag: Annotated[
            list[_Tag], Query(description="`KEY=VALUE`, repeatable: runs with all these tags.")
        ] = [],  # noqa: B006
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Response:
        """Recent runs of this workflow, newest first."""
        tags = dict(pair.split("=", 1) for pair in tag)
        state = None if status is None else status.value
        found = await asyncio.to_thread(jobs.list, name, status=state, tags=tags, limit=limit)
        return SafeJSONResponse({"runs": found})

    cancel = {200: _ok(Run, "The run, now cancelled."), **responses(404, 409, auth=auth)}

    @app.delete("/runs/{run_id}", response_model=None, responses=cancel)
    async def cancel_run(run_id: str) -> Response:
        """Cancel a queued or running run; its partial state is kept."""
        view = await asyncio.to_thread(jobs.get, run_id)
        if view is None or view["workflow"] != name:
            return SafeJSONResponse({"detail": f"no run {run_id!r}"}, 404)
        if view["status"] not in UNFINISHED:
            detail = f"run {run_id} already ended: {view['status']}"
            return SafeJSONResponse({"detail": detail}, 409)
        if not await runner.cancel(run_id):
            return SafeJSONResponse({"detail": f"run {run_id} is not run by this server"}, 409)
        return SafeJSONResponse(await asyncio.to_thread(jobs.get, run_id))


def _info_routes(
    app: FastAPI,
    workflow: Workflow,
    metrics: Metrics,
    jobs: JobStore,
    ready: asyncio.Event,
    auth: bool,
) -> None:
    """``/schema``, ``/health``, ``/ready`` and ``/metrics``."""
    schemas = io_schemas(workflow)
    described = {200: _ok(WorkflowSchemas, "The schemas."), **responses(auth=auth)}

    @app.get("/schema", response_model=None, responses=described)
    async def schema() -> Response:
        """JSON Schemas of the inputs a run accepts and the outputs it returns."""
        return SafeJSONResponse(schemas)

    @app.get(
        "/health",
        response_model=None,
        responses={200: _ok(Health, "Alive."), **responses(auth=False)},
    )
    async def health() -> Response:
        """Liveness: the process answers."""
        return SafeJSONResponse({"status": "ok"})

    probed: dict[int | str, dict[str, Any]] = {
        200: _ok(Ready, "Ready."),
        503: _ok(NotReady, "Starting or stopping."),
    }

    @app.get("/ready", response_model=None, responses={**probed, **responses(auth=False)})
    async def readiness() -> Response:
        """Readiness: started, not shutting down, and the job table answers."""
        if not ready.is_set():
            return SafeJSONResponse({"status": "not ready"}, 503)
        await asyncio.to_thread(jobs.list, workflow.name, limit=1)
        return SafeJSONResponse({"status": "ready", "workflow": workflow.name})

    text = {"text/plain": {"schema": {"type": "string"}}}
    exposition: dict[int | str, dict[str, Any]] = {
        200: {"description": "Prometheus text exposition.", "content": text}
    }

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={**exposition, **responses(auth=auth)},
    )
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)
