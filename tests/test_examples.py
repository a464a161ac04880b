"""Every shipped example, and our users' quick start exactly as they write it, validate cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from configurable_agents import load_workflow
from configurable_agents.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
IDS = [path.relative_to(ROOT / "examples").as_posix() for path in EXAMPLES]
EVALUATION_EXAMPLE = ROOT / "examples" / "evaluation" / "ticket_triage.yaml"

QUICK_START = """\
schema_version: "1.0"
flow: {name: article_writer, version: "1.0.0"}
config:
  llm: {provider: google, model: gemini-1.5-flash}
  observability:
    mlflow: {enabled: true, tracking_uri: "sqlite:///mlflow.db", async_logging: true}
state:
  fields:
    topic: {type: str, required: true}
nodes:
  - id: write
    prompt: "Write an article about {topic}"
    outputs: [article]
    output_schema:
      type: object
      fields:
        - {name: article, type: str}
edges:
  - {from: START, to: write}
  - {from: write, to: END}
"""


def test_the_required_examples_exist() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"article_writer", "routing", "loop", "fan_out", "nested_output", "approval"} <= names
    assert EVALUATION_EXAMPLE in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_is_valid_without_warnings(path: Path) -> None:
    workflow = load_workflow(path)
    assert workflow.warnings == []
    assert workflow.source == str(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_passes_the_published_json_schema(path: Path) -> None:
    schema = json.loads((ROOT / "docs" / "workflow.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_the_evaluation_example_passes_its_gate_offline() -> None:
    """`eval --llm mock --judge-llm mock` runs the example with no key and no network (and no
    recording: the autouse fixture turns tracing off) and exits 0: the gate reads only the
    scorers the mock's answers pass, while the equals scorers are reported."""
    outcome = CliRunner().invoke(
        app,
        ["eval", str(EVALUATION_EXAMPLE), "--llm", "mock", "--judge-llm", "mock"],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 0, outcome.output
    assert "PASS: pass_if holds: polite >= 0.9 and resolves >= 0.8" in outcome.output
    assert "ticket_triage: 8 row(s) of" in outcome.output
    rows = {
        cells[0]: cells[1:]
        for line in outcome.output.splitlines()
        if line.startswith("│") and (cells := [c.strip() for c in line.strip("│").split("│")])
    }
    evaluation = load_workflow(EVALUATION_EXAMPLE).config.evaluation
    assert evaluation is not None
    assert list(rows) == [scorer.name for scorer in evaluation.scorers]
    # type, mean, passed, failed, skipped, errors
    for gated in ("priority_valid", "reply_fits", "cheap", "fast", "small", "polite"):
        assert rows[gated][1:] == ["1.000", "8", "0", "0", "0"], (gated, rows[gated])
    # 3 rows have no expected_next_step: skipped
    assert rows["resolves"][1:] == ["1.000", "5", "0", "3", "0"]
    assert rows["right_severity"][1] == "0.000"  # "mock severity" is never right


def test_quick_start_validates_as_written(tmp_path: Path) -> None:
    path = tmp_path / "article_writer.yaml"
    path.write_text(QUICK_START)
    workflow = load_workflow(path)
    assert workflow.name == "article_writer"
    assert workflow.implicit_fields == ("article",)
    assert workflow.fields["article"].type == "str"
    mlflow = workflow.config.config.observability.mlflow
    assert mlflow.enabled and mlflow.async_logging
    assert mlflow.tracking_uri == "sqlite:///mlflow.db"


def test_shipped_quick_start_has_the_same_content() -> None:
    shipped = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    assert shipped == yaml.safe_load(QUICK_START)


def test_loading_from_a_mapping_and_json_gives_the_same_workflow(tmp_path: Path) -> None:
    data = yaml.safe_load(QUICK_START)
    path = tmp_path / "article_writer.json"
    path.write_text(json.dumps(data, indent=2))
    from_json = load_workflow(path)
    from_mapping = load_workflow(data)
    assert (
        from_json.config
        == from_mapping.config
        == load_workflow(ROOT / "examples" / "article_writer.yaml").config
    )
