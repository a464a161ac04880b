"""Durable runs as MLflow and OTLP record them: sessions, resumed attempts, waiting runs, a
caller's W3C trace, node labels. Run results are built directly and recorded to real stores."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, load_workflow
from configurable_agents.config.loader import Workflow
from configurable_agents.config.settings import MlflowConfig
from configurable_agents.engine.events import WaitingFor
from configurable_agents.engine.records import ModelCallRecord, NodeRecord, RunResult, Spend
from configurable_agents.observability import layout, otel
from configurable_agents.observability.recorder import Recorder
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.traceparent import (
    TraceParent,
    format_traceparent,
    is_sampled,
    parse_traceparent,
)
from configurable_agents.pricing import Price, TokenUsage

from .test_otel import Receiver, _attributes

ROOT = Path(__file__).resolve().parent.parent
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _workflow(tmp_path: Path, **observability: Any) -> Workflow:
    data = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    data["nodes"][0]["name"] = "First draft"
    data["config"] = {"observability": observability}
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_workflow(path)


def _recorder(tmp_path: Path, uri: str) -> Recorder:
    config = MlflowConfig(enabled=True, tracking_uri=uri, async_logging=False)
    return Recorder(_workflow(tmp_path), config, env={}, spool=Spool(tmp_path / "spool.db"))


def _record(node: str, cost: str, *, started_ns: int) -> NodeRecord:
    """One node execution with one model call costing ``cost`` USD (half input, half output)."""
    half = Decimal(cost) / 2
    call = ModelCallRecord(
        started_ns=started_ns,
        duration_s=0.01,
        usage=TokenUsage(input_tokens=100, output_tokens=10),
        reply={"draft": "d"},
        pricer=lambda usage: Price.of(half, half, "test"),
    )
    return NodeRecord(node, "openai", "gpt-4o-mini", output={"draft": "d"}, prompt="p",
                      started_ns=started_ns, duration_s=0.02, calls=[call])  # fmt: skip


def _result(**fields: Any) -> RunResult:
    now = time.time_ns()
    defaults: dict[str, Any] = {
        "run_id": "run-1",
        "workflow": "iterative_refinement",
        "status": RunStatus.SUCCESS,
        "state": {"topic": "tides"},
        "outputs": {"headline": "H"},
        "records": [_record("draft_it", "0.004", started_ns=now)],
        "duration_s": 0.05,
        "started_ns": now,
        "inputs": {"topic": "tides"},
    }
    return RunResult(**{**defaults, **fields})


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _root(trace: Any) -> Any:
    return next(span for span in trace.data.spans if span.parent_id is None)


# -- sessions ---------------------------------------------------------------------------------


def test_a_runs_session_is_its_traces_mlflow_session(tmp_path: Path, store: str) -> None:
    recorder = _recorder(tmp_path, store)
    first = recorder.record(_result(run_id="a", session_id="chat-7"))
    second = recorder.record(_result(run_id="b", session_id="chat-7"))
    older = recorder.record(_result(run_id="c", tags={"session_id": "chat-8"}))  # the tag still
    alone = recorder.record(_result(run_id="d"))
    client = _client(store)
    for trace_id, session in ((first, "chat-7"), (second, "chat-7"), (older, "chat-8")):
        trace = client.get_trace(trace_id)
        assert trace.info.trace_metadata[layout.TRACE_SESSION] == session
        assert _root(trace).get_attribute(layout.SPAN_SESSION) == session
    assert layout.TRACE_SESSION not in client.get_trace(alone).info.trace_metadata

    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    found = client.search_traces(
        locations=[experiment],
        filter_string=f"metadata.`{layout.TRACE_SESSION}` = 'chat-7'",
        include_spans=False,
    )
    assert {t.info.trace_id for t in found} == {first, second}
    ui = f"request_metadata.{layout.TRACE_SESSION} = 'chat-7'"  # the UI's session filter
    found = client.search_traces(locations=[experiment], filter_string=ui, include_spans=False)
    assert {t.info.trace_id for t in found} == {first, second}
    # what the MLflow UI's Sessions page groups by: the store's sessions
    sessions = client._tracking_client.store.find_completed_sessions(
        experiment, 0, int(time.time() * 1000) + 60_000
    )
    assert sorted(s.session_id for s in sessions) == ["chat-7", "chat-8"]


def test_sessions_on_a_real_mlflow_server(tmp_path: Path) -> None:
    """Through a tracking server, whose traces are created with their info first (linked to
    their workflow version) and their spans sent after."""
    from .test_recording_recovery import _free_port, _mlflow_server

    with _mlflow_server(_free_port(), tmp_path / "server") as uri:
        recorder = _recorder(tmp_path, uri)
        first = recorder.record(_result(run_id="a", session_id="chat-7", tags={"user_id": "u1"}))
        second = recorder.record(_result(run_id="b", session_id="chat-7", attempt=2,
                                         resumed_from=first))  # fmt: skip
        recorder.record(_result(run_id="c", session_id="chat-8"))
        client = _client(uri)
        experiment = client.get_experiment_by_name("configurable_agents").experiment_id
        ui = f"request_metadata.{layout.TRACE_SESSION} = 'chat-7'"
        found = client.search_traces(locations=[experiment], filter_string=ui)
        assert {t.info.trace_id for t in found} == {first, second}
        info = client.get_trace(first).info
        assert info.trace_metadata[layout.TRACE_USER] == "u1"
        assert client.get_trace(second).info.tags[layout.TAG_RESUMED_FROM] == first


def test_a_file_store_trace_has_its_session_too(tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'mlruns'}"
    trace_id = _recorder(tmp_path, uri).record(_result(session_id="chat-9", tags={"user_id": "u1"}))
    info = _client(uri).get_trace(trace_id).info
    assert info.trace_metadata[layout.TRACE_SESSION] == "chat-9"
    assert info.trace_metadata[layout.TRACE_USER] == "u1"


# -- resumed and waiting runs -------------------------------------------------------------------


def test_a_resumed_attempt_names_the_trace_it_resumed_and_counts_only_its_own_calls(
    tmp_path: Path, store: str
) -> None:
    recorder = _recorder(tmp_path, store)
    waits = WaitingFor("revise", "approval", "Approve the draft?", {}, label="Revise it")
    first = recorder.record(
        _result(status=RunStatus.WAITING, session_id="run-1", waiting=[waits], outputs={})
    )
    now = time.time_ns()
    resumed = _result(
        session_id="run-1",
        attempt=2,
        resumed_from=first,
        earlier=Spend(Decimal("0.004"), TokenUsage(input_tokens=100, output_tokens=10), 1),
        records=[
            _record("revise", "0.002", started_ns=now),
            _record("title", "0.001", started_ns=now),
        ],
        started_ns=now,
    )
    assert resumed.cost_usd == Decimal("0.007")  # the whole run; its trace has 0.003
    second = recorder.record(resumed)
    client = _client(store)

    waiting = client.get_trace(first)
    assert waiting.info.tags[layout.TAG_STATUS] == "waiting"
    assert waiting.info.state == "OK"  # waiting is not a failure
    assert layout.TAG_ATTEMPT not in waiting.info.tags  # a first attempt
    (asks,) = _root(waiting).get_attribute(layout.SPAN_WAITING)
    assert asks == waits.to_dict()

    trace = client.get_trace(second)
    tags = trace.info.tags
    assert (tags[layout.TAG_ATTEMPT], tags[layout.TAG_RESUMED_FROM]) == ("2", first)
    assert tags[layout.TAG_STATUS] == "success"
    root = _root(trace)
    assert root.get_attribute(layout.SPAN_ATTEMPT) == 2
    assert root.get_attribute(layout.SPAN_RESUMED_FROM) == first
    assert root.get_attribute(layout.SPAN_TOTAL_COST) == pytest.approx(0.003)
    assert root.get_attribute(layout.SPAN_WAITING) is None
    cost = json.loads(trace.info.trace_metadata[layout.TRACE_COST])
    assert cost["total_cost"] == pytest.approx(0.003)
    usage = json.loads(trace.info.trace_metadata[layout.TRACE_TOKENS])
    assert usage["total_tokens"] == 2 * 110
    # one session: both attempts
    for trace_id in (first, second):
        assert client.get_trace(trace_id).info.trace_metadata[layout.TRACE_SESSION] == "run-1"

    experiment = trace.info.experiment_id
    runs = {r.data.tags[layout.RUN_TAG_TRACE]: r for r in client.search_runs([experiment])}
    run = runs[second]
    assert run.data.metrics[layout.METRIC_TOTAL_COST] == pytest.approx(0.003)
    assert run.data.metrics[layout.METRIC_TOTAL_TOKENS] == 220
    assert (run.data.tags[layout.TAG_ATTEMPT], run.data.tags[layout.TAG_RESUMED_FROM]) == (
        "2", first)  # fmt: skip
    paused = runs[first]
    assert paused.info.status == "FINISHED" and paused.data.tags["run_status"] == "waiting"
    names = {a.path for a in client.list_artifacts(paused.info.run_id)}
    assert "waiting.json" in names and "error.json" not in names
    summary = Path(client.download_artifacts(run.info.run_id, "cost_summary.json", str(tmp_path)))
    assert json.loads(summary.read_text())["total_cost_usd"] == pytest.approx(0.003)


def test_a_waiting_runs_prompt_is_left_out_without_log_prompts(tmp_path: Path) -> None:
    from configurable_agents.observability.spans import build_trace

    waits = WaitingFor("revise", "input", "Your secret answer?", {"type": "object"})
    result = _result(status=RunStatus.WAITING, waiting=[waits])
    _, spans = build_trace(result, _workflow(tmp_path), log_prompts=False)
    (asks,) = json.loads(spans[0]["attributes"][layout.SPAN_WAITING])
    assert asks["node"] == "revise" and "prompt" not in asks


# -- node labels ------------------------------------------------------------------------------


def test_a_node_with_a_name_names_its_span_and_keeps_its_id(tmp_path: Path, store: str) -> None:
    now = time.time_ns()
    result = _result(
        records=[
            _record("draft_it", "0.001", started_ns=now),
            _record("title", "0", started_ns=now),
        ]
    )
    trace = _client(store).get_trace(_recorder(tmp_path, store).record(result))
    nodes = {s.get_attribute("node.id"): s for s in trace.data.spans if s.span_type == "AGENT"}
    assert nodes["draft_it"].name == "First draft"
    assert nodes["draft_it"].get_attribute(layout.SPAN_NODE_LABEL) == "First draft"
    assert nodes["title"].name == "title"
    assert nodes["title"].get_attribute(layout.SPAN_NODE_LABEL) is None


# -- a caller's W3C trace ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TRACEPARENT, (CALLER_TRACE, CALLER_SPAN)),
        (f"  {TRACEPARENT}\t", (CALLER_TRACE, CALLER_SPAN)),  # surrounding blanks
        (f"01-{CALLER_TRACE}-{CALLER_SPAN}-00-extra", (CALLER_TRACE, CALLER_SPAN)),  # later
        (f"00-{'0' * 32}-{CALLER_SPAN}-01", None),  # all-zero trace id
        (f"00-{CALLER_TRACE}-{'0' * 16}-01", None),  # all-zero span id
        (f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01", None),  # version ff is forbidden
        (f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra", None),  # version 00 has four fields
        (f"0x-{CALLER_TRACE}-{CALLER_SPAN}-01", None),
        (f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01", None),  # lower-case hex only
        (f"00-{CALLER_TRACE[:-1]}-{CALLER_SPAN}-01", None),
        (f"00-{CALLER_TRACE}-{CALLER_SPAN}0-01", None),
        (f"00-{CALLER_TRACE}-{CALLER_SPAN}-1", None),
        (f"00_{CALLER_TRACE}_{CALLER_SPAN}_01", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_traceparent(text: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_traceparent(text) == expected


def test_traceparent_flags_and_formatting() -> None:
    assert is_sampled(TRACEPARENT) and not is_sampled(TRACEPARENT[:-2] + "00")
    assert is_sampled(TRACEPARENT[:-2] + "03") and not is_sampled("junk")
    assert format_traceparent(CALLER_TRACE, CALLER_SPAN) == TRACEPARENT
    assert parse_traceparent(format_traceparent(CALLER_TRACE, CALLER_SPAN, sampled=False)) == (
        TraceParent(CALLER_TRACE, CALLER_SPAN)
    )
    with pytest.raises(ValueError):
        format_traceparent("0" * 32, CALLER_SPAN)


def test_the_mlflow_trace_names_the_callers_trace_and_span(tmp_path: Path, store: str) -> None:
    trace_id = _recorder(tmp_path, store).record(_result(traceparent=TRACEPARENT))
    trace = _client(store).get_trace(trace_id)
    tags = trace.info.tags
    assert (tags[layout.TAG_PARENT_TRACE], tags[layout.TAG_PARENT_SPAN]) == (
        CALLER_TRACE, CALLER_SPAN)  # fmt: skip
    assert trace_id != f"tr-{CALLER_TRACE}"  # a run of its own in MLflow, as each attempt is
    (run,) = _client(store).search_runs([trace.info.experiment_id])
    assert run.data.tags[layout.TAG_PARENT_TRACE] == CALLER_TRACE

    bad = _recorder(tmp_path, store).record(_result(traceparent=f"00-{'0' * 32}-{CALLER_SPAN}-01"))
    assert layout.TAG_PARENT_TRACE not in _client(store).get_trace(bad).info.tags


@pytest.fixture(scope="module")
def receiver() -> Any:
    running = Receiver()
    yield running
    running.server.shutdown()


def test_otlp_export_continues_the_callers_trace(tmp_path: Path, receiver: Receiver) -> None:
    workflow = _workflow(
        tmp_path,
        opentelemetry={
            "enabled": True, "endpoint": receiver.endpoint, "service_name": "traceparent-test"},
    )  # fmt: skip
    exporter = otel.OtlpExporter(workflow, env={})
    own = "1" * 32
    result = _result(traceparent=TRACEPARENT, trace_id=f"tr-{own}")
    exporter.run_finished(result)
    unsampled = _result(run_id="not-sampled", traceparent=f"00-{'2' * 32}-{CALLER_SPAN}-00")
    exporter.run_finished(unsampled)
    plain = _result(run_id="plain", trace_id=f"tr-{'3' * 32}", traceparent="garbage")
    exporter.run_finished(plain)
    assert otel.flush_all(timeout=60)

    spans = receiver.spans("traceparent-test")
    by_run: dict[str, list[Any]] = {}
    for span in spans:
        trace = span.trace_id.hex()
        by_run.setdefault(trace, []).append(span)
    assert set(by_run) == {CALLER_TRACE, "3" * 32}  # the caller's sampled flag is off: not sent
    continued = by_run[CALLER_TRACE]
    (root,) = [s for s in continued if _attributes(s).get("mlflow.spanType") == "CHAIN"]
    assert root.parent_span_id.hex() == CALLER_SPAN
    assert root.flags & 0x300 == 0x300  # the parent is remote (OTLP span flags, proto >= 1.4)
    assert all(s.parent_span_id == root.span_id for s in continued if s is not root
               and _attributes(s)["mlflow.spanType"] == "AGENT")  # fmt: skip
    assert _attributes(root)["mlflow.traceRequestId"] == f"tr-{own}"  # to find it in MLflow
    assert _attributes(root)[f"mlflow.traceTag.{layout.TAG_PARENT_SPAN}"] == CALLER_SPAN
    (agent,) = [s for s in continued if _attributes(s)["mlflow.spanType"] == "AGENT"]
    assert agent.name == "First draft"
    assert _attributes(agent)["gen_ai.agent.id"] == "draft_it"
    assert _attributes(agent)["gen_ai.agent.name"] == "First draft"
    (plain_root,) = [s for s in by_run["3" * 32] if not s.parent_span_id]
    assert _attributes(plain_root)["workflow.run_id"] == "plain"
