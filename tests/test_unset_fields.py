"""An optional field with no default that a template may read before anything writes it.

The rule (docs/WORKFLOW_LANGUAGE.md, "Fields without a value"): `validate` warns, located at the
placeholder and naming the node and the field, and at run time the placeholder renders as empty
text, as `null` does; the run never fails with a KeyError.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from configurable_agents import run_workflow, validate_workflow
from configurable_agents.cli import app
from configurable_agents.config.templates import render_template

SWAPPED = """\
schema_version: "1.0"
flow: {name: swapped}
state:
  fields:
    topic: {type: str, required: true}
    notes: {type: str}
nodes:
  - id: first
    prompt: "Write about {topic}, given {notes} and {state.summary}"
    outputs: [draft]
  - id: second
    prompt: "Summarise {draft}"
    outputs: [summary, notes]
edges:
  - {from: START, to: first}
  - {from: first, to: second}
  - {from: second, to: END}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return path


def _unset_warnings(path: Path) -> list:
    workflow, diagnostics = validate_workflow(path)
    assert workflow is not None, [d.format() for d in diagnostics]
    return [d for d in diagnostics if d.code == "unset_field"]


def test_validate_warns_at_each_placeholder_naming_node_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, SWAPPED)
    notes, summary = _unset_warnings(path)
    assert notes.severity == summary.severity == "warning"
    assert notes.path == summary.path == "nodes[0].prompt"
    assert (notes.line, notes.column) == (9, 41), notes.format()
    assert (summary.line, summary.column) == (9, 53), summary.format()
    assert "node 'first'" in notes.message and "'notes'" in notes.message
    assert "node 'first'" in summary.message and "'summary'" in summary.message
    assert "empty text" in notes.message


def test_the_warning_does_not_make_the_file_invalid(tmp_path: Path) -> None:
    path = _write(tmp_path, SWAPPED)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:9:41: warning: nodes[0].prompt:" in result.output


def test_the_run_renders_an_unset_field_as_empty_text(tmp_path: Path) -> None:
    path = _write(tmp_path, SWAPPED)
    result = run_workflow(path, {"topic": "bees"}, llm="mock", trace=False)
    assert result.error is None, result.error
    assert result.status.value == "success"
    assert result.records[0].prompt == "Write about bees, given  and "


def test_an_input_given_for_the_field_is_used(tmp_path: Path) -> None:
    path = _write(tmp_path, SWAPPED)
    result = run_workflow(path, {"topic": "bees", "notes": "short"}, llm="mock", trace=False)
    assert result.records[0].prompt == "Write about bees, given short and "


@pytest.mark.parametrize(
    "change",
    [
        ("    notes: {type: str}", '    notes: {type: str, default: ""}'),
        ("    notes: {type: str}", "    notes: {type: str, required: true}"),
        ("{notes} and {state.summary}", "{topic}"),
    ],
    ids=["default", "required", "not read"],
)
def test_no_warning_when_the_field_always_has_a_value(tmp_path: Path, change: tuple) -> None:
    text = SWAPPED.replace(*change).replace(" and {state.summary}", "")
    assert _unset_warnings(_write(tmp_path, text)) == []


ROUTED = """\
schema_version: "1.0"
flow: {name: routed}
state:
  fields:
    go: {type: bool, default: true}
nodes:
  - id: decide
    prompt: "Decide"
    outputs: [verdict]
  - id: detour
    prompt: "Detour"
    outputs: [extra]
  - id: finish
    prompt: "Use {verdict} and {extra}"
    outputs: [result]
edges:
  - {from: START, to: decide}
  - from: decide
    routes:
      - {condition: "state.go", to: detour}
      - {condition: default, to: finish}
  - {from: detour, to: finish}
  - {from: finish, to: END}
"""


def test_a_field_written_on_one_branch_only_is_warned_about(tmp_path: Path) -> None:
    (warning,) = _unset_warnings(_write(tmp_path, ROUTED))
    assert "'extra'" in warning.message and "node 'finish'" in warning.message
    assert (warning.line, warning.column) == (14, 32)


def test_a_field_written_on_every_path_is_not(tmp_path: Path) -> None:
    text = ROUTED.replace("outputs: [verdict]", "outputs: [verdict, extra]")
    assert _unset_warnings(_write(tmp_path, text)) == []


def test_a_loop_reading_its_own_output_is_warned_about_and_runs(tmp_path: Path) -> None:
    text = """\
schema_version: "1.0"
flow: {name: looping}
state:
  fields:
    done: {type: bool, default: false}
nodes:
  - id: revise
    prompt: "Improve {draft}"
    outputs: [draft, done]
edges:
  - {from: START, to: revise}
  - from: revise
    loop: {condition_field: done, max_iterations: 2}
"""
    path = _write(tmp_path, text)
    (warning,) = _unset_warnings(path)
    assert "node 'revise'" in warning.message and "'draft'" in warning.message
    result = run_workflow(path, llm="mock", trace=False)
    assert result.error is None, result.error
    assert [r.prompt for r in result.records] == ["Improve ", "Improve mock draft"]


def test_a_fan_out_targets_own_output_is_never_written(tmp_path: Path) -> None:
    text = """\
schema_version: "1.0"
flow: {name: fan}
state:
  fields:
    items: {type: "list[str]", default: [a, b]}
nodes:
  - id: plan
    prompt: "Plan"
    outputs: [note]
  - id: each
    prompt: "Do {item}"
    outputs: [answer]
  - id: join
    prompt: "Join {answers} and {answer}"
    outputs: [report]
edges:
  - {from: START, to: plan}
  - from: plan
    parallel: {items_field: items, target_node: each, collect_field: answers}
  - {from: each, to: join}
  - {from: join, to: END}
"""
    path = _write(tmp_path, text)
    (warning,) = _unset_warnings(path)
    assert "node 'join'" in warning.message and "'answer'" in warning.message
    result = run_workflow(path, llm="mock", trace=False)
    assert result.error is None, result.error
    assert result.records[-1].prompt == 'Join ["mock answer", "mock answer"] and '


def test_render_template_renders_a_missing_value_as_empty_text() -> None:
    assert render_template("[{nope}|{state.nope.deeper}]", {}) == "[|]"
