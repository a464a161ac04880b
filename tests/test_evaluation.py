"""`eval` end to end: the workflow and its judges call the stub over real HTTP, the assessments and
the evaluation run are read back from a real SQLite store (and a real `mlflow server`) through
``MlflowClient``, value by value and row by row.

The stub plays both parts. A workflow call gets ``severity`` ("high" when the ticket mentions a
crash) and a ``reply`` that is rude when the prompt says so; a judge call (its `final_answer`
has a ``verdict``) fails any answer containing "RUDE" and passes the rest, and answers a ticket
containing "unparseable" with a verdict that is not one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from configurable_agents.cli import app
from configurable_agents.evaluation.judges import JUDGE_RETRIES
from configurable_agents.observability.recorder import flush_all

from .stub_llm import Reply, StubLLM

SORRY = "We are sorry."
ROWS = [
    {"ticket": "the app crashes on start", "expected_severity": "high", "expected_reply": SORRY},
    {"ticket": "a typo on the pricing page", "expected_severity": "low", "expected_reply": SORRY},
    {"ticket": "export crashes with big files", "expected_severity": "high"},
    {"ticket": "dark mode please", "expected_severity": "high"},  # the workflow says low
    {"ticket": "unparseable verdict please", "expected_severity": "low"},
]
SCORERS = """
- {name: right_severity, type: equals, output: severity, expected: expected_severity}
- {name: polite, type: guidelines, guidelines: The reply is polite and never promises a refund.}
- {name: correct, type: correctness, expected: expected_reply}
- {name: cheap, type: max_cost, usd: 0.002}
"""
MODEL = "gpt-4o-mini"
WORKFLOW_TOKENS = (1_000, 100)
JUDGE_TOKENS = (400, 40)
PRICE = (0.15e-6, 0.60e-6)  # gpt-4o-mini, USD per input and output token


def _cost(tokens: tuple[int, int]) -> float:
    return tokens[0] * PRICE[0] + tokens[1] * PRICE[1]


@dataclass
class Shop:
    """A workflow, its dataset and store, and what the stub answered."""

    folder: Path
    stub: StubLLM
    uri: str
    workflow_calls: int = 0
    judge_calls: list[str] = field(default_factory=list)

    @property
    def file(self) -> Path:
        return self.folder / "tickets.yaml"

    @property
    def dataset(self) -> Path:
        return self.folder / "tickets.jsonl"

    def write(self, prompt: str = "Triage the ticket: {ticket}", **evaluation: Any) -> Path:
        data = {
            "schema_version": "1.0",
            "flow": {"name": "tickets", "version": "2"},
            "config": {
                "llm": {"provider": "openai", "model": MODEL, "api_base": self.stub.base_url},
                "observability": {"mlflow": {"enabled": True, "tracking_uri": self.uri}},
            },
            "state": {"fields": {"ticket": {"type": "str", "required": True}}},
            "nodes": [{"id": "triage", "prompt": prompt, "outputs": ["severity", "reply"]}],
            "edges": [{"from": "START", "to": "triage"}, {"from": "triage", "to": "END"}],
            "evaluation": {
                "dataset": "tickets.jsonl",
                "scorers": yaml.safe_load(SCORERS),
                **evaluation,
            },
        }
        self.file.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.file

    def answer(self, request: dict[str, Any]) -> Reply:
        function = request["tools"][0]["function"]
        text = " ".join(str(m.get("content")) for m in request["messages"])
        if "verdict" in function["parameters"]["properties"]:
            self.judge_calls.append(text)
            usage = {"prompt_tokens": JUDGE_TOKENS[0], "completion_tokens": JUDGE_TOKENS[1]}
            if "unparseable" in text:
                return Reply.tool_calls([("final_answer", {"verdict": "maybe"})], usage=usage)
            rude = "RUDE" in text
            verdict = {
                "verdict": "fail" if rude else "pass",
                "rationale": "the reply is rude" if rude else "the reply is fine",
            }
            return Reply.tool_calls([("final_answer", verdict)], usage=usage)  # fmt: skip
        self.workflow_calls += 1
        severity = "high" if "crash" in text else "low"
        reply = "We are sorry. RUDE" if "be rude" in text else "We are sorry."
        usage = {"prompt_tokens": WORKFLOW_TOKENS[0], "completion_tokens": WORKFLOW_TOKENS[1]}
        return Reply.tool_calls(
            [("final_answer", {"severity": severity, "reply": reply})], usage=usage
        )


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema made (which takes seconds), copied by each test."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    _client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def shop(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> Iterator[Shop]:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.chdir(tmp_path)
    made = Shop(tmp_path, stub_llm, f"sqlite:///{tmp_path / 'mlflow.db'}")
    stub_llm.responder = made.answer
    made.dataset.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    yield made


def _eval(*args: str) -> Result:
    return CliRunner().invoke(app, ["eval", *args], catch_exceptions=False)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _eval_runs(uri: str) -> list[Any]:
    client = _client(uri)
    experiment = client.get_experiment_by_name("configurable_agents")
    return client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mlflow.runType` = 'genai_evaluate'",
        order_by=["attributes.start_time DESC"],
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_scores_every_row_and_records_assessments_and_the_evaluation_run(shop: Shop) -> None:
    shop.write(pass_if="right_severity >= 0.5 and polite >= 0.75 and cheap == 1")
    outcome = _eval(str(shop.file), "-o", "results.jsonl", "-c", "2")
    assert outcome.exit_code == 0, outcome.output
    assert "PASS: pass_if holds" in outcome.output
    lines = _lines(shop.folder / "results.jsonl")
    assert [line["id"] for line in lines] == ["1", "2", "3", "4", "5"]
    right = [line["scores"]["right_severity"]["value"] for line in lines]
    assert right == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert lines[3]["scores"]["right_severity"]["rationale"] == (
        "severity is 'low', expected 'high'"
    )
    polite = lines[4]["scores"]["polite"]
    assert polite["value"] is None and "not one of" not in polite.get("error", "x")
    assert polite["error"].startswith("judge ")  # never parsed: a scorer error, not a crash
    assert [line["scores"]["correct"].get("skipped") is not None for line in lines] == [
        False, False, True, True, True
    ]  # fmt: skip
    assert flush_all(60)  # the assessments follow the evaluation run in the background
    client = _client(shop.uri)
    for row, line in zip(ROWS, lines, strict=True):
        trace = client.get_trace(line["trace_id"])
        feedback = {a.name: a for a in trace.info.assessments if a.feedback is not None}
        expected = {a.name: a.value for a in trace.info.assessments if a.expectation is not None}
        for name, score in line["scores"].items():
            if score.get("skipped"):
                assert name not in feedback
                continue
            got = feedback[name]
            if score.get("error"):
                assert got.feedback.error is not None
                continue
            assert got.value is (score["value"] == 1.0), (row, name)
            assert got.rationale == score["rationale"]
            judged = name in ("polite", "correct")
            assert got.source.source_type == ("LLM_JUDGE" if judged else "CODE")
            if judged:
                assert got.source.source_id == "openai/gpt-4o-mini"
        assert expected == {k: v for k, v in row.items() if k.startswith("expected_")}
    (run,) = _eval_runs(shop.uri)
    metrics = run.data.metrics
    assert metrics["right_severity/mean"] == pytest.approx(0.8)
    assert metrics["polite/mean"] == 1.0 and metrics["polite/errors"] == 1
    assert metrics["correct/mean"] == 1.0 and metrics["correct/skipped"] == 3
    assert metrics["rows"] == 5 and metrics["rows_failed"] == 0
    assert metrics["workflow_cost_usd"] == pytest.approx(5 * _cost(WORKFLOW_TOKENS))
    assert metrics["judge_cost_usd"] == pytest.approx(len(shop.judge_calls) * _cost(JUDGE_TOKENS))
    assert run.data.params["dataset_digest"] == run.data.tags["eval.dataset_digest"]
    assert len(run.data.params["workflow_hash"]) == 16
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "tickets.jsonl"
    assert dataset.dataset.digest == run.data.params["dataset_digest"]
    linked = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
    assert sorted(t.info.trace_id for t in linked) == sorted(line["trace_id"] for line in lines)
    judges = client.search_traces(
        locations=[run.info.experiment_id], filter_string="tags.workflow = 'tickets.judge'"
    )
    assert len(judges) == 7  # 5 polite, 2 correct: a trace per judge run, retries inside it
    assert len(shop.judge_calls) == 7 + JUDGE_RETRIES  # the unparseable verdict was retried
    assert shop.workflow_calls == 5


def test_a_failing_gate_exits_1_and_bad_input_exits_2(shop: Shop) -> None:
    shop.write(pass_if="right_severity >= 0.9")
    failing = _eval(str(shop.file))
    assert failing.exit_code == 1
    assert "FAIL: pass_if does not hold: right_severity >= 0.9" in failing.output
    (shop.folder / "other.jsonl").write_text('{"ticket": "x", "expected_sevrity": "low"}\n')
    missing = _eval(str(shop.file), "--dataset", "other.jsonl")
    assert missing.exit_code == 2
    assert "evaluation.scorers[0].expected: column 'expected_severity' is in no row" in (
        missing.output
    )
    assert "did you mean 'expected_sevrity'?" in missing.output
    shop.write(pass_if="polite >= baseline.polite")
    assert "give --baseline" in _eval(str(shop.file)).output


def test_a_failed_run_scores_as_a_fail_on_every_scorer_counted_apart(shop: Shop) -> None:
    shop.write()
    shop.stub.script(Reply.error(400))  # the first row's only call fails (400 is not retried)
    outcome = _eval(str(shop.file), "-o", "results.jsonl", "-c", "1")
    assert outcome.exit_code == 1  # no pass_if: every row must have run
    first = _lines(shop.folder / "results.jsonl")[0]
    assert first["status"] == "failed"
    assert {name: (s["value"], s.get("run_failed")) for name, s in first["scores"].items()} == {
        "right_severity": (0.0, True), "polite": (0.0, True),
        "correct": (0.0, True), "cheap": (0.0, True),
    }  # fmt: skip
    assert "(1 run)" in outcome.output


def test_the_baseline_catches_a_worse_prompt(shop: Shop) -> None:
    gate = "polite >= baseline.polite - 0.05 and right_severity >= baseline.right_severity"
    shop.write(pass_if=gate)
    bootstrap = _eval(str(shop.file), "--baseline", "latest")  # the first: nothing to compare
    assert bootstrap.exit_code == 0, bootstrap.output
    assert "this evaluation becomes the baseline" in bootstrap.output
    (first,) = _eval_runs(shop.uri)
    assert f"Evaluation run {first.info.run_id} written to {shop.uri}" in bootstrap.output
    assert f"(--baseline {first.info.run_id} compares with it)" in bootstrap.output
    shop.write(prompt="Triage the ticket, and be rude: {ticket}", pass_if=gate)
    worse = _eval(str(shop.file), "--baseline", "latest")
    assert worse.exit_code == 1, worse.output
    assert f"baseline: run {first.info.run_id}" in worse.output
    assert "polite: passed before, fail now: 1, 2, 3, 4" in worse.output
    assert "-100.0 pts (p=0.125)" in worse.output  # 4 paired rows worse: not beyond noise
    newest = _eval_runs(shop.uri)[0]
    assert newest.data.metrics["polite/delta"] == -1.0
    assert newest.data.params["baseline_run_id"] == first.info.run_id
    by_id = _eval(str(shop.file), "--baseline", first.info.run_id)
    assert by_id.exit_code == 1
    assert _eval(str(shop.file), "--baseline", "f" * 32).exit_code == 2


def test_eval_traces_scores_recorded_runs_once(shop: Shop) -> None:
    from configurable_agents import run_workflow

    shop.write()
    results = [run_workflow(shop.file, {"ticket": t}) for t in ("a crash", "hello", "hi")]
    assert flush_all(60)
    outcome = _eval(str(shop.file), "--traces", "--period", "today")
    assert outcome.exit_code == 0, outcome.output
    assert "3 row(s) of traces" in outcome.output
    client = _client(shop.uri)
    for result in results:
        names = {a.name for a in client.get_trace(result.trace_id).info.assessments}
        assert names == {"polite", "cheap"}  # right_severity and correct need a dataset column
    again = _eval(str(shop.file), "--traces")
    assert again.exit_code == 0
    assert "no unscored trace of 'tickets'" in again.output and "written" not in again.output
    for extra in (["--dataset", "x.jsonl"], ["--llm", "mock"], ["-c", "4"]):
        assert _eval(str(shop.file), "--traces", *extra).exit_code == 2
    more = [run_workflow(shop.file, {"ticket": t}) for t in ("one", "two")]
    assert flush_all(60)
    shop.write(pass_if="right_severity >= 1 and cheap == 1")  # right_severity needs a column
    gated = _eval(str(shop.file), "--traces", "--limit", "1")
    assert gated.exit_code == 0, gated.output
    assert "no gate" in gated.output and "1 row(s) of traces" in gated.output
    last = _eval(str(shop.file), "--traces", "--limit", "5")  # pages past the scored ones
    assert "1 row(s) of traces" in last.output
    for result in more:
        names = {a.name for a in client.get_trace(result.trace_id).info.assessments}
        assert names == {"polite", "cheap"}


def test_online_scoring_samples_by_run_id_and_stops_judging_when_the_day_is_spent(
    shop: Shop,
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from configurable_agents import prepare_workflow
    from configurable_agents.evaluation.online import OnlineEvaluator, in_sample

    budget = 2.5 * _cost(JUDGE_TOKENS)  # room for three judge calls
    shop.write(online={"sample": 0.5, "scorers": ["polite", "cheap"],
                       "max_cost_usd_per_day": budget})  # fmt: skip
    prepared = prepare_workflow(shop.file)
    registry = CollectorRegistry()
    evaluator = OnlineEvaluator.attach(prepared, registry)
    assert evaluator is not None

    async def serve_runs() -> list[Any]:
        return [await prepared.arun({"ticket": f"ticket {i}"}) for i in range(16)]

    results = asyncio.run(serve_runs())
    assert evaluator.wait(60)
    sampled = [r for r in results if in_sample(r.run_id, 0.5)]
    assert 0 < len(sampled) < len(results)
    assert len(shop.judge_calls) == 3  # then the budget was spent: judges paused
    text = generate_latest(registry).decode()
    assert 'workflow_judge_budget_exhausted{workflow="tickets"} 1.0' in text
    passed = 'workflow_quality_scored_total{outcome="passed",scorer="cheap",workflow="tickets"}'
    assert f"{passed} {len(sampled)}.0" in text
    assert 'workflow_quality_score{scorer="polite",workflow="tickets"} 1.0' in text
    assert flush_all(60)
    client = _client(shop.uri)
    for result in results:
        names = {a.name for a in client.get_trace(result.trace_id).info.assessments}
        assert names == ({"cheap", "polite"} if result in sampled[:3] else
                         {"cheap"} if result in sampled else set())  # fmt: skip


def test_serve_exports_the_online_quality_metrics(shop: Shop, tmp_path: Path) -> None:
    import httpx

    from configurable_agents import prepare_workflow
    from configurable_agents.server import app as server_app
    from configurable_agents.server.jobs import JobStore

    shop.write(online={"sample": 1.0, "scorers": ["cheap"]})
    served = server_app.create_app(prepare_workflow(shop.file), jobs=JobStore(tmp_path / "r.db"))

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return (await http.get("/metrics")).text

    text = asyncio.run(scrape())
    assert 'workflow_judge_budget_exhausted{workflow="tickets"} 0.0' in text
    assert "# TYPE workflow_quality_score gauge" in text


def test_eval_against_a_real_mlflow_server(shop: Shop, tmp_path: Path) -> None:
    from .test_recording_recovery import _free_port, _mlflow_server

    with _mlflow_server(_free_port(), tmp_path / "server") as uri:
        shop.uri = uri
        shop.write(pass_if="right_severity >= 0.5")
        outcome = _eval(str(shop.file), "-o", "results.jsonl", "--wait")
        assert outcome.exit_code == 0, outcome.output
        assert "The assessments are attached to the traces" in outcome.output
        lines = _lines(shop.folder / "results.jsonl")
        client = _client(uri)  # --wait: written before eval exited, no flush here
        for line in lines:
            trace = client.get_trace(line["trace_id"])
            values = {a.name: a.value for a in trace.info.assessments if a.feedback is not None}
            assert values["right_severity"] is (line["scores"]["right_severity"]["value"] == 1.0)
        (run,) = _eval_runs(uri)
        assert run.data.metrics["right_severity/mean"] == pytest.approx(0.8)


def test_the_budget_counts_judges_exits_3_and_resume_finishes_the_rows(shop: Shop) -> None:
    shop.write()
    row_cost = _cost(WORKFLOW_TOKENS) + 2 * _cost(JUDGE_TOKENS)  # a row with both judges
    stopped = _eval(str(shop.file), "-o", "results.jsonl", "-c", "1",
                    "--max-cost-usd", str(1.5 * row_cost))  # fmt: skip
    assert stopped.exit_code == 3, stopped.output
    assert "budget reached" in stopped.output
    assert [line["id"] for line in _lines(shop.folder / "results.jsonl")] == ["1", "2"]
    resumed = _eval(str(shop.file), "-o", "results.jsonl", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len(_lines(shop.folder / "results.jsonl")) == 5
    newest = _eval_runs(shop.uri)[0]
    assert newest.data.metrics["rows"] == 5  # the means cover the rows of both invocations
    assert _eval(str(shop.file), "--resume").exit_code == 2  # nothing to resume without -o


def test_ctrl_c_exits_130_and_records_what_was_scored(shop: Shop) -> None:
    import signal
    import subprocess
    import sys
    import time

    shop.write()
    answered = shop.answer

    def slow(request: dict[str, Any]) -> Reply:
        reply = answered(request)
        return dataclasses.replace(reply, delay=30.0) if shop.workflow_calls > 2 else reply

    shop.stub.responder = slow
    process = subprocess.Popen(
        [sys.executable, "-m", "configurable_agents", "eval", str(shop.file), "-c", "1",
         "-o", "results.jsonl"],
        cwd=shop.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while shop.workflow_calls < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    statuses = [line["status"] for line in _lines(shop.folder / "results.jsonl")]
    assert statuses == ["success", "success", "cancelled"]
    assert "interrupted" in stderr
    (run,) = _eval_runs(shop.uri)
    assert run.info.status == "KILLED" and run.data.metrics["rows"] == 3


def test_serve_refuses_an_online_judge_it_cannot_call(shop: Shop) -> None:
    shop.write(
        judge={"provider": "anthropic", "model": "claude-3-5-haiku-latest"},
        online={"sample": 0.1, "scorers": ["polite"]},
    )
    outcome = CliRunner().invoke(app, ["serve", str(shop.file), "--port", "0"], env={
        "ANTHROPIC_API_KEY": ""})  # fmt: skip
    assert outcome.exit_code == 2, outcome.output
    assert "error: evaluation.online:" in outcome.output and "ANTHROPIC_API_KEY" in outcome.output
