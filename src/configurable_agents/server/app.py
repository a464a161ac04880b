"""The FastAPI application serving one workflow: runs, their status, live events and resumption,
its schema, metrics and costs.

The handlers are module functions, each in the module of its resource (:mod:`.runs_api`,
:mod:`.events_api`, :mod:`.resume_api`, :mod:`.info_api`, :mod:`.costs`), given the served
workflow (:class:`~.served.Served`) as a dependency; none calls a store on the event loop. Runs
live in a :class:`~.store.RunStore` (the job table, :mod:`.jobs`, or the queue's Redis), so
``GET /runs/{id}`` answers after a restart too.

Every answer is JSON (``/metrics`` is text) and in the OpenAPI document with its model: request
bodies are parsed strictly (:mod:`.wire`), the token and body limit are checked first
(:mod:`.guard`), and the document names every status (:mod:`.openapi`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from ..config.loader import Workflow
from ..engine import PreparedWorkflow
from ..environment import TOKEN_ENV
from ..evaluation.online import OnlineEvaluator
from ..observability.prometheus import Metrics
from ..observability.recorder import tracking_uri
from .costs import add_cost_routes
from .events_api import add_event_routes
from .executor import Executor, LocalExecutor
from .guard import Guard
from .info_api import add_info_routes
from .openapi import finish_document
from .recording import per_request_runs
from .resume_api import add_resume_routes
from .runs_api import add_run_routes
from .schemas import io_schemas, run_request_model
from .served import Served
from .store import AsyncRuns, RunStore
from .wire import MAX_JSON_DEPTH, SafeJSONResponse, StrictJSONRoute, http_error, validation_error

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPEN_PATHS", "TOKEN_ENV", "create_app"]

OPEN_PATHS = frozenset({"/health", "/ready"})
"""Paths answered without a token (liveness and readiness probes)."""

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB); larger ones get 413."""

_log = logging.getLogger(__name__)

_CONDUCT = (
    "Answers are JSON (`/metrics` is Prometheus text, event streams are `text/event-stream`). "
    "Request bodies must be strict JSON "
    f"(UTF-8, no NaN or Infinity, no lone surrogates, nested at most {MAX_JSON_DEPTH} deep), "
    "else 422. A method a path does not serve gets 405 with `Allow`. `POST /runs` and resume "
    "honour a W3C `traceparent` header (an invalid one is ignored)."
)


def create_app(
    prepared: PreparedWorkflow,
    *,
    jobs: RunStore,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    shutdown_timeout: float = 10.0,
    max_runs: int | None = None,
    executor: Executor | None = None,
) -> FastAPI:
    """The API of one prepared workflow.

    Each request is recorded as a trace; an MLflow run too only with the workflow's
    ``observability.mlflow.request_runs`` (:func:`~.recording.per_request_runs`).

    Args:
        prepared: The workflow, compiled once for every run.
        jobs: Where runs are kept; at start-up, runs no process will end are marked failed.
        token: Bearer token every request but ``/health`` and ``/ready`` must carry.
        max_body_bytes: Larger request bodies get 413.
        shutdown_timeout: At shutdown, seconds running runs may take to finish before they
            are cancelled (then spooled traces get as long again to be written).
        max_runs: Most runs in progress at once; more wait ``queued`` (default: no limit).
        executor: Runs the runs (default: in this process, :class:`LocalExecutor`).
    """
    workflow = prepared.workflow
    per_request_runs(prepared)
    metrics = Metrics.for_workflow(prepared)
    online = OnlineEvaluator.attach(prepared, metrics.registry)
    served = Served(
        workflow=workflow,
        runner=executor or LocalExecutor(prepared, jobs, metrics, max_runs),
        runs=AsyncRuns(jobs),
        metrics=metrics,
        schemas=io_schemas(workflow),
        costs_store=tracking_uri(workflow.config.config.observability.mlflow, os.environ),
    )
    auth = bool(token)
    app = FastAPI(
        title=f"{workflow.name} (configurable-agents)",
        version=workflow.config.flow.version or "0",
        description=_description(workflow, auth),
        lifespan=_lifespan(prepared, served, shutdown_timeout, online),
        default_response_class=SafeJSONResponse,
    )
    app.router.route_class = StrictJSONRoute
    app.state.served = served
    app.state.metrics = metrics
    app.add_middleware(Guard, token=token, max_body_bytes=max_body_bytes, open_paths=OPEN_PATHS)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, _internal_error)
    routes = (add_run_routes, add_event_routes, add_resume_routes, add_info_routes, add_cost_routes)
    for add_routes in routes:
        add_routes(app, auth)
    finish_document(app, auth, OPEN_PATHS, {"RunRequest": run_request_model(workflow)})
    return app


def _lifespan(
    prepared: PreparedWorkflow,
    served: Served,
    shutdown_timeout: float,
    online: OnlineEvaluator | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up (runs no process will end are marked failed) and shutdown (running runs get
    ``shutdown_timeout`` seconds, online scoring as long, then traces as long to be written)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        interrupted = await served.runs.recover()
        if interrupted:
            _log.warning("%d run(s) interrupted by a previous stop are marked failed", interrupted)
        served.ready.set()
        yield
        served.ready.clear()
        await served.runner.shutdown(shutdown_timeout)
        if online is not None:
            await asyncio.to_thread(online.wait, shutdown_timeout)
        from ..observability.recorder import Recorder, flush_all

        if prepared.observer(Recorder) is not None:
            await asyncio.to_thread(flush_all, shutdown_timeout)

    return lifespan


async def _internal_error(request: Request, exc: Exception) -> Response:
    """500 without details (they are in the log)."""
    _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return SafeJSONResponse({"detail": "internal error; see the server's log"}, 500)


def _description(workflow: Workflow, auth: bool) -> str:
    first = workflow.config.flow.description or f"Runs of the workflow {workflow.name}."
    token = (
        "Every operation but `/health` and `/ready` needs `Authorization: Bearer <token>`."
        if auth
        else ""
    )
    return f"{first}\n\n{_CONDUCT} {token}".rstrip()
