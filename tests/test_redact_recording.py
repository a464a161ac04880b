"""Redaction where runs are recorded: MLflow run tags, trace tags, a batch's run, span statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import load_workflow, run_workflow
from configurable_agents.config.settings import MlflowConfig
from configurable_agents.observability.recorder import Recorder

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-live-0123456789abcdef0123"


class _Spool:
    """Keeps what the recorder spools, for the test to read; nothing is written to MLflow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.payloads: list[dict[str, Any]] = []

    def put(self, destination: str, experiment: str, payload: dict[str, Any]) -> int:
        self.payloads.append(json.loads(json.dumps(payload, default=str)))
        return len(self.payloads)

    def claim(self, limit: int = 200, destination: str | None = None) -> list[Any]:
        return []


def _workflow(tmp_path: Path, stub: StubLLM, **mlflow: Any) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    data["config"] = {
        "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
        "observability": {
            "mlflow": {
                "enabled": True,
                "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "async_logging": False,
                **mlflow,
            }
        },
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.chdir(tmp_path)


def test_run_tags_and_trace_tags_are_masked_in_the_store(
    tmp_path: Path, stub_llm: StubLLM, store: None
) -> None:
    from mlflow.tracking import MlflowClient

    path = _workflow(tmp_path, stub_llm, redact_pii=True, tags={"owner": "bob@example.com"})
    tags = {"customer": "ada@example.com", "card": "4111 1111 1111 1111", "key": SECRET}
    result = run_workflow(path, {"topic": "tides"}, tags=tags, env={"OPENAI_API_KEY": SECRET})
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    trace_tags = client.get_trace(result.trace_id).info.tags
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    (run,) = client.search_runs([experiment])
    for stored in (trace_tags, run.data.tags):
        text = json.dumps(stored)
        for value in ("ada@example.com", "bob@example.com", "4111 1111 1111 1111", SECRET):
            assert value not in text, stored
    assert run.data.tags["customer"] == trace_tags["customer"] == "[EMAIL]"
    assert run.data.tags["owner"] == "[EMAIL]"


def _recorder(tmp_path: Path, **config: Any) -> tuple[Recorder, _Spool]:
    spool = _Spool(tmp_path / "spool.db")
    mlflow = MlflowConfig(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", async_logging=False, **config
    )
    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    env = {"OPENAI_API_KEY": SECRET}
    return Recorder(workflow, mlflow, env=env, spool=spool), spool  # type: ignore[arg-type]


def test_env_secrets_leave_run_tags_even_without_redact_pii(tmp_path: Path) -> None:
    recorder, spool = _recorder(tmp_path, tags={"deployed_with": SECRET})
    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    result = run_workflow(workflow, {"topic": "x"}, llm="mock", tags={"k": SECRET}, env={})
    recorder.record(result)
    (payload,) = spool.payloads
    assert SECRET not in json.dumps(payload["run"]["tags"])
    assert SECRET not in json.dumps(payload["spans"])


def test_batch_run_tags_and_params_are_masked(tmp_path: Path) -> None:
    recorder, spool = _recorder(tmp_path, redact_pii=True)
    run = {
        "name": "batch",
        "start_ms": 0,
        "end_ms": 1,
        "status": "FINISHED",
        "params": {"inputs_file": "/data/ada@example.com.csv"},
        "metrics": {},
        "tags": {"requested_by": "ada@example.com", "token": SECRET},
        "artifacts": {},
    }
    recorder.record_run(run, [])
    (payload,) = spool.payloads
    assert "ada@example.com" not in json.dumps(payload["run"])
    assert SECRET not in json.dumps(payload["run"])


def test_a_failed_span_s_status_message_is_scrubbed(tmp_path: Path, stub_llm: StubLLM) -> None:
    message = f"Incorrect API key provided: {SECRET}; contact ada@example.com"
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    stub_llm.responder = lambda request: Reply.error(401, body=body)
    recorder, spool = _recorder(tmp_path, redact_pii=True)
    path = _workflow(tmp_path, stub_llm)
    result = run_workflow(path, {"topic": "x"}, env={"OPENAI_API_KEY": SECRET}, trace=False)
    assert result.error
    recorder.record(result)
    (payload,) = spool.payloads
    statuses = [span["status"]["message"] for span in payload["spans"]]
    assert any(statuses), "the run was expected to fail with a message"
    assert SECRET not in json.dumps(statuses) and "ada@example.com" not in json.dumps(statuses)
