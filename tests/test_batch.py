"""`configurable-agents batch`: rows against the stub server, faults, resume, budget, Ctrl-C,
traces read back from a real SQLite store."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from configurable_agents.cli import app
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.writer import drain

from .stub_llm import Reply, StubLLM, default_responder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    """One stub server for the module; each test sets its responder."""
    with StubLLM() as server:
        yield server


@pytest.fixture
def llm(stub: StubLLM) -> StubLLM:
    stub.reset()
    return stub


def _workflow(tmp_path: Path, stub: StubLLM, **mlflow: Any) -> Path:
    ids = ["outline", "draft", "polish"]
    fields = {"topic": {"type": "str", "required": True}, "n": {"type": "int", "default": 0}}
    data: dict[str, Any] = {
        "schema_version": "1.0",
        "flow": {"name": "batchy", "version": "1.0.0"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "execution": {"max_retries": 0},
        },
        "state": {"fields": fields},
        "nodes": [
            {"id": i, "prompt": f"{i} about {{topic}} ({{n}})", "outputs": [f"{i}_out"]}
            for i in ids
        ],
        "edges": [
            {"from": a, "to": b} for a, b in zip(["START", *ids], [*ids, "END"], strict=True)
        ],
    }
    if mlflow:
        data["config"]["observability"] = {"mlflow": {"enabled": True, **mlflow}}
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _topic(request: dict[str, Any]) -> str:
    return re.search(r"about (\S+)", request["messages"][-1]["content"]).group(1)


def _rows(path: Path, topics: list[str]) -> Path:
    path.write_text("".join(json.dumps({"topic": t}) + "\n" for t in topics))
    return path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["batch", *map(str, args)])


def _batch(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "configurable_agents", "batch", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120, env={**os.environ, **env},
    )  # fmt: skip


class _Faults:
    """Topics that fail on their first request (HTTP 500 or a malformed body), one slow topic."""

    def __init__(self, errors: set[str], malformed: set[str], slow: str) -> None:
        self.errors, self.malformed, self.slow = errors, malformed, slow
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        topic = _topic(request)
        with self.lock:
            first = topic not in self.seen
            self.seen.add(topic)
        if first and topic in self.errors:
            return Reply.error(500)
        if first and topic in self.malformed:
            return Reply.malformed()
        reply = default_responder(request)
        return dataclasses.replace(reply, delay=0.5) if topic == self.slow else reply


def test_200_rows_with_faults_resume_and_one_trace_per_row_run(
    tmp_path: Path, llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spool = tmp_path / "spool.db"
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(spool))
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")  # the workflow's config turns it on
    workflow = _workflow(tmp_path, llm, tracking_uri=uri)
    topics = [f"t{i:03d}" for i in range(200)]
    errors, malformed = set(topics[5::20]), set(topics[12::25])
    llm.responder = _Faults(errors, malformed, slow=topics[3])
    data = _rows(tmp_path / "rows.jsonl", topics)
    out = tmp_path / "results.jsonl"

    first = _batch(
        str(workflow),
        "--inputs",
        str(data),
        "-o",
        str(out),
        "-c",
        "16",
        cwd=tmp_path,
        CONFIGURABLE_AGENTS_FLUSH_TIMEOUT="0",
    )  # its writer goes on during the next one
    assert first.returncode == 1, first.stderr
    lines = _lines(out)
    assert [line["id"] for line in lines] == [str(i) for i in range(1, 201)]  # once, input order
    failed = {line["id"] for line in lines if line["status"] == "failed"}
    assert failed == {str(topics.index(t) + 1) for t in errors | malformed}
    slow = lines[3]
    assert slow["status"] == "success" and slow["duration_s"] >= 1.5
    assert slow["outputs"] == {"outline_out": "stub", "draft_out": "stub", "polish_out": "stub"}
    assert slow["tokens"]["total"] > 0 and slow["cost_usd"] > 0
    assert all(line["trace_id"].startswith("tr-") for line in lines)
    assert "500" in lines[5]["error"]

    again = _batch(str(workflow), "--inputs", str(data), "-o", str(out), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{len(failed)} row(s) run" in again.stderr and "200 row(s) run" not in again.stderr
    final = _lines(out)
    assert [line["id"] for line in final] == [str(i) for i in range(1, 201)]
    assert {line["status"] for line in final} == {"success"}
    assert {line["trace_id"] for line in final} != {line["trace_id"] for line in lines}

    drain(Spool(spool))  # what `observability flush` does
    assert Spool(spool).pending() == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    traces = client.search_traces(locations=[experiment], max_results=1000, include_spans=False)
    runs = client.search_runs([experiment])
    assert len(traces) == 200 + len(failed)  # one per row run, none lost, no per-row MLflow run
    assert sorted(r.data.metrics["rows"] for r in runs) == [len(failed), 200]
    per_batch = Counter(t.info.tags["batch.id"] for t in traces)
    for run in runs:
        rows = run.data.metrics["rows"]
        assert per_batch[run.data.tags["batch.id"]] == rows
        linked = client.search_traces(
            locations=[experiment], run_id=run.info.run_id, max_results=1000, include_spans=False
        )
        assert len(linked) == rows
        assert run.data.params["concurrency"] == "16"
        assert run.data.metrics["succeeded"] + run.data.metrics["failed"] == rows
    assert {t.info.tags["batch.row_id"] for t in traces} == {str(i) for i in range(1, 201)}


def test_ctrl_c_cancels_running_rows_and_resume_finishes(tmp_path: Path, llm: StubLLM) -> None:
    slow_topics = {f"t{i}" for i in range(5, 20)}
    slow_seen: set[str] = set()

    def phase_one(request: dict[str, Any]) -> Reply:
        topic = _topic(request)
        if topic in slow_topics:
            slow_seen.add(topic)
            return Reply.text("never sent", delay=30)
        return default_responder(request)

    llm.responder = phase_one
    workflow = _workflow(tmp_path, llm)
    data = _rows(tmp_path / "rows.jsonl", [f"t{i}" for i in range(20)])
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "configurable_agents", "batch", str(workflow),
            "--inputs", str(data), "-o", str(out), "-c", "4"]  # fmt: skip
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while len(slow_seen) < 4 and time.monotonic() < deadline:  # every worker on a slow row
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = _lines(out)
    statuses = {line["id"]: line["status"] for line in lines}
    assert statuses == {
        **{str(i): "success" for i in range(1, 6)},
        **{str(i): "cancelled" for i in range(6, 10)},
    }

    llm.responder = default_responder
    again = _batch(str(workflow), "--inputs", str(data), "-o", str(out), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    final = _lines(out)
    assert [line["id"] for line in final] == [str(i) for i in range(1, 21)]
    assert {line["status"] for line in final} == {"success"}


def test_budget_stops_starting_rows_and_exits_3(tmp_path: Path, llm: StubLLM) -> None:
    llm.responder = lambda request: dataclasses.replace(
        default_responder(request), usage={"prompt_tokens": 20_000}
    )  # $0.003 a call at gpt-4o-mini's $0.15 per million input tokens: $0.009 a row
    workflow = _workflow(tmp_path, llm)
    data = _rows(tmp_path / "rows.jsonl", [f"t{i}" for i in range(10)])
    out = tmp_path / "out.jsonl"
    result = _cli(workflow, "--inputs", data, "-o", out, "-c", "1", "--max-cost-usd", "0.02")
    assert result.exit_code == 3, result.output
    assert [line["status"] for line in _lines(out)] == ["success"] * 3  # 0.009, 0.018, 0.027
    assert llm.calls == 9
    assert "budget reached" in result.output

    # Three at a time: rows 1-3 start; the first two to finish ($0.018) each start one more row;
    # the third reaches the budget, and the two rows still running finish rather than stop.
    out.unlink()
    result = _cli(workflow, "--inputs", data, "-o", out, "-c", "3", "--max-cost-usd", "0.02")
    assert result.exit_code == 3, result.output
    assert [line["status"] for line in _lines(out)] == ["success"] * 5


def test_bad_rows_fail_located_and_never_stop_the_batch(tmp_path: Path, llm: StubLLM) -> None:
    llm.responder = default_responder
    workflow = _workflow(tmp_path, llm)
    data = tmp_path / "rows.csv"
    data.write_text("id,topic,n\na,bees,3\nb,,\nc,ants,many\nd,wasps,\n")
    out = tmp_path / "out.jsonl"
    result = _cli(workflow, "--inputs", data, "-o", out)
    assert result.exit_code == 1, result.output
    lines = {line["id"]: line for line in _lines(out)}
    assert list(lines) == ["a", "b", "c", "d"]
    assert lines["a"]["status"] == lines["d"]["status"] == "success"
    assert lines["b"]["error"] == f"{data}:3: missing required input 'topic' (str)"
    assert lines["c"]["error"].startswith(f"{data}:4: input 'n': ")
    prompts = [r["messages"][-1]["content"] for r in llm.requests]
    assert "outline about bees (3)" in prompts and "outline about wasps (0)" in prompts

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"topic": "x", "colour": 1}\n[1]\n{"topic": \n\n{"id": 7, "topic": "y"}\n')
    out2 = tmp_path / "out2.jsonl"
    result = _cli(workflow, "--inputs", jsonl, "-o", out2)
    assert result.exit_code == 1, result.output
    lines = {line["id"]: line for line in _lines(out2)}
    assert lines["1"]["error"] == f"{jsonl}:1: unknown input 'colour'"
    assert lines["2"]["error"] == f"{jsonl}:2: expected an object of field values, got list"
    assert lines["3"]["error"].startswith(f"{jsonl}:3: not JSON: ")
    assert lines["7"]["status"] == "success"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.txt", "x", "unknown inputs format '.txt'"),
        ("missing.jsonl", None, "missing.jsonl: no such file"),
        ("rows.json", '{"topic": "x"}', "expected a JSON list of objects, got dict"),
        ("rows.json", "[{]", "rows.json:1:3: not JSON"),
        ("rows.csv", "", "empty CSV file"),
        ("rows.csv", "topic,topic\nx,y\n", "column 'topic' appears twice"),
        ("rows.jsonl", '{"id": 1, "topic": "a"}\n{"id": "1", "topic": "b"}\n', "duplicate id '1'"),
    ],
)
def test_bad_inputs_file_exits_2_in_one_line(
    tmp_path: Path, llm: StubLLM, name: str, content: str | None, message: str
) -> None:
    workflow = _workflow(tmp_path, llm)
    data = tmp_path / name
    if content is not None:
        data.write_bytes(content.encode())
    out = tmp_path / "out.jsonl"
    result = _cli(workflow, "--inputs", data, "-o", out)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and llm.calls == 0


def test_existing_output_needs_resume_and_unpriced_budget_is_refused(
    tmp_path: Path, llm: StubLLM
) -> None:
    workflow = _workflow(tmp_path, llm)
    data = _rows(tmp_path / "rows.jsonl", ["a"])
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    result = _cli(workflow, "--inputs", data, "-o", out)
    assert result.exit_code == 2 and "exists; --resume continues it" in result.output
    assert out.read_text() == "keep me\n"
    result = _cli(workflow, "--inputs", data, "-o", tmp_path / "o.jsonl", "--llm",
                  "openai:no-such-model", "--max-cost-usd", "1")  # fmt: skip
    assert result.exit_code == 2
    assert "openai/no-such-model has no known price" in result.output


def test_run_batch_from_python_refuses_a_budget_it_cannot_enforce(
    tmp_path: Path, llm: StubLLM
) -> None:
    import asyncio

    from configurable_agents import SetupError, prepare_workflow
    from configurable_agents.batch import read_rows, run_batch

    workflow = _workflow(tmp_path, llm)
    data = _rows(tmp_path / "rows.jsonl", ["a"])
    prepared = prepare_workflow(workflow, llm="openai:no-such-model", env={"OPENAI_API_KEY": "k"})
    rows = read_rows(data, prepared.workflow)
    out = tmp_path / "out.jsonl"
    with pytest.raises(SetupError, match="max_cost_usd: openai/no-such-model has no known price"):
        asyncio.run(run_batch(prepared, rows, out, inputs=data, max_cost_usd=1.0))
    assert not out.exists() and llm.calls == 0


def test_resume_tolerates_a_line_cut_by_a_kill(tmp_path: Path, llm: StubLLM) -> None:
    llm.responder = default_responder
    workflow = _workflow(tmp_path, llm)
    data = _rows(tmp_path / "rows.jsonl", ["a", "b", "c"])
    out = tmp_path / "out.jsonl"
    done = {"id": "2", "row": 2, "status": "success", "outputs": {}, "tokens": {"total": 0}}
    out.write_text(json.dumps(done) + '\n{"id": "1", "sta')
    result = _cli(workflow, "--inputs", data, "-o", out, "--resume")
    assert result.exit_code == 0, result.output
    lines = _lines(out)
    assert [line["id"] for line in lines] == ["1", "2", "3"]
    assert lines[1] == done and llm.calls == 6
