"""The runs of the served workflow: ``POST /runs``, ``GET /runs/{id}``, ``GET /runs`` and
``DELETE /runs/{id}``.

``POST /runs`` starts a run exactly once and waits up to ``wait_seconds`` for it: 200 with the
result, else 202 with the run's ``status_url`` while the same execution goes on; with
``"stream": true`` it answers the run's events instead (:mod:`.events_api`). A W3C
``traceparent`` header makes the run's trace continue the caller's. Runs are read from the
executor's store in a thread (:class:`~.store.AsyncRuns`), never on the event loop.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import Response
from pydantic import StringConstraints

from ..engine import InputError
from .events_api import EVENT_STREAM, event_stream
from .openapi import ok, responses
from .schemas import MAX_WAIT_S, Accepted, Run, RunList, RunRequest, RunState
from .served import Served, ServedDep
from .store import UNFINISHED
from .traceparent import TRACEPARENT, parse_traceparent
from .wire import SafeJSONResponse

__all__ = [
    "TraceParent",
    "add_run_routes",
    "answer_run",
    "caller_trace",
    "cancel_run",
    "get_run",
    "list_runs",
    "start_run",
]

TraceParent = Annotated[
    str | None,
    Header(
        description="W3C Trace Context: the run's trace continues the caller's. An invalid "
        "value is ignored (a new trace), never refused."
    ),
]
"""The ``traceparent`` header, documented (the handler reads every value it was sent)."""

_Tag = Annotated[str, StringConstraints(pattern=r"^[^=]+=")]
"""A ``tag`` query value: ``KEY=VALUE``, the key not empty."""

_Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)]

_LOCATION = {"Location": {"description": "`status_url`", "schema": {"type": "string"}}}


def _field_errors(error: InputError) -> list[dict[str, Any]]:
    """FastAPI-style field errors, one per problem, located at the input it names."""
    errors = []
    for problem in error.problems:
        name = re.search(r"'([^']+)'", problem)
        location = ["body", "inputs", name.group(1)] if name else ["body", "inputs"]
        errors.append({"loc": location, "msg": problem, "type": "value_error"})
    return errors


def _no_run(run_id: str) -> Response:
    return SafeJSONResponse({"detail": f"no run {run_id!r}"}, 404)


def caller_trace(request: Request) -> str | None:
    """The request's valid ``traceparent``, or ``None`` (absent, invalid or repeated)."""
    return parse_traceparent(request.headers.getlist(TRACEPARENT))


async def answer_run(served: Served, run_id: str, wait_seconds: float) -> Response:
    """200 with the run if it ends within ``wait_seconds``, else 202 with its URL."""
    ended = await served.runner.wait(run_id, wait_seconds)
    view = await served.runs.get(run_id)
    if ended:
        return SafeJSONResponse(view)
    url = f"/runs/{run_id}"
    accepted = {"run_id": run_id, "status": (view or {}).get("status"), "status_url": url}
    return SafeJSONResponse(accepted, 202, {"Location": url})


async def start_run(
    body: RunRequest, served: ServedDep, request: Request, traceparent: TraceParent = None
) -> Response:
    """Start a run; its result if it ends within ``wait_seconds``, else 202 and its URL; with
    `stream`, its events as they come."""
    try:
        run_id = await served.runner.submit(
            body.inputs,
            body.tags,
            session_id=body.session_id,
            traceparent=caller_trace(request),
        )
    except InputError as exc:
        return SafeJSONResponse({"detail": _field_errors(exc)}, 422)
    if body.stream:
        return event_stream(served, run_id, 0)
    return await answer_run(served, run_id, body.wait_seconds)


async def get_run(run_id: str, served: ServedDep, wait_seconds: _Wait = 0.0) -> Response:
    """A run: status, outputs, state, cost, tokens, trace id, error. ``wait_seconds`` waits
    for a running run to end first."""
    if wait_seconds:
        await served.runner.wait(run_id, wait_seconds)
    view = await served.runs.get(run_id)
    if view is None or view["workflow"] != served.name:
        return _no_run(run_id)
    return SafeJSONResponse(view)


async def list_runs(
    served: ServedDep,
    status: Annotated[
        RunState | None, Query(description="Only runs of this status (`waiting`: runs to resume).")
    ] = None,
    tag: Annotated[
        list[_Tag], Query(description="`KEY=VALUE`, repeatable: runs with all these tags.")
    ] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Recent runs of this workflow, newest first."""
    tags = dict(pair.split("=", 1) for pair in tag)
    state = None if status is None else status.value
    found = await served.runs.list(served.name, status=state, tags=tags, limit=limit)
    return SafeJSONResponse({"runs": found})


async def cancel_run(run_id: str, served: ServedDep) -> Response:
    """Cancel a queued or running run; its partial state is kept."""
    view = await served.runs.get(run_id)
    if view is None or view["workflow"] != served.name:
        return _no_run(run_id)
    if view["status"] not in UNFINISHED:
        return SafeJSONResponse({"detail": f"run {run_id} already ended: {view['status']}"}, 409)
    if not await served.runner.cancel(run_id):
        return SafeJSONResponse({"detail": f"run {run_id} is not run by this server"}, 409)
    return SafeJSONResponse(await served.runs.get(run_id))


def add_run_routes(app: FastAPI, auth: bool) -> None:
    """Add the runs' operations to ``app``, with 401 among their answers when a token is required
    (``auth``)."""
    started = {
        200: ok(
            Run,
            "The run ended within `wait_seconds`: its result (any status, `waiting` included). "
            "With `stream`: its events (see `GET /runs/{run_id}/events`).",
            content=EVENT_STREAM,
        ),
        202: ok(Accepted, "Still queued or running; poll `status_url`.", headers=_LOCATION),
        **responses(auth=auth),
    }
    app.add_api_route("/runs", start_run, methods=["POST"], response_model=None, responses=started)
    one = {200: ok(Run, "The run."), **responses(404, auth=auth)}
    app.add_api_route("/runs/{run_id}", get_run, response_model=None, responses=one)
    many = {200: ok(RunList, "Runs, most recent first."), **responses(auth=auth)}
    app.add_api_route("/runs", list_runs, response_model=None, responses=many)
    cancelled = {200: ok(Run, "The run, now cancelled."), **responses(404, 409, auth=auth)}
    app.add_api_route(
        "/runs/{run_id}",
        cancel_run,
        methods=["DELETE"],
        response_model=None,
        responses=cancelled,
    )
