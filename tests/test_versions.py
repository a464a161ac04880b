"""Workflow versions as MLflow models: one LoggedModel per version, created once, with its file
and registry prompts, its traces, runs and evaluations linked to it, read back through
MlflowClient from a real SQLite store and a real `mlflow server`; and the `versions` command."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from configurable_agents.cli import app
from configurable_agents.observability.models import (
    FILE_ARTIFACT,
    HASH_TAG,
    VersionModels,
    log_linked_spans,
)

from .stub_llm import StubLLM
from .test_recording_recovery import _free_port, _mlflow_server

WORKFLOW = {
    "schema_version": "1.0",
    "flow": {"name": "tickets", "version": "1.0"},
    "config": {"llm": {"provider": "openai", "model": "gpt-4o-mini"}},
    "state": {"fields": {"ticket": {"type": "str", "required": True}}},
    "nodes": [{"id": "reply", "prompt": "Reply kindly to {ticket}.", "outputs": ["answer"]}],
    "edges": [{"from": "START", "to": "reply"}, {"from": "reply", "to": "END"}],
    "evaluation": {
        "dataset": "rows.jsonl",
        "scorers": [
            {"name": "small", "type": "max_tokens", "tokens": 4000},
            {"name": "tiny", "type": "max_tokens", "tokens": 1},
        ],
    },
}


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with its schema made (which takes seconds), copied by each test."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    _client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Iterator[Path]:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("CONFIGURABLE_AGENTS_PROMPT_CACHE", str(tmp_path / "cache.json"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _write(folder: Path, store: str, prompt: Any, stub: StubLLM | None = None) -> Path:
    data = json.loads(json.dumps(WORKFLOW))
    data["nodes"][0]["prompt"] = prompt
    llm = data["config"]["llm"]
    if stub is not None:
        llm["api_base"] = stub.base_url
    data["config"]["observability"] = {
        "mlflow": {"enabled": True, "tracking_uri": store, "async_logging": False}
    }
    path = folder / "tickets.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _models(client: Any, experiment_id: str) -> list[Any]:
    return sorted(client.search_logged_models([experiment_id]), key=lambda m: m.creation_timestamp)


def _traces(client: Any, experiment_id: str, model_id: str) -> set[str]:
    found = client.search_traces(locations=[experiment_id], model_id=model_id, max_results=100)
    return {trace.info.trace_id for trace in found}


def _versions(*args: str) -> Any:
    outcome = CliRunner().invoke(app, ["versions", *args, "--format", "json"])
    assert outcome.exit_code == 0, outcome.output
    return json.loads(outcome.output)


def test_two_versions_are_two_models_each_linked_to_its_traces_runs_prompts_and_evaluation(
    folder: Path, stub_llm: StubLLM
) -> None:
    import mlflow.artifacts

    from configurable_agents import evaluate, run_workflow
    from configurable_agents.observability.recorder import flush_all

    store = f"sqlite:///{folder / 'mlflow.db'}"
    client = _client(store)
    client.register_prompt("tickets.reply", "Reply briefly to {{ticket}}.")
    (folder / "rows.jsonl").write_text('{"ticket": "a"}\n{"ticket": "b"}\n')
    first = _write(folder, store, "Reply kindly to {ticket}.", stub_llm)
    runs = {"1": [run_workflow(first, {"ticket": f"t{n}"}) for n in range(2)]}
    second = _write(folder, store, "prompts:/tickets.reply/1", stub_llm)
    runs["2"] = [run_workflow(second, {"ticket": f"t{n}"}) for n in range(2)]
    evaluation = evaluate(second)
    assert flush_all(60)
    assert "Reply briefly to t1." in str(stub_llm.requests[3]["messages"])

    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    old, new = _models(client, experiment)  # each created once, by the first run that needed it
    assert old.tags[HASH_TAG] != new.tags[HASH_TAG]
    assert old.name.startswith("tickets-1_0-") and old.status.name == "READY"
    files = {}
    for model in (old, new):  # the artifact location of a SQLite store's model is a file: URI
        where = mlflow.artifacts.download_artifacts(
            f"{model.artifact_location}/{FILE_ARTIFACT}", dst_path=str(folder / model.model_id)
        )
        files[model.model_id] = Path(where).read_text()
    assert yaml.safe_load(files[old.model_id])["nodes"][0]["prompt"] == "Reply kindly to {ticket}."
    assert yaml.safe_load(files[new.model_id])["nodes"][0]["prompt"] == "Reply briefly to {ticket}."
    assert files[new.model_id].startswith("# nodes.reply.prompt: prompts:/tickets.reply/1\n")
    assert json.loads(new.tags["mlflow.linkedPrompts"]) == [
        {"name": "tickets.reply", "version": "1"}
    ]
    assert new.params["prompt.reply"] == "tickets.reply/1" and "prompt.reply" not in old.params

    assert _traces(client, experiment, old.model_id) == {r.trace_id for r in runs["1"]}
    rows = set(evaluation.trace_ids)
    assert _traces(client, experiment, new.model_id) == {r.trace_id for r in runs["2"]} | rows
    for version, model in (("1", old), ("2", new)):
        for result in runs[version]:
            [run] = client.search_runs(
                [experiment], filter_string=f"tags.`mlflow.trace_id` = '{result.trace_id}'"
            )
            inputs = client.get_run(run.info.run_id).inputs.model_inputs
            assert [i.model_id for i in inputs] == [model.model_id]
    [eval_run] = client.search_runs(
        [experiment], filter_string="tags.`mlflow.runType` = 'genai_evaluate'"
    )
    assert [i.model_id for i in client.get_run(eval_run.info.run_id).inputs.model_inputs] == [
        new.model_id
    ]
    means = {m.key: m for m in client.get_logged_model(new.model_id).metrics}
    assert means["small/mean"].value == 1.0 and means["tiny/mean"].value == 0.0
    assert means["small/mean"].run_id == eval_run.info.run_id
    assert means["small/mean"].dataset_name == "rows.jsonl"

    listed = _versions(str(second))
    assert [(v["hash"], v["traces"], v["current"]) for v in listed] == [
        (old.tags[HASH_TAG], 2, False),
        (new.tags[HASH_TAG], 4, True),
    ]
    costs = [sum(float(r.cost_usd) for r in runs["1"]),
             sum(float(r.cost_usd) for r in runs["2"]) + evaluation.workflow_cost_usd]  # fmt: skip
    assert costs[0] > 0
    assert [v["cost_usd"] for v in listed] == pytest.approx(costs)
    assert listed[1]["scores"] == {"small": 1.0, "tiny": 0.0}
    assert listed[1]["evaluation_run_id"] == eval_run.info.run_id and listed[0]["scores"] == {}
    assert listed[1]["prompts"] == {"reply": "tickets.reply/1"}
    table = CliRunner().invoke(app, ["versions", str(first)])
    assert table.exit_code == 0 and "2 version(s)" in table.output and "small 1.00" in table.output


def test_concurrent_writers_create_one_model(folder: Path) -> None:
    store = f"sqlite:///{folder / 'mlflow.db'}"
    path = _write(folder, store, "Reply kindly to {ticket}.")
    command = [sys.executable, "-m", "configurable_agents", "run", str(path), "-i", "ticket=x",
               "--llm", "mock", "--wait"]  # fmt: skip
    processes = [
        subprocess.Popen(
            command,
            env={**os.environ, "CONFIGURABLE_AGENTS_SPOOL": str(folder / f"spool{n}.db")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    client = _client(store)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    [model] = _models(client, experiment)
    assert len(_traces(client, experiment, model.model_id)) == 3


def test_a_writer_that_lost_the_race_to_another_store_client_keeps_the_first_model(
    folder: Path,
) -> None:
    client = _client(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("configurable_agents")
    version = {"name": "tickets", "version": "1.0", "hash": "0123456789abcdef", "prompts": {}}
    first = client.create_logged_model(experiment, tags={HASH_TAG: version["hash"]})
    # as a writer of another process does when the model was created after it looked
    winner = VersionModels(client, "http://elsewhere")._create(experiment, version, "flow: {}\n")
    assert winner == first.model_id
    assert [m.model_id for m in _models(client, experiment)] == [first.model_id]


def test_versions_exits_2_on_bad_input(folder: Path) -> None:
    missing = CliRunner().invoke(app, ["versions", str(folder / "none.yaml")])
    assert missing.exit_code == 2
    path = _write(folder, f"sqlite:///{folder / 'other.db'}", "Reply kindly to {ticket}.")
    no_store = CliRunner().invoke(app, ["versions", str(path)])
    assert no_store.exit_code == 2
    assert no_store.output.strip().splitlines() == [
        f"error: no MLflow store at {folder / 'other.db'} (is --tracking-uri right?)"
    ]
    no_runs = CliRunner().invoke(
        app, ["versions", str(path), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    )
    assert no_runs.exit_code == 2 and "no experiment 'configurable_agents'" in no_runs.output


def test_versions_against_a_real_mlflow_server(folder: Path) -> None:
    from mlflow.entities import Span

    from configurable_agents import load_workflow, run_workflow
    from configurable_agents.observability.spans import build_trace

    with _mlflow_server(_free_port(), folder) as uri:
        path = _write(folder, uri, "Reply kindly to {ticket}.")
        results = [run_workflow(path, {"ticket": n}, llm="mock") for n in "ab"]
        client = _client(uri)
        experiment = client.get_experiment_by_name("configurable_agents").experiment_id
        [model] = _models(client, experiment)
        assert _traces(client, experiment, model.model_id) == {r.trace_id for r in results}
        trace = client.get_trace(results[0].trace_id)
        assert trace.info.trace_metadata["mlflow.modelId"] == model.model_id
        assert trace.info.state == "OK" and len(trace.data.spans) == 3  # the rest kept
        assert [a.path for a in client.list_logged_model_artifacts(model.model_id)] == [
            FILE_ARTIFACT
        ]
        [listed] = _versions(str(path))
        assert (listed["model_id"], listed["traces"], listed["current"]) == (
            model.model_id, 2, True)  # fmt: skip
        # in a caller's trace, whose root is the caller's span, the link comes after the spans
        trace_id, spans = build_trace(results[0], load_workflow(path))
        spans[0]["parent_span_id"] = base64.b64encode(bytes(8)).decode()
        store = client._tracking_client.store
        log_linked_spans(store, experiment, [Span.from_dict(s) for s in spans],
                         {trace_id: (model.model_id, spans)}, remote=True)  # fmt: skip
        assert client.get_trace(trace_id).info.trace_metadata["mlflow.modelId"] == model.model_id
