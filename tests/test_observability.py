"""MLflow recording read back through MlflowClient from a real SQLite store, span by span."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, run_workflow
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.writer import drain

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store and spool, in the test's own directory."""
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _workflow(tmp_path: Path, stub: StubLLM, uri: str, **mlflow: Any) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    data["flow"]["version"] = "2.1.0"
    data["config"] = {
        "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
        "observability": {
            "mlflow": {"enabled": True, "tracking_uri": uri, "async_logging": False, **mlflow}
        },
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _answer(request: dict[str, Any]) -> Reply:
    wanted = request["tools"][0]["function"]["parameters"]["properties"]
    values = {"draft": "a draft", "approved": False, "headline": "A title"}
    return Reply.tool_calls(
        [("final_answer", {k: values[k] for k in wanted})],
        usage={"prompt_tokens": 1_000, "completion_tokens": 100, "cached_tokens": 200},
    )


def test_run_is_traced_and_recorded_span_by_span(
    tmp_path: Path, stub_llm: StubLLM, store: str
) -> None:
    stub_llm.responder = _answer
    result = run_workflow(
        _workflow(tmp_path, stub_llm, store, run_name="{workflow_name}-v{workflow_version}"),
        {"topic": "tides"},
        tags={"user_id": "u-7", "session_id": "s-1", "environment": "test"},
        env={},
    )
    assert result.status is RunStatus.SUCCESS and result.trace_id
    client = _client(store)
    trace = client.get_trace(result.trace_id)
    spans = trace.data.spans
    assert [s.span_type for s in spans].count("CHAT_MODEL") == stub_llm.calls == 5
    root = next(s for s in spans if s.parent_id is None)
    assert root.name == "workflow_iterative_refinement"
    assert root.inputs == {"topic": "tides"}
    assert root.get_attribute("workflow.node_count") == 3
    revisions = [s for s in spans if s.name == "revise"]
    assert sorted(s.get_attribute("node.iteration") for s in revisions) == [1, 2, 3]
    for span in spans:
        if span.span_type == "CHAT_MODEL":
            usage = span.get_attribute("mlflow.chat.tokenUsage")
            assert (usage["input_tokens"], usage["output_tokens"]) == (1_000, 100)
            assert usage["cache_read_input_tokens"] == 200
            assert span.get_attribute("mlflow.llm.model") == "gpt-4o-mini"
            assert span.get_attribute("mlflow.llm.provider") == "openai"
            # 800 fresh at $0.15/M + 200 cached at $0.075/M + 100 out at $0.60/M
            assert span.get_attribute("mlflow.llm.cost")["total_cost"] == pytest.approx(0.000195)
    tags = trace.info.tags
    assert (tags["user_id"], tags["session_id"], tags["environment"]) == ("u-7", "s-1", "test")
    assert (tags["workflow"], tags["workflow_version"], tags["status"]) == (
        "iterative_refinement", "2.1.0", "success")  # fmt: skip
    usage = json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"])
    assert usage["total_tokens"] == 5 * 1_100
    assert usage["cache_read_input_tokens"] == 5 * 200  # MLflow's totals count cached tokens

    (run,) = client.search_runs([trace.info.experiment_id])
    assert run.info.run_name == "iterative_refinement-v2.1.0"
    metrics = run.data.metrics
    assert metrics["total_tokens"] == 5_500 and metrics["prompt_tokens"] == 5_000
    assert metrics["total_cost_usd"] == pytest.approx(5 * 0.000195)
    assert metrics["node_revise_cost_usd"] == pytest.approx(3 * 0.000195)
    assert metrics["status"] == 1 and metrics["node_count"] == 5
    assert run.data.params["node_revise_model"] == "gpt-4o-mini"
    assert run.data.params["input_topic"] == "tides"
    summary = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "cost_summary.json", str(tmp_path))
        ).read_text()
    )
    assert summary["trace_id"] == result.trace_id
    assert summary["total_tokens"] == {
        "prompt_tokens": 5_000, "completion_tokens": 500, "total_tokens": 5_500}  # fmt: skip
    assert summary["node_breakdown"]["title"]["model"] == "openai/gpt-4o-mini"


def test_failed_run_is_recorded_with_its_error(
    tmp_path: Path, stub_llm: StubLLM, store: str
) -> None:
    stub_llm.responder = lambda request: Reply.error(400)
    result = run_workflow(_workflow(tmp_path, stub_llm, store), {"topic": "x"}, env={})
    assert result.status is RunStatus.FAILED
    client = _client(store)
    trace = client.get_trace(result.trace_id)
    assert trace.info.state == "ERROR"
    failed = [s for s in trace.data.spans if s.status.status_code == "ERROR"]
    assert {s.span_type for s in failed} >= {"CHAIN", "AGENT", "CHAT_MODEL"}
    (run,) = client.search_runs([trace.info.experiment_id])
    assert run.info.status == "FAILED" and run.data.metrics["status"] == 0
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"cost_summary.json", "error.json"} <= names


