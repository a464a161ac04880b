"""What the API reads and answers: the request body of ``POST /runs``, the models of its answers
(for the OpenAPI document) and the JSON Schemas of a workflow's inputs and outputs.

The inputs' schema says exactly what :func:`~configurable_agents.engine.check_inputs` accepts:
the body is validated loosely, then by ``check_inputs``, whose messages name every problem; the
schema documents the same rule.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from ..config.loader import Workflow
from ..config.state import StateField, field_spec
from ..config.types import TypeExpr
from ..engine import outputs_of
from ..engine.records import RunStatus
from ..llm.outputs import python_type
from .jobs import QUEUED, RUNNING

__all__ = [
    "MAX_WAIT_S",
    "Accepted",
    "Error",
    "Health",
    "NotReady",
    "Ready",
    "ResumeRequest",
    "Run",
    "RunList",
    "RunRequest",
    "RunState",
    "Waiting",
    "WorkflowSchemas",
    "inputs_schema",
    "io_schemas",
    "run_request_model",
]

MAX_WAIT_S = 300.0
"""Longest a request may wait for its run before it is answered 202."""

MAX_SESSION_ID = 256
"""Longest ``session_id`` accepted."""

RunState = StrEnum(  # type: ignore[misc]
    "RunState", [(status.upper(), status) for status in (QUEUED, RUNNING, *RunStatus)]
)
"""Where a run is: ``queued``, ``running``, or how it ended (:class:`RunStatus`)."""


def _require_inputs(schema: dict[str, Any]) -> None:
    """``inputs`` is required when the workflow has required inputs (an absent ``inputs`` gets
    422 from ``check_inputs``, naming them)."""
    inputs = schema["properties"]["inputs"]
    if inputs.get("required"):
        inputs.pop("default", None)
        schema["required"] = ["inputs", *schema.get("required", [])]


class RunRequest(BaseModel):
    """A run to start."""

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, json_schema_extra=_require_inputs
    )

    inputs: dict[str, Any] = {}
    """Initial values of state fields; see ``GET /schema``."""

    tags: dict[str, str] = {}
    """Labels of the run (``user_id``, ``session_id``, ``environment`` ...)."""

    wait_seconds: float = Field(default=30.0, ge=0, le=MAX_WAIT_S, allow_inf_nan=False, strict=True)
    """How long to wait for the result: 200 with it if the run ends in time, else 202 and the
    run goes on (poll ``status_url``). A JSON number: not a string, boolean or null."""

    session_id: str | None = Field(default=None, min_length=1, max_length=MAX_SESSION_ID)
    """The conversation the run belongs to: its `scope: session` state fields start from the
    session's last run (inputs win) and are kept for its next one."""

    stream: bool = Field(default=False, strict=True)
    """`true`: answer with the run's events as Server-Sent Events (`text/event-stream`) until
    it ends (`wait_seconds` is not used); see `GET /runs/{run_id}/events`."""


def run_request_model(workflow: Workflow) -> type[RunRequest]:
    """:class:`RunRequest` documenting ``inputs`` as this workflow's (validation stays loose)."""
    documented = Annotated[dict[str, Any], WithJsonSchema(inputs_schema(workflow))]
    description = "Initial values of state fields (also at `GET /schema`)."
    return create_model(
        "RunRequest",
        __base__=RunRequest,
        inputs=(documented, Field(default={}, description=description)),
    )


