"""Runs inside the caller's trace, and `configurable_agents.tracing`, recorded for real.

A two-node workflow calls the stub over real HTTP and records to a real SQLite store (one for the
module, its schema made once) and, in the last test, to a real `mlflow server`; the caller's spans
are MLflow's own (``@mlflow.trace``, ``mlflow.start_span``), exported by MLflow's async exporter,
ours by the background writer. Every trace is read back through ``MlflowClient``: one trace, the
caller's id, each span under the right parent, whichever part reached the store first; and
``cost_summary`` equals what the stub billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from configurable_agents import RunStatus, run_workflow, tracing
from configurable_agents.observability import context
from configurable_agents.observability.spool import Spool, WriterLock
from configurable_agents.observability.writer import MlflowWriter

from .stub_llm import Reply, StubLLM
from .test_recording_recovery import _free_port, _mlflow_server

PRICE = (0.15e-6, 0.60e-6)  # gpt-4o-mini, USD per input and output token
TOKENS = {"plan": (1_200, 150), "write": (800, 90)}
"""What the stub bills each node's call: input and output tokens."""
KEY = {"OPENAI_API_KEY": "sk-test"}
MODEL = "gpt-4o-mini"


@dataclasses.dataclass
class Shop:
    """The module's store, its workflow and the calls the stub billed."""

    folder: Path
    uri: str
    stub: StubLLM
    calls: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # workflow, node

    def workflow(self, name: str = "brief", uri: str | None = None) -> Path:
        """A file of workflow ``name``: plan then write, recording to ``uri`` (default ours)."""
        nodes = list(TOKENS)
        path = ["START", *nodes, "END"]
        data = {
            "schema_version": "1.0",
            "flow": {"name": name, "version": "3"},
            "config": {
                "llm": {"provider": "openai", "model": MODEL, "api_base": self.stub.base_url},
                "observability": {"mlflow": {"enabled": True, "tracking_uri": uri or self.uri}},
            },
            "state": {"fields": {"topic": {"type": "str", "required": True}}},
            "nodes": [
                {"id": n, "prompt": f"{n} [{name}] about {{topic}}", "outputs": [f"{n}_text"]}
                for n in nodes
            ],
            "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(path)],
        }
        file = self.folder / f"{name}.yaml"
        file.write_text(yaml.safe_dump(data, sort_keys=False))
        return file

    def billed(self, workflow: str | None = None) -> float:
        calls = [node for name, node in self.calls if workflow in (None, name)]
        return sum(TOKENS[n][0] * PRICE[0] + TOKENS[n][1] * PRICE[1] for n in calls)

    def trace(self, trace_id: str, uri: str | None = None, spans: int = 0) -> Any:
        """The trace, once our spans are written and MLflow's are: a root, every span's parent,
        a name, at least ``spans`` spans. MLflow writes a caller's spans and its trace info (the
        name) as separate tasks, in no set order: watched for here, as
        ``mlflow.flush_trace_async_logging`` takes 1-2 s; and until its exporter is done with
        the trace, MLflow's client reads it from memory (no spans: "span data is corrupted")."""
        assert tracing.flush(60)
        client = MlflowClient(uri or self.uri)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(MlflowException):
                found = client.get_trace(trace_id)
                ids = {span.span_id for span in found.data.spans}
                parents = {span.parent_id for span in found.data.spans}
                whole = None in parents and parents - {None} <= ids
                if whole and "mlflow.traceName" in found.info.tags and len(ids) >= spans:
                    return found
            time.sleep(0.02)
        raise AssertionError(f"{trace_id} is not whole")


@pytest.fixture(scope="module")
def module_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("tracing")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    MlflowWriter(uri)  # the schema, once: MLflow's exporter and our writer must not both make it
    with pytest.MonkeyPatch.context() as patch, StubLLM() as stub:
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # what set_tracking_uri sets: undone after
        mlflow.set_tracking_uri(uri)  # where the callers' traces go (experiment 0)
        shop = Shop(folder, uri, stub)

        def answer(request: dict[str, Any]) -> Reply:
            [field] = request["tools"][0]["function"]["parameters"]["properties"]
            node = field.removesuffix("_text")
            text = request["messages"][-1]["content"]
            shop.calls.append((text.split("[")[1].split("]")[0], node))
            tokens_in, tokens_out = TOKENS[node]
            return Reply.tool_calls(
                [("final_answer", {field: f"{node} done"})],
                usage={"prompt_tokens": tokens_in, "completion_tokens": tokens_out},
            )

        stub.responder = answer
        yield shop
        mlflow.flush_trace_async_logging()
        mlflow.set_tracking_uri(None)


