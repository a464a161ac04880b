"""A run's live events: ``GET /runs/{id}/events``, and the stream ``POST /runs`` and
``POST /runs/{id}/resume`` answer with ``"stream": true``.

Server-Sent Events (``text/event-stream``), one message per event: ``id:`` its number in the run
(1, 2, ... across attempts), ``event:`` its type, ``data:`` the event as JSON. A client that
reconnects with ``Last-Event-ID`` (or ``?last_event_id=``) gets the events after it, so it
misses nothing and gets nothing twice (see :mod:`.events` for how long they are kept).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import WithJsonSchema

from ..engine.events import EVENT_TYPES
from .events import SSE_HEADERS, follow
from .openapi import responses
from .served import Served, ServedDep
from .wire import SafeJSONResponse

__all__ = ["EVENT_STREAM", "MAX_EVENT_ID", "add_event_routes", "event_stream", "run_events"]

MAX_EVENT_ID = 2**53
"""Largest event number a client may give (any JSON number of the kind is exact)."""

_DESCRIPTION = (
    "Server-Sent Events, one per step of the run: `id` (its number in the run, 1, 2, ... "
    "across resumed attempts), `event` (its type: `run_started`, `node_started`, `token`, "
    "`node_finished`, `waiting`, `run_finished`) and `data` (the event as JSON: `type`, "
    "`run_id` and its details). The stream ends after the attempt's `run_finished` (a run that "
    "waits for a person: `waiting`, then `run_finished` with status `waiting`). Lines starting "
    "with `:` are comments (keep-alives)."
)

_EVENT_DATA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
        "run_id": {"type": "string"},
    },
    "required": ["type", "run_id"],
}

EVENT_STREAM: dict[str, Any] = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": _DESCRIPTION,
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "event": {"type": "string", "enum": list(EVENT_TYPES)},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": _EVENT_DATA,
                },
            },
            "required": ["id", "event", "data"],
        }
    }
}
"""The OpenAPI ``content`` of an answer that is a run's event stream (its ``schema`` describes
each event, as OpenAPI 3.1 reads a sequential media type)."""

_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}


def event_stream(served: Served, run_id: str, after: int) -> Response:
    """The run's events numbered above ``after``, live, as a streaming answer."""
    stream = follow(served.runner.events, served.runs, run_id, after)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def run_events(
    run_id: str,
    served: ServedDep,
    last_event_id: Annotated[
        int | None,
        WithJsonSchema(_EVENT_ID),
        Query(ge=0, le=MAX_EVENT_ID, description="Send the events after this number."),
    ] = None,
    last_event_id_header: Annotated[
        int | None,
        WithJsonSchema(_EVENT_ID),
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=MAX_EVENT_ID,
            description="What a reconnecting client sends: the events after it (wins over "
            "`last_event_id`).",
        ),
    ] = None,
) -> Response:
    """The run's events from the start (or after `Last-Event-ID`), live until it ends."""
    view = await served.runs.get(run_id)
    if view is None or view["workflow"] != served.name:
        return SafeJSONResponse({"detail": f"no run {run_id!r}"}, 404)
    after = last_event_id_header if last_event_id_header is not None else last_event_id
    return event_stream(served, run_id, after or 0)


def add_event_routes(app: FastAPI, auth: bool) -> None:
    """Add ``GET /runs/{run_id}/events``, with 401 among its answers when a token is required
    (``auth``)."""
    answers: dict[int | str, dict[str, Any]] = {
        200: {"description": "The run's events.", "content": EVENT_STREAM},
        **responses(404, auth=auth),
    }
    app.add_api_route(
        "/runs/{run_id}/events",
        run_events,
        response_model=None,
        responses=answers,
    )
