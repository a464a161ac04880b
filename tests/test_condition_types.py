"""A comparison that could never be evaluated at run time is a validation error.

Ordering (``< <= > >=``) works on two numbers or two strings only; ``in`` needs a list or text on
its right, and only text can be looked for in text. Anything else would make the route fail at run
time, so `validate` reports it, located, with the types involved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configurable_agents import run_workflow, validate_workflow
from configurable_agents.config.conditions import ConditionError, parse_condition

BASE = """\
schema_version: "1.0"
flow: {name: compare}
state:
  fields:
    n: {type: int, default: 3}
    x: {type: float, default: 1.5}
    s: {type: str, default: "b"}
    flag: {type: bool, default: false}
    items: {type: "list[int]", default: [1]}
    meta: {type: dict, default: {anything: 1, k: e}}
    profile: {type: object, schema: {age: int, name: str}, default: {age: 1, name: a}}
nodes:
  - id: first
    prompt: "Go"
    outputs: [out]
edges:
  - {from: START, to: first}
  - from: first
    routes:
      - {condition: CONDITION, to: END}
      - {condition: default, to: END}
"""

NEVER_EVALUABLE = [
    "None < state.n",
    "state.n >= null",
    "'a' < 1",
    "state.s < 3",
    "3 > state.s",
    "state.n < state.s",
    "state.flag < true",
    "state.flag > state.n",
    "state.n <= false",
    "state.x > state.flag",
    "true < false",
    "state.items < 3",
    "state.items > state.items",
    "state.meta < 1",
    "state.profile > state.n",
    "[1] < [2]",
    "1 < state.n < 'z'",
    "state.profile.name > 3",
    "state.profile.age < 'x'",
    "5 in state.n",
    "state.s in 7",
    "state.n in state.flag",
    "state.n in 'abc'",
    "null in state.s",
    "state.items in state.s",
    "1 not in 2",
]

EVALUABLE = [
    "state.n < 3.5",
    "state.x >= state.n",
    "state.s < 'c'",
    "1 < state.n <= 7",
    "state.n in [1, 2]",
    "'a' in state.s",
    "state.s in ['a', 'b']",
    "state.s in state.s",
    "1 in state.items",
    "state.meta.anything < 3",
    "state.meta.k in 'text'",
    "state.profile.age > 0",
    "state.n == null",
    "'k' in state.meta",
    "state.n in null",
]


def _validate(tmp_path: Path, condition: str) -> tuple[object, list]:
    path = tmp_path / "w.yaml"
    path.write_text(BASE.replace("CONDITION", json.dumps(condition)))
    return validate_workflow(path)


@pytest.mark.parametrize("condition", NEVER_EVALUABLE)
def test_comparison_that_cannot_be_evaluated_is_an_error(tmp_path: Path, condition: str) -> None:
    workflow, diagnostics = _validate(tmp_path, condition)
    assert workflow is None
    (error,) = diagnostics
    assert error.path == "edges[1].routes[0].condition"
    assert (error.line, error.column) == (20, 21), error.format()
    assert "can never be evaluated" in error.message, error.format()
    assert error.code == "condition"


@pytest.mark.parametrize("condition", EVALUABLE)
def test_comparisons_that_can_be_evaluated_stay_valid(tmp_path: Path, condition: str) -> None:
    workflow, diagnostics = _validate(tmp_path, condition)
    assert workflow is not None, [d.format() for d in diagnostics]


@pytest.mark.parametrize("condition", EVALUABLE)
def test_valid_comparisons_run(tmp_path: Path, condition: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(BASE.replace("CONDITION", json.dumps(condition)))
    result = run_workflow(path, llm="mock", trace=False)
    assert result.error is None, result.error


@pytest.mark.parametrize("condition", ["None < 3", "'a' < 1", "true < 2", "[1] < 2", "1 in 2"])
def test_evaluating_literals_that_cannot_be_compared_raises_condition_error(
    condition: str,
) -> None:
    with pytest.raises(ConditionError):
        parse_condition(condition).evaluate({})
