"""The FastAPI application serving one workflow: runs, their status, its schema and metrics.

``POST /runs`` starts a run exactly once and waits up to ``wait_seconds`` for it: 200 with the
result, else 202 with the run's ``status_url`` while the same execution goes on. Runs live in the
job table (:mod:`.jobs`), so ``GET /runs/{id}`` answers after a restart too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from ..engine import InputError, PreparedWorkflow
from .executor import Executor, LocalExecutor
from .jobs import UNFINISHED, JobStore
from .metrics import Metrics
from .schemas import MAX_WAIT_S, RunRequest, io_schemas

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPEN_PATHS", "TOKEN_ENV", "create_app"]

TOKEN_ENV = "CONFIGURABLE_AGENTS_API_TOKEN"
"""When set, every request but :data:`OPEN_PATHS` needs ``Authorization: Bearer <token>``."""

OPEN_PATHS = frozenset({"/health", "/ready"})
"""Paths answered without a token (liveness and readiness probes)."""

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB); larger ones get 413."""

_log = logging.getLogger(__name__)
_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _answer(send: _Send, status: int, detail: str, headers: dict[str, str]) -> None:
    response = JSONResponse({"detail": detail}, status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class _Guard:
    """ASGI middleware: the bearer token (compared in constant time) and the body size limit."""

    def __init__(self, app: Any, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body_bytes

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if self.token is not None and scope["path"] not in OPEN_PATHS:
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
        if prepared.recorder is not None:
            from ..observability.recorder import flush_all

            await asyncio.to_thread(flush_all, shutdown_timeout)

    app = FastAPI(
        title=f"{workflow.name} (configurable-agents)",
        version=workflow.config.flow.version or "0",
        description=workflow.config.flow.description or f"Runs of the workflow {workflow.name}.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.add_middleware(_Guard, token=token, max_body_bytes=max_body_bytes)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; see the server's log"}, 500)

    @app.post("/runs", responses={202: {"description": "Still running; poll `status_url`."}})
    async def start_run(body: RunRequest) -> JSONResponse:
        """Start a run; its result if it ends within ``wait_seconds``, else 202 and its URL."""
        try:
            run_id = await runner.submit(body.inputs, body.tags)
        except InputError as exc:
            return JSONResponse({"detail": _field_errors(exc)}, 422)
        if await runner.wait(run_id, body.wait_seconds):
            return JSONResponse(jobs.get(run_id))
        url, view = f"/runs/{run_id}", jobs.get(run_id) or {}
        return JSONResponse(
            {"run_id": run_id, "status": view.get("status"), "status_url": url},
            202,
            {"Location": url},
        )

    @app.get("/runs/{run_id}")
    async def get_run(
        run_id: str, wait_seconds: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0
    ) -> JSONResponse:
        """A run: status, outputs, state, cost, tokens, trace id, error. ``wait_seconds`` waits
        for a running run to end first."""
        if wait_seconds:
            await runner.wait(run_id, wait_seconds)
        view = jobs.get(run_id)
        if view is None or view["workflow"] != workflow.name:
            return JSONResponse({"detail": f"no run {run_id!r}"}, 404)
        return JSONResponse(view)

    @app.get("/runs")
    async def list_runs(
        status: str | None = None,
        tag: Annotated[
            list[str], Query(description="KEY=VALUE, repeatable: runs with these tags.")
        ] = [],  # noqa: B006
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> JSONResponse:
        """Recent runs of this workflow, newest first."""
        tags = {}
        for pair in tag:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                return JSONResponse({"detail": f"tag {pair!r}: expected KEY=VALUE"}, 422)
            tags[key] = value
        return JSONResponse(
            {"runs": jobs.list(workflow.name, status=status, tags=tags, limit=limit)}
        )

    @app.delete("/runs/{run_id}")
    async def cancel_run(run_id: str) -> JSONResponse:
        """Cancel a queued or running run; its partial state is kept."""
        view = jobs.get(run_id)
        if view is None or view["workflow"] != workflow.name:
            return JSONResponse({"detail": f"no run {run_id!r}"}, 404)
        if view["status"] not in UNFINISHED:
            return JSONResponse({"detail": f"run {run_id} already ended: {view['status']}"}, 409)
        if not await runner.cancel(run_id):
            return JSONResponse({"detail": f"run {run_id} is not run by this server"}, 409)
        return JSONResponse(jobs.get(run_id))

    schemas = io_schemas(workflow)

    @app.get("/schema")
    async def schema() -> dict[str, Any]:
        """JSON Schemas of the inputs a run accepts and the outputs it returns."""
        return schemas

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    async def readiness() -> JSONResponse:
        """Readiness: started, not shutting down, and the job table answers."""
        if not ready.is_set():
            return JSONResponse({"status": "not ready"}, 503)
        jobs.list(workflow.name, limit=1)
        return JSONResponse({"status": "ready", "workflow": workflow.name})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
