"""Pydantic models for node outputs, generated from the workflow's types.

The model a node must fill is exposed to the LLM as the `final_answer` tool; its validation errors
are fed back to the model when it answers with the wrong shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..config.loader import Workflow
from ..config.schema import Node
from ..config.state import StateField, field_spec
from ..config.types import TypeExpr

__all__ = ["FINAL_ANSWER", "output_model", "python_type"]

FINAL_ANSWER = "final_answer"
"""Name of the tool through which the model gives a node's structured output."""

_SCALARS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


def python_type(expr: TypeExpr, schema: dict[str, Any] | None, name: str) -> Any:
    """The Python/pydantic type for a workflow type (``object`` becomes a nested model)."""
    if expr.kind in _SCALARS:
        return _SCALARS[expr.kind]
    if expr.kind == "list":
        return list[python_type(expr.item, schema, name)] if expr.args else list[Any]  # type: ignore[misc]
    if expr.kind == "dict":
        if not expr.args:
            return dict[str, Any]
        key = python_type(expr.args[0], None, name)
        return dict[key, python_type(expr.args[1], schema, name)]  # type: ignore[misc,valid-type]
    if expr.kind == "object" and schema:
        return _object_model(schema, name)
    return Any


def _object_model(schema: dict[str, Any], name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for key, entry in schema.items():
        spec = field_spec(entry)
        fields[key] = _field(spec, f"{name}_{key}")
    return create_model(name, __base__=_Output, **fields)


def _field(spec: StateField, name: str) -> tuple[Any, Any]:
    annotation = python_type(spec.type_expr, spec.schema_, name)
    return annotation, Field(description=spec.description)


def output_model(workflow: Workflow, node: Node) -> type[BaseModel]:
    """The model of a node's reply: one field per output, typed as the workflow declares."""
    fields: dict[str, Any] = {}
    by_name = {}
    schema = node.output_schema
    if schema is not None and schema.type == "object":
        by_name = {f.name: f for f in schema.fields or []}
    for name in node.outputs:
        if name in by_name:
            out = by_name[name]
            spec = StateField.model_construct(
                type=out.type, description=out.description, schema_=out.schema_
            )
        elif schema is not None and schema.type != "object":
            spec = StateField(type=schema.type, description=schema.description)
        else:
            spec = workflow.fields[name]
        fields[name] = _field(spec, f"{node.id}_{name}")
    model = create_model(FINAL_ANSWER, __base__=_Output, **fields)
    model.__doc__ = node.description or f"The result of step {node.id!r}."
    return model