@pytest.fixture
def shop(module_shop: Shop, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """The module's shop, with tracing on, one spool (its writer stays warm between tests) and
    the billing of this test only."""
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING", raising=False)
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(module_shop.folder / "spool.db"))
    monkeypatch.setenv("CONFIGURABLE_AGENTS_WRITER_IDLE", "30")
    monkeypatch.chdir(module_shop.folder)
    module_shop.calls.clear()
    return module_shop


def _tree(trace: Any) -> list[tuple[str, str, str | None]]:
    """(name, type, parent's name) of every span, parents before children."""
    by_id = {span.span_id: span for span in trace.data.spans}
    spans = sorted(trace.data.spans, key=lambda s: (s.start_time_ns, s.end_time_ns))
    return [
        (s.name, s.span_type, by_id[s.parent_id].name if s.parent_id in by_id else s.parent_id)
        for s in spans
    ]


def _workflow_spans(root: str | None, name: str = "brief") -> list[tuple[str, str, str | None]]:
    return [
        (f"workflow_{name}", "CHAIN", root),
        ("plan", "AGENT", f"workflow_{name}"),
        ("openai/gpt-4o-mini", "CHAT_MODEL", "plan"),
        ("write", "AGENT", f"workflow_{name}"),
        ("openai/gpt-4o-mini", "CHAT_MODEL", "write"),
    ]


def _stored(shop: Shop, trace_id: str) -> tuple[str, list[str]]:
    """The trace's state and its spans' names, as they are in the store now."""
    with contextlib.closing(sqlite3.connect(shop.folder / "mlflow.db")) as store:
        info = store.execute("SELECT status FROM trace_info WHERE request_id = ?", (trace_id,))
        [(state,)] = info.fetchall() or [("ABSENT",)]
        spans = store.execute(
            "SELECT name FROM spans WHERE trace_id = ? ORDER BY start_time_unix_nano", (trace_id,)
        )
        return state, [name for (name,) in spans]


def _same_as_the_runs_own(shop: Shop, summary: dict[str, Any], result: Any) -> None:
    """``summary`` is the cost_summary.json of the run's MLflow run (durations to a µs: a span
    keeps nanoseconds), and that run is linked to the trace."""
    client = MlflowClient(shop.uri)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    [run] = client.search_runs(
        [experiment], f"tags.`configurable_agents.run_id` = '{result.run_id}'"
    )
    assert run.data.tags["mlflow.trace_id"] == result.trace_id
    trace = next(iter(client.search_traces(run_id=run.info.run_id, locations=["0", experiment])))
    assert trace.info.trace_id == result.trace_id
    folder = shop.folder / "artifacts" / run.info.run_id
    folder.mkdir(parents=True)
    path = client.download_artifacts(run.info.run_id, "cost_summary.json", str(folder))
    artifact = json.loads(Path(path).read_text())
    mine, theirs = summary["node_breakdown"], artifact["node_breakdown"]
    assert [n.pop("duration_ms") for n in mine.values()] == pytest.approx(
        [n.pop("duration_ms") for n in theirs.values()], abs=1e-3
    )
    assert summary == artifact


