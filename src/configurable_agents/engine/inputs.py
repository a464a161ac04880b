"""Workflow inputs: checked against the state schema, and coerced from command-line text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..config.diagnostics import closest
from ..config.loader import Workflow
from ..config.state import StateField, check_value

__all__ = ["InputError", "check_inputs", "coerce_text"]

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class InputError(ValueError):
    """Inputs that do not fit the workflow; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def coerce_text(spec: StateField, raw: str) -> Any:
    """Turn command-line text into a value of the field's type (JSON for lists and objects).

    Raises:
        ValueError: the text is not a value of that type.
    """
    kind = spec.type_expr.kind
    if kind == "str":
        return raw
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        if raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {raw!r}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected JSON for a {spec.type}: {exc.msg}") from None


def check_inputs(workflow: Workflow, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The initial state: defaults, overlaid with the inputs.

    Raises:
        InputError: unknown input names (with a suggestion), missing required inputs, or values
            of the wrong type — all of them at once.
    """
    problems: list[str] = []
    state: dict[str, Any] = {}
    for name, spec in workflow.fields.items():
        if spec.default is not None:
            state[name] = json.loads(json.dumps(spec.default))
    for name, value in inputs.items():
        given = workflow.fields.get(name)
        if given is None:
            guess = closest(name, workflow.fields)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            problems.append(f"unknown input {name!r}{hint}")
            continue
        problem = check_value(given, value)
        if problem:
            problems.append(f"input {name!r}: {problem}")
            continue
        state[name] = value
    for name, spec in workflow.fields.items():
        if spec.required and inputs.get(name) is None:
            problems.append(f"missing required input {name!r} ({spec.type})")
    if problems:
        raise InputError(problems)
    return state
