"""The JSON Schema of the workflow language and the Markdown config reference, both from the models.

``docs/workflow.schema.json`` and ``docs/CONFIG_REFERENCE.md`` are these functions' output; a test
fails when they are stale. Regenerate with::

    configurable-agents schema -o docs/workflow.schema.json
    configurable-agents schema --format markdown -o docs/CONFIG_REFERENCE.md
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .schema import WorkflowConfig

__all__ = ["json_schema", "json_schema_text", "markdown_reference"]

SCHEMA_ID = "https://configurable-agents.dev/schema/workflow-1.0.json"


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a workflow file."""
    schema = WorkflowConfig.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "configurable-agents workflow",
    }


def json_schema_text() -> str:
    """The JSON Schema as the text of ``docs/workflow.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def markdown_reference() -> str:
    """Every key of the workflow language, section by section, as Markdown."""
    out = [
        "# Workflow configuration reference",
        "",
        "Generated from the models by `configurable-agents schema --format markdown`; do not edit.",
        "Every mapping rejects unknown keys. Types are checked, never coerced.",
        "",
    ]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("(top level)", WorkflowConfig)]
    while queue:
        where, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        out += [f"## `{where}` — {model.__name__}", "", _doc(model), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            key = info.alias or name
            out.append(
                f"| `{key}` | {_type(info.annotation)} | {_default(info)} | "
                f"{_cell(info.description or '')} |"
            )
            prefix = "" if where == "(top level)" else f"{where}."
            for nested in _models(info.annotation):
                queue.append((f"{prefix}{key}", nested))
        out.append("")
    return "\n".join(out)


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.default
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "(see below)"
    return f"`{json.dumps(value)}`"


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _type(tp: Any) -> str:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type(typing.get_args(tp)[0])}"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"mapping {_type(key)} → {_type(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, "any")


def _models(tp: Any) -> list[type[BaseModel]]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models(arg)]
