"""The request body of ``POST /runs`` and the JSON Schemas of a workflow's inputs and outputs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..config.loader import Workflow
from ..config.state import StateField
from ..engine.run import _outputs
from ..llm.outputs import python_type

__all__ = ["MAX_WAIT_S", "RunRequest", "io_schemas"]

MAX_WAIT_S = 300.0
"""Longest a request may wait for its run before it is answered 202."""


class RunRequest(BaseModel):
    """A run to start."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    inputs: dict[str, Any] = {}
    """Initial values of state fields; see ``GET /schema``."""

    tags: dict[str, str] = {}
    """Labels of the run (``user_id``, ``session_id``, ``environment`` ...)."""

    wait_seconds: float = Field(default=30.0, ge=0, le=MAX_WAIT_S)
    """How long to wait for the result: 200 with it if the run ends in time, else 202 and the
    run goes on (poll ``status_url``)."""


def _model(name: str, fields: dict[str, StateField], required: set[str]) -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    for field_name, spec in fields.items():
        annotation = python_type(spec.type_expr, spec.schema_, f"{name}_{field_name}")
        if field_name in required:
            definitions[field_name] = (annotation, Field(description=spec.description))
        else:
            default = spec.default if name == "inputs" else None
            definitions[field_name] = (
                annotation | None,
                Field(default=default, description=spec.description),
            )
    model = create_model(name, __config__=ConfigDict(extra="forbid"), **definitions)
    return model.model_json_schema()


def io_schemas(workflow: Workflow) -> dict[str, Any]:
    """JSON Schemas of the inputs a run accepts and of the outputs it returns."""
    fields = workflow.fields
    required = {name for name, spec in fields.items() if spec.required}
    written = _outputs(workflow, dict.fromkeys(fields))
    return {
        "workflow": workflow.name,
        "version": workflow.config.flow.version,
        "input": _model("inputs", dict(fields), required),
        "output": _model("outputs", {name: fields[name] for name in written}, set()),
    }
