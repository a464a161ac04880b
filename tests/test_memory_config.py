"""`memory` as the agent tool this one replaces wrote it: loaded unchanged, mapped onto
session-scoped state (`config.memory.session_fields`), its unmappable parts located errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import load_workflow, validate_workflow
from configurable_agents.config.memory import memory_fields, session_fields

WORKFLOW = """\
schema_version: "1.0"
flow: {name: chat}
config: {memory: @MEMORY@}
state:
  fields:
    question: {type: str, required: true}
    notes: {type: str, default: "", scope: session}
    items: {type: "list[str]", default: []}
nodes:
  - id: answer
    prompt: "Answer {question} knowing {state.notes} and {state.history}"
    outputs: [reply, history]
    memory: @ANSWER@
  - id: split
    prompt: "Split {reply} into points"
    outputs: [items]
  - id: point
    prompt: "Expand {item}"
    outputs: [expanded]
    memory: @POINT@
edges:
  - {from: START, to: answer}
  - {from: answer, to: split}
  - from: split
    parallel: {items_field: items, target_node: point, collect_field: points}
  - {from: point, to: END}
"""


def _write(tmp_path: Path, memory: Any = None, answer: Any = None, point: Any = None) -> Path:
    """The workflow with these `memory` mappings (None: the key is not written; a comment keeps
    the lines where they are)."""
    text = WORKFLOW
    for mark, value in (("@MEMORY@", memory), ("@ANSWER@", answer), ("@POINT@", point)):
        line = next(line for line in text.splitlines(keepends=True) if mark in line)
        flow = yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
        text = text.replace(line, "# -\n" if value is None else line.replace(mark, flow))
    path = tmp_path / "chat.yaml"
    path.write_text(text)
    return path


def _errors(path: Path) -> list[Any]:
    workflow, diagnostics = validate_workflow(path)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert workflow is None or not errors
    return errors


@pytest.mark.parametrize(
    ("memory", "answer", "point", "expected"),
    [
        # no memory: the fields written `scope: session` only
        (None, None, None, {"notes"}),
        ({"enabled": False, "default_scope": "workflow"}, None, None, {"notes"}),
        # every node has memory: what each writes (a fan-out target: what collects its results)
        ({"enabled": True}, None, None, {"notes", "reply", "history", "items", "points"}),
        ({"enabled": True, "default_scope": "node"}, None, None,
         {"notes", "reply", "history", "items", "points"}),
        # a node's own `enabled` wins, either way
        ({"enabled": True}, {"enabled": False}, {"enabled": False}, {"notes", "items"}),
        ({"enabled": False}, {"enabled": True, "scope": "node"}, None,
         {"notes", "reply", "history"}),
        (None, {"enabled": True, "scope": "workflow"}, {"enabled": True},
         {"notes", "reply", "history", "points"}),
    ],
)  # fmt: skip
def test_memory_files_load_and_map_onto_session_fields(
    tmp_path: Path, memory: Any, answer: Any, point: Any, expected: set[str]
) -> None:
    path = _write(tmp_path, memory, answer, point)
    assert _errors(path) == []
    workflow = load_workflow(path)
    assert session_fields(workflow.config) == expected
    assert set(memory_fields(workflow.config)) == expected - {"notes"}


def _one_error(path: Path) -> Any:
    errors = _errors(path)
    assert len(errors) == 1, "\n".join(e.format() for e in errors)
    return errors[0]


def test_scope_agent_has_no_equivalent_and_says_what_to_write(tmp_path: Path) -> None:
    error = _one_error(_write(tmp_path, None, {"enabled": True, "scope": "agent"}))
    assert (error.path, error.line) == ("nodes[0].memory.scope", 13)
    assert "scope 'agent'" in error.message and "`scope: session`" in error.message
    assert "state.fields" in error.message

    error = _one_error(_write(tmp_path, {"enabled": True, "default_scope": "agent"}))
    assert (error.path, error.line) == ("config.memory.default_scope", 3)
    assert "`scope: session`" in error.message


@pytest.mark.parametrize(
    ("memory", "answer", "path", "line", "suggestion"),
    [
        (None, {"enabled": True, "max_messages": 20}, "nodes[0].memory.max_messages", 13, None),
        (None, {"enabled": True, "scop": "node"}, "nodes[0].memory.scop", 13, "scope"),
        ({"enabled": True, "provider": "redis"}, None, "config.memory.provider", 3, None),
        ({"enable": True}, None, "config.memory.enable", 3, "enabled"),
    ],
)
def test_any_other_memory_key_is_a_located_error_naming_the_replacement(
    tmp_path: Path, memory: Any, answer: Any, path: str, line: int, suggestion: str | None
) -> None:
    error = _one_error(_write(tmp_path, memory, answer))
    assert (error.path, error.line, error.suggestion) == (path, line, suggestion)
    assert "`scope: session`" in error.message and "state.fields" in error.message
    assert "only enabled and" in error.message


def test_unknown_scope_values_are_errors(tmp_path: Path) -> None:
    error = _one_error(_write(tmp_path, None, {"scope": "session"}))
    assert error.path == "nodes[0].memory.scope"
    assert "unknown value 'session'" in error.message


def test_a_field_memory_keeps_cannot_also_be_written_scope_run(tmp_path: Path) -> None:
    path = _write(tmp_path, None, {"enabled": True})
    text = path.read_text().replace("default: []}", "default: [], scope: run}")
    path.write_text(text.replace("outputs: [reply, history]", "outputs: [reply, history, items]"))
    error = _one_error(path)
    assert (error.path, error.line) == ("state.fields.items.scope", 8)
    assert "node 'answer' has memory" in error.message


def test_a_nodes_memory_left_off_by_the_workflow_setting_is_a_warning(tmp_path: Path) -> None:
    workflow, diagnostics = validate_workflow(_write(tmp_path, None, {"scope": "node"}))
    assert workflow is not None
    (warning,) = [d for d in diagnostics if "memory" in d.path]
    assert warning.severity == "warning" and warning.path == "nodes[0].memory"
    assert "`enabled: true`" in warning.message
    assert session_fields(workflow.config) == {"notes"}
