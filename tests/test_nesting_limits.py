"""Conditions, placeholders and types nested past the documented limit get one located error.

Nothing a file can hold makes `validate` or `validate_workflow` raise (RecursionError included):
the limit is :data:`configurable_agents.config.limits.MAX_NESTING`, documented in
docs/WORKFLOW_LANGUAGE.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from configurable_agents import validate_workflow
from configurable_agents.cli import app
from configurable_agents.config.conditions import ConditionError, parse_condition
from configurable_agents.config.limits import MAX_NESTING
from configurable_agents.config.templates import TemplateError, parse_template
from configurable_agents.config.types import TypeSyntaxError, parse_type

BASE = """\
schema_version: "1.0"
flow: {name: nesting}
state:
  fields:
    topic: {type: str, required: true}
    score: {type: int, default: 0}
    done: {type: bool, default: false}
    extra: {type: int, default: 0}
nodes:
  - id: rate
    prompt: "Rate {topic}"
    outputs: [score]
  - id: finish
    prompt: "Finish {topic}"
    outputs: [summary]
edges:
  - {from: START, to: rate}
  - from: rate
    routes:
      - {condition: "CONDITION", to: finish}
      - {condition: default, to: END}
  - {from: finish, to: END}
"""

# shape -> builder of a condition nested n levels deep (parentheses alone add no level, so that
# shape goes past Python's own limit on them instead)
CONDITIONS = {
    "not": lambda n: "not " * (n - 1) + "state.done",
    "parentheses": lambda n: "(" * n * 10 + "state.done" + ")" * n * 10,
    "sign": lambda n: "state.score > " + "-" * (n - 2) + "1",
    "and-or": lambda n: "(state.done and " * (n - 1) + "state.done" + ")" * (n - 1),
    "dotted": lambda n: ".".join(["state", *["score"] * n]) + " > 1",
    "list": lambda n: "state.score in [1, " + "[" * (n - 3) + "1" + "]" * (n - 3) + "]",
    "arithmetic": lambda n: "state.score > " + " + ".join(["1"] * n),
    "calls": lambda n: "f(" * n + ")" * n,
}


def _validate(tmp_path: Path, text: str) -> tuple[object, list]:
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    return validate_workflow(path)


def _with_condition(condition: str) -> str:
    return BASE.replace('"CONDITION"', json.dumps(condition))


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300, 3_000, 20_000])
@pytest.mark.parametrize("shape", sorted(CONDITIONS))
def test_deep_condition_is_one_located_error(tmp_path: Path, shape: str, depth: int) -> None:
    condition = CONDITIONS[shape](depth)
    workflow, diagnostics = _validate(tmp_path, _with_condition(condition))
    assert workflow is None
    (error,) = diagnostics
    assert error.path == "edges[1].routes[0].condition", error.format()[-300:]
    assert (error.line, error.column) == (20, 21), error.format()[-300:]
    assert error.code == "condition"


@pytest.mark.parametrize("shape", ["not", "and-or", "list"])
def test_conditions_within_the_limit_are_fine(tmp_path: Path, shape: str) -> None:
    condition = CONDITIONS[shape](MAX_NESTING)
    workflow, diagnostics = _validate(tmp_path, _with_condition(condition))
    assert workflow is not None, [d.format()[-300:] for d in diagnostics]


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 5_000, 100_000])
def test_parse_condition_raises_only_condition_error(depth: int) -> None:
    for build in CONDITIONS.values():
        with pytest.raises(ConditionError, match=r"nested|parentheses|parts"):
            parse_condition(build(depth))


@pytest.mark.parametrize("parts", [MAX_NESTING + 1, 50_000])
def test_deep_placeholder_is_one_located_error(tmp_path: Path, parts: int) -> None:
    placeholder = "{" + ".".join(["state", *["topic"] * parts]) + "}"
    text = BASE.replace('"Finish {topic}"', f'"Finish {placeholder}"').replace(
        '"CONDITION"', '"state.done"'
    )
    workflow, diagnostics = _validate(tmp_path, text)
    assert workflow is None
    (error,) = diagnostics
    assert error.path == "nodes[1].prompt", error.format()[-300:]
    assert (error.line, error.column) == (14, 21), error.format()[-300:]
    assert f"more than {MAX_NESTING} parts" in error.message
    assert len(error.message) < 300


def test_parse_template_limits_path_parts() -> None:
    ok = "{" + ".".join(["a"] * MAX_NESTING) + "}"
    assert len(parse_template(ok)) == 1
    with pytest.raises(TemplateError, match="parts"):
        parse_template("x {" + ".".join(["a"] * (MAX_NESTING + 1)) + "}")


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 990, 50_000])
@pytest.mark.parametrize("kind", ["list[", "dict[str, "])
def test_deep_type_is_one_located_error(tmp_path: Path, kind: str, depth: int) -> None:
    type_text = kind * depth + "int" + "]" * depth
    text = BASE.replace("extra: {type: int, default: 0}", f'extra: {{type: "{type_text}"}}')
    text = text.replace('"CONDITION"', '"state.done"')
    workflow, diagnostics = _validate(tmp_path, text)
    assert workflow is None
    (error,) = diagnostics
    assert error.path == "state.fields.extra.type", error.format()[-300:]
    assert error.line == 8, error.format()[-300:]
    assert f"deeper than {MAX_NESTING}" in error.message
    assert len(error.message) < 300


def test_parse_type_limits_nesting() -> None:
    ok = "list[" * (MAX_NESTING - 1) + "int" + "]" * (MAX_NESTING - 1)
    assert str(parse_type(ok)) == ok
    with pytest.raises(TypeSyntaxError, match="deeper"):
        parse_type("list[" * MAX_NESTING + "int" + "]" * MAX_NESTING)


def test_cli_reports_deep_nesting_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(_with_condition(CONDITIONS["not"](50_000)), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1
    assert f"{path}:20:21: error: edges[1].routes[0].condition" in result.output
