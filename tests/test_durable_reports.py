"""`report runs --status waiting`: runs paused for a person, until a later attempt resumes them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from configurable_agents import RunStatus, run_workflow
from configurable_agents.cli import app
from configurable_agents.reports import ReportQuery, list_runs


def _workflow(tmp_path: Path) -> Path:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = {
        "schema_version": "1.0",
        "flow": {"name": "approval"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": "draft", "prompt": "Draft about {topic}", "outputs": ["note"]},
            {"id": "check", "type": "human", "prompt": "Send {note}?", "outputs": ["ok"],
             "output_schema": {"type": "bool"}},
        ],
        "edges": [
            {"from": "START", "to": "draft"},
            {"from": "draft", "to": "check"},
            {"from": "check", "to": "END"},
        ],
        "config": {
            "llm": {"provider": "mock"},
            "observability": {
                "mlflow": {"enabled": True, "tracking_uri": uri, "async_logging": False}
            },
        },
    }  # fmt: skip
    path = tmp_path / "approval.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _waiting(uri: str) -> list[str]:
    result = CliRunner().invoke(
        app, ["report", "runs", "--tracking-uri", uri, "--status", "waiting", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    return [run["trace_id"] for run in json.loads(result.output)]


def test_waiting_runs_are_listed_until_resumed(tmp_path: Path) -> None:
    path = _workflow(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    paused = run_workflow(path, {"topic": "bees"}, trace=True)
    done = run_workflow(path, {"topic": "ants"}, trace=True)
    assert paused.status is done.status is RunStatus.WAITING
    finished = run_workflow(path, {"ok": True}, resume=done.run_id, trace=True)
    assert finished.status is RunStatus.SUCCESS
    assert _waiting(uri) == [paused.trace_id]  # the resumed one is no longer waiting
    statuses = {run.trace_id: run.status for run in list_runs(ReportQuery(uri))}
    assert statuses == {
        paused.trace_id: "waiting",
        done.trace_id: "waiting",
        finished.trace_id: "success",
    }