class ResumeRequest(BaseModel):
    """Another attempt of a run that waits (or did not succeed), from its last checkpoint."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    inputs: dict[str, Any] | None = None
    """What the waiting node asks for: its `outputs` (see the run's `waiting`); none for an
    approval (`interrupt_before`) or a run that failed."""

    wait_seconds: float = Field(default=30.0, ge=0, le=MAX_WAIT_S, allow_inf_nan=False, strict=True)
    """As for `POST /runs`: 200 with the run if it ends (or waits again) in time, else 202."""

    stream: bool = Field(default=False, strict=True)
    """`true`: answer with this attempt's events as Server-Sent Events until it ends."""


class Tokens(BaseModel):
    """Model tokens of a run."""

    input: int
    output: int
    total: int
    cached: int
    reasoning: int


class Waiting(BaseModel):
    """What a waiting run needs from a person before `POST /runs/{run_id}/resume`."""

    node: str
    kind: Literal["input", "approval"]
    prompt: str
    outputs: dict[str, Any] = Field(description="JSON Schema of the `inputs` a resume gives.")
    deadline: float | None = Field(description="When the wait times out (epoch seconds).")
    iteration: int | None
    item_index: int | None
    label: str | None


class Run(BaseModel):
    """A run as the job table keeps it; the summary fields are null until it ends (and while a
    resumed run's next attempt goes on)."""

    run_id: str
    workflow: str
    status: RunState
    created_at: dt.datetime
    finished_at: dt.datetime | None
    inputs: dict[str, Any]
    tags: dict[str, str]
    outputs: dict[str, Any] | None
    state: dict[str, Any] | None
    cost_usd: float | None
    unpriced: bool | None
    tokens: Tokens | None
    duration_s: float | None
    trace_id: str | None
    error: str | None
    session_id: str | None
    attempt: int | None = Field(description="1, then one more at each resume.")
    resumed_from: str | None = Field(description="Trace of the attempt this one resumed.")
    waiting: list[Waiting] | None = Field(description="What a `waiting` run waits for.")


class Accepted(BaseModel):
    """A run still going on: poll ``status_url`` (also in ``Location``)."""

    run_id: str
    status: RunState
    status_url: str


class RunList(BaseModel):
    """Runs, most recent first."""

    runs: list[Run]


class Error(BaseModel):
    """What went wrong, in one line."""

    detail: str


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"]


class Ready(BaseModel):
    """Started, and the job table answers."""

    status: Literal["ready"]
    workflow: str


class NotReady(BaseModel):
    """Starting or shutting down."""

    status: Literal["not ready"]


class WorkflowSchemas(BaseModel):
    """The workflow, its version, and JSON Schemas of its inputs and outputs."""

    workflow: str
    version: str | None
    input: dict[str, Any]
    output: dict[str, Any]


_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]} if schema else schema


def _value_schema(expr: TypeExpr, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The values ``check_value`` accepts for a type (``null`` anywhere inside, as it does)."""
    if expr.kind in _JSON_TYPES:
        return {"type": _JSON_TYPES[expr.kind]}
    if expr.kind == "list":
        items = {"items": _nullable(_value_schema(expr.item, schema))} if expr.args else {}
        return {"type": "array", **items}
    if expr.kind == "dict":
        if not expr.args:
            return {"type": "object"}
        values = _nullable(_value_schema(expr.value, schema))
        keys = {} if expr.args[0].kind in ("str", "any") else {"maxProperties": 0}
        return {"type": "object", "additionalProperties": values, **keys}
    if expr.kind == "object":
        if not schema:
            return {"type": "object"}
        fields = {name: _field_schema(field_spec(entry), False) for name, entry in schema.items()}
        return {"type": "object", "properties": fields, "additionalProperties": False}
    return {}


def _field_schema(spec: StateField, required: bool) -> dict[str, Any]:
    value = _value_schema(spec.type_expr, spec.schema_)
    schema = value if required else _nullable(value)
    if spec.description:
        schema = {**schema, "description": spec.description}
    if spec.default is not None:
        schema = {**schema, "default": spec.default}
    return schema


def inputs_schema(workflow: Workflow) -> dict[str, Any]:
    """JSON Schema of the inputs a run accepts: any state field; required ones present and not
    null, no other names."""
    fields = workflow.fields
    required = [name for name, spec in fields.items() if spec.required]
    properties = {name: _field_schema(spec, name in required) for name, spec in fields.items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _outputs_schema(fields: dict[str, StateField]) -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    for field_name, spec in fields.items():
        annotation = python_type(spec.type_expr, spec.schema_, f"outputs_{field_name}")
        definitions[field_name] = (
            annotation | None,
            Field(default=None, description=spec.description),
        )
    model = create_model("outputs", __config__=ConfigDict(extra="forbid"), **definitions)
    return model.model_json_schema()


def io_schemas(workflow: Workflow) -> dict[str, Any]:
    """JSON Schemas of the inputs a run accepts and of the outputs it returns."""
    fields = workflow.fields
    written = outputs_of(workflow, dict.fromkeys(fields))
    return {
        "workflow": workflow.name,
        "version": workflow.config.flow.version,
        "input": inputs_schema(workflow),
        "output": _outputs_schema({name: fields[name] for name in written}),
    }
