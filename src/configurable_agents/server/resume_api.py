"""``POST /runs/{id}/resume``: another attempt of a run that waits for a person (or ended without
success), from its last checkpoint (``PreparedWorkflow.aresume``).

The request waits for the engine to take or refuse the attempt (up to :data:`DECIDE_S` seconds,
or ``wait_seconds`` if longer): refused, nothing changed and the answer says why (409, or 422
with the inputs that do not fit the waiting node's outputs, located). Taken, it is answered like
``POST /runs``: 200 with the run if it ends (or waits again) within ``wait_seconds``, else 202;
with ``"stream": true``, this attempt's events.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..engine.durable import ResumeError, ResumeInputError
from .events_api import EVENT_STREAM, event_stream
from .openapi import ok, responses
from .runs_api import TraceParent, answer_run, caller_trace
from .schemas import MAX_WAIT_S, Accepted, ResumeRequest, Run
from .served import ServedDep
from .store import RESUMABLE
from .wire import SafeJSONResponse

__all__ = ["DECIDE_S", "add_resume_routes", "resume_run"]

DECIDE_S = 10.0
"""Seconds a resume waits at least for the engine to take or refuse it (a run waiting for a free
slot, or with ``--queue`` for a free worker, may take longer: then 202, and a refusal leaves the
run as it was)."""

_LOCATION = {"Location": {"description": "`status_url`", "schema": {"type": "string"}}}


def _input_errors(error: ResumeInputError) -> list[dict[str, Any]]:
    """FastAPI-style field errors, located in the body's ``inputs``."""
    located = []
    for problem in error.errors:
        where = ["body", "inputs", *problem.get("loc", [])]
        located.append({"loc": where, "msg": problem.get("msg", ""), "type": "value_error"})
    return located


async def resume_run(
    run_id: str,
    body: ResumeRequest,
    served: ServedDep,
    request: Request,
    traceparent: TraceParent = None,
) -> Response:
    """Continue a run that waits (give what it waits for), or that failed, timed out, went over
    budget or was interrupted, from its last checkpoint."""
    started = time.monotonic()
    view = await served.runs.get(run_id)
    if view is None or view["workflow"] != served.name:
        return SafeJSONResponse({"detail": f"no run {run_id!r}"}, 404)
    if view["status"] not in RESUMABLE:
        detail = f"run {run_id} is {view['status']}: only a run that ended without success resumes"
        return SafeJSONResponse({"detail": detail}, 409)
    after = await served.runner.events.last_id(run_id)
    try:
        await served.runner.resume(
            run_id,
            body.inputs,
            traceparent=caller_trace(request),
            decide_within=min(MAX_WAIT_S, max(DECIDE_S, body.wait_seconds)),
        )
    except ResumeInputError as exc:
        return SafeJSONResponse({"detail": _input_errors(exc)}, 422)
    except ResumeError as exc:
        return SafeJSONResponse({"detail": str(exc)}, 409)
    if body.stream:
        return event_stream(served, run_id, after)
    left = max(0.0, body.wait_seconds - (time.monotonic() - started))
    return await answer_run(served, run_id, left)


def add_resume_routes(app: FastAPI, auth: bool) -> None:
    """Add ``POST /runs/{run_id}/resume``, with 401 among its answers when a token is required
    (``auth``)."""
    answers = {
        200: ok(
            Run,
            "The attempt ended (or waits again) within `wait_seconds`: the run. With `stream`: "
            "this attempt's events.",
            content=EVENT_STREAM,
        ),
        202: ok(Accepted, "Still queued or running; poll `status_url`.", headers=_LOCATION),
        **responses(404, 409, auth=auth, notes={409: _CONFLICT}),
    }
    app.add_api_route(
        "/runs/{run_id}/resume",
        resume_run,
        methods=["POST"],
        response_model=None,
        responses=answers,
    )


_CONFLICT = (
    "The run cannot be resumed: it is queued or running, it succeeded, or there is nothing to "
    "resume from (no checkpoint). Nothing changed."
)