def test_secrets_never_reach_the_store_and_pii_is_masked(
    tmp_path: Path, stub_llm: StubLLM, store: str
) -> None:
    stub_llm.responder = _answer
    secret = "sk-live-0123456789abcdef0123"
    path = _workflow(tmp_path, stub_llm, store, redact_pii=True, artifact_level="full")
    result = run_workflow(
        path, {"topic": f"mail ada@example.com, card 4111 1111 1111 1111, key {secret}"},
        env={"OPENAI_API_KEY": secret},
    )  # fmt: skip
    client = _client(store)
    dumped = json.dumps([s.to_dict() for s in client.get_trace(result.trace_id).data.spans])
    (run,) = client.search_runs(
        [client.get_experiment_by_name("configurable_agents").experiment_id]
    )
    prompts = Path(client.download_artifacts(run.info.run_id, "prompts.json", str(tmp_path)))
    for text in (dumped, prompts.read_text(), json.dumps(run.data.params)):
        assert secret not in text
        assert "ada@example.com" not in text and "4111 1111 1111 1111" not in text
    assert "[EMAIL]" in dumped and "[CARD]" in dumped


def test_file_store_uris_from_older_configs_work(
    tmp_path: Path, stub_llm: StubLLM, store: str
) -> None:
    stub_llm.responder = _answer
    uri = f"file://{tmp_path / 'mlruns'}"
    result = run_workflow(_workflow(tmp_path, stub_llm, uri), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS
    assert Spool().pending() == 0
    assert _client(uri).get_experiment_by_name("configurable_agents") is not None


def test_env_tracking_uri_wins_only_when_the_field_is_unset(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from configurable_agents.config.settings import MlflowConfig
    from configurable_agents.observability.recorder import tracking_uri

    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    assert tracking_uri(MlflowConfig(), env) == "http://127.0.0.1:5000"
    assert tracking_uri(MlflowConfig(tracking_uri="sqlite:///x.db"), env) == "sqlite:///x.db"
    assert tracking_uri(MlflowConfig(), {}) == "sqlite:///mlflow.db"


BURST = """
import sys
from configurable_agents import load_workflow
from configurable_agents import prepare_workflow
import asyncio

prepared = prepare_workflow(load_workflow(sys.argv[1]), llm="mock", trace=True)

async def main():
    for i in range(1000):
        result = await prepared.arun({"topic": f"t{i}"})
        print(result.trace_id, flush=True)

asyncio.run(main())
"""


def test_sigkill_mid_burst_loses_no_finished_trace(tmp_path: Path, store: str) -> None:
    data = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    data["config"]["observability"]["mlflow"]["tracking_uri"] = store
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    process = subprocess.Popen(
        [sys.executable, "-c", BURST, str(path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    finished = []
    assert process.stdout is not None
    for line in process.stdout:
        finished.append(line.strip())
        if len(finished) == 300:
            process.kill()  # SIGKILL: no atexit, no flush
            break
    process.wait(timeout=30)
    finished += [line.strip() for line in process.stdout.read().splitlines() if line.strip()]
    flushed = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "observability", "flush"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    client = _client(store)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    traces = client.search_traces(locations=[experiment], max_results=5000, include_spans=False)
    stored = {t.info.trace_id for t in traces}
    assert set(finished) <= stored
    assert len(finished) >= 300


def test_drain_writes_many_traces_in_one_batch(tmp_path: Path, store: str) -> None:
    from configurable_agents import load_workflow, prepare_workflow

    data = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    # synchronous from the start: a recorder made asynchronous starts a background writer, which
    # could hold a claimed row while the assertions below look at the spool
    data["config"]["observability"]["mlflow"].update(tracking_uri=store, async_logging=False)
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    prepared = prepare_workflow(load_workflow(path), llm="mock", trace=True)
    spool = Spool()
    import asyncio

    async def many() -> list[str]:
        return [(await prepared.arun({"topic": f"t{i}"})).trace_id for i in range(20)]

    ids = asyncio.run(many())
    assert spool.pending() == 0
    assert drain(spool) == 0
    client = _client(store)
    assert all(client.get_trace(trace_id).info.state == "OK" for trace_id in ids)


def test_prune_deletes_only_what_is_older_than_retention(tmp_path: Path, store: str) -> None:
    from configurable_agents import load_workflow
    from configurable_agents.observability.recorder import Recorder

    data = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    data["config"]["observability"]["mlflow"].update(
        tracking_uri=store, async_logging=False, retention_days=5
    )
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    workflow = load_workflow(path)
    recorder = Recorder(workflow, workflow.config.config.observability.mlflow, env={})
    old = run_workflow(workflow, {"topic": "old"}, llm="mock", trace=False)
    ten_days_ns = 10 * 24 * 3600 * 10**9
    old.started_ns -= ten_days_ns
    for record in old.records:
        record.started_ns -= ten_days_ns
        for call in record.calls:
            call.started_ns -= ten_days_ns
    old_trace = recorder.record(old)
    new_trace = recorder.record(run_workflow(workflow, {"topic": "new"}, llm="mock", trace=False))
    pruned = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "observability", "prune", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 1 trace(s) and 1 run(s) older than 5 day(s)" in pruned.stdout
    client = _client(store)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    remaining = client.search_traces(locations=[experiment], include_spans=False)
    assert [t.info.trace_id for t in remaining] == [new_trace]
    assert old_trace != new_trace
    (run,) = client.search_runs([experiment])
    assert run.data.params["input_topic"] == "new"
