"""Which served runs become MLflow runs: `serve` records each request as a trace only, unless the
workflow sets `observability.mlflow.request_runs: true` (needs the `request_runs` field of
`MlflowConfig`); recorded for real in a SQLite store and read back with MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from configurable_agents import prepare_workflow
from configurable_agents.observability.recorder import Recorder
from configurable_agents.server.app import create_app
from configurable_agents.server.jobs import JobStore
from configurable_agents.server.recording import per_request_runs


def _workflow(tmp: Path, **mlflow: Any) -> Path:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "served"},
        "config": {
            "observability": {
                "mlflow": {
                    "enabled": True,
                    "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
                    "async_logging": False,
                    **mlflow,
                }
            }
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [{"id": "write", "prompt": "About {topic}", "outputs": ["text"]}],
        "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
    }
    path = tmp / "served.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _recorder(prepared: Any) -> Recorder:
    recorder = prepared.observer(Recorder)
    assert recorder is not None
    return recorder


@pytest.mark.parametrize("asked", [None, False, True], ids=["default", "off", "on"])
def test_request_runs_sets_whether_each_run_gets_an_mlflow_run(
    tmp_path: Path, asked: bool | None
) -> None:
    extra = {} if asked is None else {"request_runs": asked}
    prepared = prepare_workflow(_workflow(tmp_path, **extra), llm="mock", trace=True)
    assert _recorder(prepared).run_records  # `run` and the Python API: always a run
    per_request_runs(prepared)
    assert _recorder(prepared).run_records is bool(asked)


def test_an_untraced_workflow_is_left_alone(tmp_path: Path) -> None:
    prepared = prepare_workflow(_workflow(tmp_path), llm="mock", trace=False)
    per_request_runs(prepared)
    assert prepared.observer(Recorder) is None


@pytest.mark.parametrize("request_runs", [False, True], ids=["traces-only", "request-runs"])
def test_served_requests_are_traces_and_runs_only_when_asked(
    tmp_path: Path, request_runs: bool
) -> None:
    from mlflow.tracking import MlflowClient

    workflow = _workflow(tmp_path, request_runs=request_runs)
    prepared = prepare_workflow(workflow, llm="mock", trace=True)
    with TestClient(create_app(prepared, jobs=JobStore(tmp_path / "runs.db"))) as client:
        runs = [client.post("/runs", json={"inputs": {"topic": t}}).json() for t in "ab"]
    assert [run["status"] for run in runs] == ["success", "success"]
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("configurable_agents")
    assert experiment is not None
    traces = store.search_traces(locations=[experiment.experiment_id], include_spans=False)
    assert {trace.info.trace_id for trace in traces} == {run["trace_id"] for run in runs}
    recorded = store.search_runs([experiment.experiment_id])
    assert len(recorded) == (2 if request_runs else 0)
