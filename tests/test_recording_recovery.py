"""Recording that survives interruptions: a batch written again after a crash writes each MLflow
run once; a dead server means recording locally, and `observability sync` copies it there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import load_workflow, run_workflow
from configurable_agents.config.settings import MlflowConfig
from configurable_agents.observability.recorder import FALLBACK_TAG, FALLBACK_URI, Recorder
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.writer import RECORD_KEY_TAG, MlflowWriter, drain

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


class _SpoolOnly(Recorder):
    """Spools runs and starts no writer: the test does the writing."""

    def _writer(self) -> Any:
        return types.SimpleNamespace(ensure=lambda: None)


def _spooled_run(tmp_path: Path, store: str) -> tuple[Spool, str]:
    """One finished run waiting in a fresh spool; returns the spool and the run's trace id."""
    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    spool = Spool(tmp_path / "spool.db")
    recorder = _SpoolOnly(workflow, MlflowConfig(tracking_uri=store), spool=spool)
    result = run_workflow(workflow, {"topic": "bees"}, llm="mock", trace=False)
    return spool, recorder.record(result)


def _runs(store: str, trace_id: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("configurable_agents")
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.trace_id` = '{trace_id}'"
    )


def test_a_run_cut_off_mid_write_is_written_again_whole_and_once(
    tmp_path: Path, store: str
) -> None:
    spool, trace_id = _spooled_run(tmp_path, store)
    [item] = spool.claim(10)
    writer = MlflowWriter(store)
    partial = writer.client.create_run(  # what a writer killed after create_run leaves behind
        writer.experiment_id(item.experiment),
        tags={RECORD_KEY_TAG: item.payload["key"], "mlflow.trace_id": trace_id},
    )
    spool.release([item.id], "writer killed")

    assert drain(spool) == 1
    [run] = _runs(store, trace_id)
    assert run.info.run_id != partial.info.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["node_count"] == 1
    assert writer.client.get_run(partial.info.run_id).info.lifecycle_stage == "deleted"


def test_a_batch_written_but_not_marked_done_is_not_written_twice(
    tmp_path: Path, store: str
) -> None:
    spool, trace_id = _spooled_run(tmp_path, store)
    items = spool.claim(10)
    MlflowWriter(store).write(items)  # then the process dies before spool.done()
    spool.release([item.id for item in items], "died before marking done")

    assert drain(spool) == 1 and spool.pending() == 0
    assert len(_runs(store, trace_id)) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "configurable_agents", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _workflow_for(tmp_path: Path, uri: str) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    data["config"]["observability"]["mlflow"].update(tracking_uri=uri, async_logging=False)
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def _mlflow_server(port: int, tmp_path: Path) -> Iterator[str]:
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "server-artifacts")],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_dead_server_means_local_recording_and_sync_copies_it_there_once(
    tmp_path: Path, store: str
) -> None:
    from mlflow.tracking import MlflowClient

    port = _free_port()
    dead = f"http://127.0.0.1:{port}"
    ran = _cli(
        "run", str(_workflow_for(tmp_path, dead)), "-i", "topic=x", "--llm", "mock", "--wait"
    )
    assert ran.returncode == 0, ran.stderr
    assert f"MLflow server {dead} does not answer; recording to sqlite:///mlflow.db" in ran.stderr
    trace_id = ran.stderr.split("Trace ")[1].split()[0]
    assert f"written to {FALLBACK_URI}" in ran.stderr
    local = MlflowClient(store)  # the test runs in tmp_path: sqlite:///mlflow.db is this store
    assert local.get_trace(trace_id).info.tags[FALLBACK_TAG] == dead
    [local_run] = local.search_runs(
        [local.get_experiment_by_name("configurable_agents").experiment_id]
    )
    assert local_run.data.tags[FALLBACK_TAG] == dead

    with _mlflow_server(port, tmp_path) as uri:
        synced = _cli("observability", "sync", "--to", uri)
        assert synced.returncode == 0, synced.stderr
        assert "copied 1 trace(s) and 1 run(s)" in synced.stdout
        again = _cli("observability", "sync", "--to", uri)
        assert "copied 0 trace(s) and 0 run(s)" in again.stdout, again.stdout + again.stderr

        remote = MlflowClient(uri)
        trace = remote.get_trace(trace_id)
        assert [s.span_type for s in trace.data.spans] == ["CHAIN", "AGENT", "CHAT_MODEL"]
        assert [s.to_dict() for s in trace.data.spans] == [
            s.to_dict() for s in local.get_trace(trace_id).data.spans
        ]
        experiment = remote.get_experiment_by_name("configurable_agents").experiment_id
        [run] = remote.search_runs([experiment])
        assert run.data.metrics == local_run.data.metrics
        assert run.data.params == local_run.data.params
        assert run.info.run_name == local_run.info.run_name and run.info.status == "FINISHED"
        summary = json.loads(
            Path(remote.download_artifacts(run.info.run_id, "cost_summary.json", str(tmp_path)))
            .read_text()
        )  # fmt: skip
        assert summary["trace_id"] == trace_id
        assert [
            t.info.trace_id
            for t in remote.search_traces(locations=[experiment], run_id=run.info.run_id)
        ] == [trace_id]


def test_when_the_local_fallback_cannot_be_written_either_runs_go_untraced(
    tmp_path: Path, store: str
) -> None:
    (tmp_path / "mlflow.db").mkdir()  # sqlite:///mlflow.db cannot be opened
    dead = f"http://127.0.0.1:{_free_port()}"
    ran = _cli("run", str(_workflow_for(tmp_path, dead)), "-i", "topic=x", "--llm", "mock")
    assert ran.returncode == 0, ran.stderr
    assert "cannot be written" in ran.stderr and "runs are not recorded" in ran.stderr
    assert "Trace " not in ran.stderr
    assert Spool().pending() == 0


def test_prune_on_start_prunes_once_per_process_beside_the_runs(tmp_path: Path, store: str) -> None:
    from mlflow.tracking import MlflowClient

    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    config = MlflowConfig(tracking_uri=store, async_logging=False)
    recorder = Recorder(workflow, config)
    old = run_workflow(workflow, {"topic": "old"}, llm="mock", trace=False)
    old.started_ns -= 10 * 24 * 3600 * 10**9
    for record in old.records:
        record.started_ns -= 10 * 24 * 3600 * 10**9
    recorder.record(old)
    new_trace = recorder.record(run_workflow(workflow, {"topic": "new"}, llm="mock", trace=False))

    pruning = config.model_copy(update={"prune_on_start": True, "retention_days": 5})
    first = Recorder(workflow, pruning)
    assert first.pruner is not None and first.pruner.wait(timeout=120) == 0
    assert Recorder(workflow, pruning).pruner is None  # once per process and store
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    remaining = client.search_traces(locations=[experiment], include_spans=False)
    assert [t.info.trace_id for t in remaining] == [new_trace]
    [run] = client.search_runs([experiment])
    assert run.data.params["input_topic"] == "new"


def test_artifacts_live_beside_the_sqlite_store_whatever_the_working_directory(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    database = tmp_path / "stores" / "m.db"
    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    config = MlflowConfig(tracking_uri=f"sqlite:///{database}", async_logging=False)
    trace_id = Recorder(workflow, config).record(
        run_workflow(workflow, {"topic": "bees"}, llm="mock", trace=False)
    )
    [run] = _runs(f"sqlite:///{database}", trace_id or "")
    assert run.info.artifact_uri.startswith((tmp_path / "stores" / "mlruns").as_uri())
    assert list((tmp_path / "stores" / "mlruns").rglob("cost_summary.json"))
    assert list(elsewhere.iterdir()) == []