def _check_summary(summary: dict[str, Any], shop: Shop, **expected: Any) -> None:
    tokens_in = sum(TOKENS[node][0] for _, node in shop.calls)
    tokens_out = sum(TOKENS[node][1] for _, node in shop.calls)
    assert summary["total_tokens"] == {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    assert summary["total_cost_usd"] == pytest.approx(shop.billed(), abs=1e-12)
    assert summary["unpriced"] is False
    for key, value in expected.items():
        assert summary[key] == value, key


def test_a_run_inside_an_mlflow_trace_is_a_child_in_the_callers_trace(shop: Shop) -> None:
    file = shop.workflow()

    @mlflow.trace(name="handle_request")
    def handle(topic: str) -> Any:
        return run_workflow(file, {"topic": topic}, env=KEY)

    result = handle("tides")
    assert result.status is RunStatus.SUCCESS
    caller = mlflow.get_last_active_trace_id()
    assert result.trace_id == caller  # one trace: the caller's

    # at once: it waits for our writer, and for MLflow's exporter until the trace is whole
    summary = tracing.cost_summary(caller)
    _check_summary(summary, shop, trace_id=caller, workflow_name="brief", status="success")
    assert summary["workflow_version"] == "3"

    trace = shop.trace(caller)
    assert _tree(trace) == [("handle_request", "UNKNOWN", None), *_workflow_spans("handle_request")]
    assert trace.info.state.value == "OK"
    assert trace.info.tags["mlflow.traceName"] == "handle_request"
    assert trace.info.experiment_id == "0"  # the caller's experiment, not ours
    _same_as_the_runs_own(shop, summary, result)
    assert summary["node_breakdown"] == {
        node: {
            "tokens": tokens_in + tokens_out,
            "cost_usd": pytest.approx(tokens_in * PRICE[0] + tokens_out * PRICE[1]),
            "model": "openai/gpt-4o-mini",
        }
        for node, (tokens_in, tokens_out) in TOKENS.items()
    }


@pytest.mark.parametrize("first", ["ours", "the caller's"])
def test_the_trace_is_whole_whichever_part_is_written_first(
    shop: Shop, first: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = shop.workflow()
    if first == "the caller's":  # a spool of its own, and no writer may drain it yet
        monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
        lock = WriterLock(Spool().path, shop.uri)
        assert lock.acquire()

    @mlflow.trace(name="caller")
    def caller() -> Any:
        with mlflow.start_span("prepare", span_type="PARSER"):
            pass
        result = run_workflow(file, {"topic": "ours first"}, env=KEY)
        if first == "ours":  # written while the caller's span is still open
            assert tracing.flush(60)
            state, names = _stored(shop, str(result.trace_id))
            assert "workflow_brief" in names and "caller" not in names
            assert state == "IN_PROGRESS"  # no root yet: the caller's span is open
        return result

    result = caller()
    if first == "the caller's":
        deadline = time.monotonic() + 60
        while (stored := _stored(shop, str(result.trace_id))) != ("OK", ["caller", "prepare"]):
            assert time.monotonic() < deadline, stored  # MLflow's exporter writes it
            time.sleep(0.02)
        assert Spool().pending(shop.uri) == 1
        lock.release()
    trace = shop.trace(result.trace_id, spans=7)
    assert _tree(trace) == [
        ("caller", "UNKNOWN", None),
        ("prepare", "PARSER", "caller"),
        *_workflow_spans("caller"),
    ]
    assert trace.info.state.value == "OK" and trace.info.tags["mlflow.traceName"] == "caller"
    assert trace.info.experiment_id == "0"
    usage = sum(map(sum, TOKENS.values()))  # MLflow's own totals count ours in either order
    assert trace.info.token_usage["total_tokens"] == usage  # (the caller's spans have none)
    cost = json.loads(trace.info.trace_metadata["mlflow.trace.cost"])
    assert cost["total_cost"] == pytest.approx(shop.billed())
    _check_summary(tracing.cost_summary(result.trace_id), shop, status="success")


def test_tracing_spans_nest_runs_and_each_other_in_one_trace(shop: Shop) -> None:
    file = shop.workflow()

    @tracing.trace(span_type="RETRIEVER")
    def find(topic: str, limit: int = 2) -> list[str]:
        return [f"{topic} {i}" for i in range(limit)]

    @tracing.trace
    async def answer(topic: str) -> str:
        documents = find(topic)
        with tracing.trace("rerank", span_type="LLM") as llm:  # a call of the user's own
            usage = {"input_tokens": 50, "output_tokens": 5, "total_tokens": 55}
            llm.set_attribute("mlflow.chat.tokenUsage", usage)
            llm.set_attribute(
                "mlflow.llm.cost", {"input_cost": 1e-5, "output_cost": 3e-6, "total_cost": 1.3e-5}
            )
        tracing.current_span().set_attribute("documents", len(documents))  # type: ignore[union-attr]
        from configurable_agents import arun_workflow

        result = await arun_workflow(file, {"topic": topic}, env=KEY)
        return str(result.trace_id)

    with tracing.trace("support request", span_type="AGENT", attributes={"ticket": 7}) as root:
        run_trace = asyncio.run(answer("bees"))
        root.set_outputs({"done": True})
    assert root.trace_id == run_trace and root.span_id is not None

    trace = shop.trace(run_trace)
    assert _tree(trace) == [
        ("support request", "AGENT", None),
        ("answer", "AGENT", "support request"),
        ("find", "RETRIEVER", "answer"),
        ("rerank", "LLM", "answer"),
        *_workflow_spans("answer"),
    ]
    spans = {span.name: span for span in trace.data.spans}
    assert spans["find"].inputs == {"topic": "bees", "limit": 2}
    assert spans["find"].outputs == ["bees 0", "bees 1"]
    assert spans["answer"].attributes["documents"] == 2
    assert spans["support request"].attributes["ticket"] == 7
    assert spans["support request"].outputs == {"done": True}
    assert trace.info.tags["mlflow.traceName"] == "support request"
    assert trace.info.state.value == "OK"

    summary = tracing.cost_summary(run_trace)
    assert summary["total_cost_usd"] == pytest.approx(shop.billed() + 1.3e-5, abs=1e-12)
    assert summary["total_tokens"]["total_tokens"] == sum(map(sum, TOKENS.values())) + 55
    assert summary["workflow_name"] == "brief" and summary["status"] == "success"


def test_inside_an_mlflow_span_a_tracing_span_and_two_workflows_share_its_trace(
    shop: Shop,
) -> None:
    brief, memo = shop.workflow(), shop.workflow("memo")
    with mlflow.start_span("session") as session:
        with tracing.trace("lookup", span_type="TOOL"):
            first = run_workflow(brief, {"topic": "owls"}, env=KEY)
        second = run_workflow(memo, {"topic": "owls"}, env=KEY)
    assert first.trace_id == second.trace_id == session.trace_id
    trace = shop.trace(session.trace_id)
    assert _tree(trace) == [
        ("session", "UNKNOWN", None),
        ("lookup", "TOOL", "session"),
        *_workflow_spans("lookup"),
        *_workflow_spans("session", "memo"),
    ]
    summary = tracing.cost_summary(session.trace_id)
    _check_summary(summary, shop, workflow_name="session", workflow_version=None)
    nodes = {f"{workflow}.{node}" for workflow in ("brief", "memo") for node in TOKENS}
    assert set(summary["node_breakdown"]) == nodes
    assert summary["node_breakdown"]["memo.write"]["tokens"] == sum(TOKENS["write"])


def test_a_failing_span_is_an_error_and_the_exception_goes_on(shop: Shop) -> None:
    @tracing.trace(span_type="TOOL")
    async def lookup(key: str) -> str:
        raise KeyError(key)

    with pytest.raises(KeyError), tracing.trace("request") as request:
        asyncio.run(lookup("missing"))
    trace = shop.trace(str(request.trace_id))
    spans = {span.name: span for span in trace.data.spans}
    assert spans["lookup"].status.status_code == "ERROR"
    assert spans["lookup"].events[0].attributes["exception.message"] == "KeyError: 'missing'"
    assert spans["request"].status.status_code == "ERROR"
    assert trace.info.state.value == "ERROR"
    summary = tracing.cost_summary(str(request.trace_id))
    assert summary["status"] == "failed" and summary["total_cost_usd"] == 0


def test_span_types_are_checked_and_tracing_off_records_nothing(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="'CHAIN' is not one of AGENT, LLM, TOOL, RETRIEVER"):
        tracing.trace("x", span_type="CHAIN")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator function"):
        tracing.trace(lambda: (yield))
    monkeypatch.setenv("CONFIGURABLE_AGENTS_TRACING", "off")
    with tracing.trace("quiet") as span:
        result = run_workflow(shop.workflow(), {"topic": "x"}, env=KEY, trace=True)
    assert span.trace_id is None and span.span_id is None
    assert _tree(shop.trace(str(result.trace_id))) == _workflow_spans(None)  # trace=True wins


def test_a_caller_in_another_store_gets_runs_as_traces_of_their_own(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = context.Parent("ab" * 16, "cd" * 8, "sqlite:///elsewhere.db", None)
    monkeypatch.setattr("configurable_agents.observability.recorder.current", lambda: elsewhere)
    with caplog.at_level(logging.WARNING):
        result = run_workflow(shop.workflow(), {"topic": "x"}, env=KEY)
    assert result.trace_id != f"tr-{elsewhere.trace_hex}"
    assert "the caller's trace tr-abab" in caplog.text and "traces of their own" in caplog.text
    assert _tree(shop.trace(str(result.trace_id))) == _workflow_spans(None)
    _same_as_the_runs_own(shop, tracing.cost_summary(str(result.trace_id)), result)


def test_cost_summary_of_a_trace_that_is_not_there(shop: Shop) -> None:
    with pytest.raises(LookupError, match="no trace tr-0000"):
        tracing.cost_summary("tr-" + "0" * 32)


def test_inside_a_callers_trace_on_a_real_mlflow_server(
    shop: Shop, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with _mlflow_server(_free_port(), tmp_path) as server:
        mlflow.set_tracking_uri(server)
        request.addfinalizer(lambda: mlflow.set_tracking_uri(shop.uri))
        file = shop.workflow("served", uri=server)

        @mlflow.trace(name="served_request")
        def handle() -> Any:
            return run_workflow(file, {"topic": "rivers"}, env=KEY)

        result = handle()
        assert result.trace_id == mlflow.get_last_active_trace_id()
        trace = shop.trace(str(result.trace_id), server)
        assert _tree(trace) == [
            ("served_request", "UNKNOWN", None),
            *_workflow_spans("served_request", "served"),
        ]
        summary = tracing.cost_summary(str(result.trace_id), tracking_uri=server)
        _check_summary(summary, shop, workflow_name="served", status="success")
