"""The command line: exit codes, output formats, schema, reference and graph."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from configurable_agents.cli import app
from configurable_agents.config.reference import json_schema_text, markdown_reference

ROOT = Path(__file__).resolve().parent.parent
QUICK_START = ROOT / "examples" / "article_writer.yaml"
runner = CliRunner()

BROKEN = """\
schema_version: "1.0"
flow: {name: broken, versoin: "1"}
nodes:
  - id: a
    prompt: "{topc}"
    outputs: [x]
  - id: b
    prompt: "hi"
    outputs: [y]
edges:
  - {from: START, to: a}
  - {from: a, to: c}
  - {from: b, to: END}
config: {llm: {provider: gemini}}
"""


def test_valid_file_exits_0() -> None:
    result = runner.invoke(app, ["validate", str(QUICK_START)])
    assert result.exit_code == 0
    assert result.output.strip() == f"✓ {QUICK_START}: valid (1 node, 2 edges)"


def test_all_problems_are_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines == [
        f"{path}:2:22: error: flow.versoin: unknown key 'versoin'; expected one of name, "
        "description, version, tags (did you mean 'version'?)",
        f"{path}:5:14: error: nodes[0].prompt: placeholder {{topc}}: no state field 'topc'",
        f"{path}:12:19: error: edges[1].to: unknown node 'c'",
        f"{path}:14:26: error: config.llm.provider: unknown value 'gemini'; expected 'google', "
        "'openai', 'anthropic', 'ollama' or 'mock'",
        f"✗ {path}: 4 errors",
    ]


def test_json_format_is_machine_readable(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["validate", "--format", "json", str(path), str(QUICK_START)])
    assert result.exit_code == 1
    broken, good = json.loads(result.output)
    assert broken["valid"] is False and good["valid"] is True
    assert good["implicit_fields"] == ["article"]
    first = broken["diagnostics"][0]
    assert first == {
        "message": "unknown key 'versoin'; expected one of name, description, version, tags",
        "path": "flow.versoin",
        "file": str(path),
        "line": 2,
        "column": 22,
        "suggestion": "version",
        "severity": "error",
        "code": "unknown_key",
    }


def test_verbose_lists_implicit_fields() -> None:
    result = runner.invoke(app, ["validate", "-v", str(QUICK_START)])
    assert "article: str (declared implicitly)" in result.output
    assert "topic: str (required input)" in result.output


@pytest.mark.parametrize(
    "args",
    [["validate"], ["validate", "--format", "xml", "x.yaml"], ["nope"], ["validate", "--bad"]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 2


def test_schema_command_prints_the_published_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert result.output == json_schema_text()
    assert json.loads(result.output)["additionalProperties"] is False


def test_published_schema_and_reference_are_not_stale() -> None:
    stale = "is stale: regenerate it with `configurable-agents schema"
    assert (ROOT / "docs" / "workflow.schema.json").read_text() == json_schema_text(), stale
    assert (ROOT / "docs" / "CONFIG_REFERENCE.md").read_text() == markdown_reference(), stale


def test_reference_documents_every_key() -> None:
    reference = markdown_reference()
    for key in (
        "condition_field",
        "collect_field",
        "max_cost_usd",
        "redact_pii",
        "sampling_rate",
        "artifact_level",
        "allowed_modules",
        "api_base",
        "schema_version",
        "on_error",
    ):
        assert f"| `{key}` |" in reference


def test_schema_writes_a_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "-o", str(target)])
    assert result.exit_code == 0
    assert target.read_text() == json_schema_text()
    assert [p.name for p in tmp_path.iterdir()] == ["schema.json"]


def test_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "-o", str(tmp_path / "missing" / "s.json")])
    assert result.exit_code == 1
    assert "cannot write" in result.output


def test_graph_prints_mermaid_with_labels() -> None:
    result = runner.invoke(app, ["graph", str(ROOT / "examples" / "routing.yaml")])
    assert result.exit_code == 0
    assert result.output.startswith("flowchart TD\n")
    assert '    n_classify -->|"state.urgency >= 4"| n_escalate' in result.output
    assert '    n_classify -->|"default"| n_general' in result.output
    loop = runner.invoke(app, ["graph", str(ROOT / "examples" / "loop.yaml")]).output
    assert '    n_revise -->|"loop until approved, max 3"| n_revise' in loop
    assert '    n_revise -->|"loop exit"| n_title' in loop
    fan = runner.invoke(app, ["graph", str(ROOT / "examples" / "fan_out.yaml")]).output
    assert '    n_plan ==>|"for each item in sub_questions -> answers"| n_answer_one' in fan


def test_graph_of_an_invalid_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["graph", str(path)])
    assert result.exit_code == 1


def test_console_script_and_module_agree() -> None:
    for command in (["configurable-agents"], [sys.executable, "-m", "configurable_agents"]):
        if command[0] == "configurable-agents":
            command = [str(Path(sys.executable).with_name("configurable-agents"))]
        result = subprocess.run([*command, "--version"], capture_output=True, text=True)
        assert result.returncode == 0
        assert result.stdout.startswith("configurable-agents ")
