"""Recording that survives interruptions: a batch written again after a crash writes each MLflow
run once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from configurable_agents import load_workflow, run_workflow
from configurable_agents.config.settings import MlflowConfig
from configurable_agents.observability.recorder import Recorder
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.writer import RECORD_KEY_TAG, MlflowWriter, drain

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _spooled_run(tmp_path: Path, store: str) -> tuple[Spool, str]:
    """One finished run waiting in a fresh spool; returns the spool and the run's trace id."""
    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    spool = Spool(tmp_path / "spool.db")
    recorder = Recorder(workflow, MlflowConfig(tracking_uri=store), spool=spool)
    recorder.reachable = False  # spool only: the test does the writing
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
