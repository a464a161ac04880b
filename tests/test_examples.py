"""Every shipped example, and our users' quick start exactly as they write it, validate cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from configurable_agents import load_workflow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

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
    assert {"article_writer", "routing", "loop", "fan_out", "nested_output"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_valid_without_warnings(path: Path) -> None:
    workflow = load_workflow(path)
    assert workflow.warnings == []
    assert workflow.source == str(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_the_published_json_schema(path: Path) -> None:
    schema = json.loads((ROOT / "docs" / "workflow.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


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
