"""Sub-workflows (a node `workflow: FILE`): validated recursively and located in the file where
each problem is; run as part of the parent run, with their spans nested under the node's span
(MLflow and OTLP), their cost and tokens in the parent's totals and budget, their checkpoints in
the parent's thread (a failure, a kill or a person inside resume through the parent). Model
calls cross real HTTP to the stub."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import (
    RunStatus,
    load_workflow,
    prepare_workflow,
    run_workflow,
    validate_workflow,
)
from configurable_agents.config import Diagnostic
from configurable_agents.engine import calls
from configurable_agents.engine.durable import CHECKPOINTS_ENV, alist_runs
from configurable_agents.engine.events import RunEvent
from configurable_agents.engine.records import RunResult
from configurable_agents.observability.spans import build_trace

from .stub_llm import JSON, Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
FINAL = "final_answer"
ENV = {"OPENAI_API_KEY": "test"}
INPUT_PRICE, OUTPUT_PRICE = Decimal("0.15") / 10**6, Decimal("0.60") / 10**6  # gpt-4o-mini
USAGE = {"prep": (1_000, 100), "label": (2_000, 200), "score": (3_000, 300), "answer": (500, 50)}
ANSWERS: dict[str, JSON] = {
    "prep": {"clean": "a clean ticket"},
    "label": {"category": "billing"},
    "score": {"urgency": 4},
    "answer": {"reply": "we will refund you"},
}


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "BACKOFF_BASE_S", 0.001)


def _cost(node: str) -> Decimal:
    prompt, completion = USAGE[node]
    return prompt * INPUT_PRICE + completion * OUTPUT_PRICE


def _asked(request: JSON) -> str:
    """The node a request is for (its prompt starts ``task NODE``)."""
    return json.dumps(request["messages"]).split("task ")[1].split(" ")[0]


def _responder(fail: set[str] | None = None) -> Callable[[JSON], Reply]:
    """Each node's answer with its usage; a node in ``fail`` gets a 400 the first time."""
    failing = set(fail or ())

    def reply(request: JSON) -> Reply:
        node = _asked(request)
        if node in failing:
            failing.discard(node)
            return Reply.error(400)
        prompt, completion = USAGE[node]
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        return Reply.tool_calls([(FINAL, ANSWERS[node])], usage=usage)

    return reply


def _llm(stub: StubLLM | None) -> JSON:
    if stub is None:
        return {"provider": "mock", "model": "mock"}
    return {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url}


def _edges(*nodes: str) -> list[JSON]:
    chain = ["START", *nodes, "END"]
    return [{"from": a, "to": b} for a, b in itertools.pairwise(chain)]


def _child(tmp_path: Path, stub: StubLLM | None, *, human: bool = False) -> Path:
    """classify.yaml: `label` then (a person's `review`, then) `score`."""
    nodes: list[JSON] = [
        {"id": "label", "prompt": "task label of {text}", "outputs": ["category"]},
        {"id": "score", "prompt": "task score of {text} as {category}", "outputs": ["urgency"]},
    ]
    if human:
        nodes.insert(1, {"id": "review", "type": "human", "prompt": "Right? {category}",
                         "outputs": ["ok"], "output_schema": {"type": "bool"}})  # fmt: skip
    data = {
        "schema_version": "1.0",
        "flow": {"name": "classify"},
        "config": {"llm": _llm(stub)},
        "state": {
            "fields": {
                "text": {"type": "str", "required": True},
                "category": {"type": "str", "default": ""},
                "urgency": {"type": "int", "default": 0},
            }
        },
        "nodes": nodes,
        "edges": _edges(*(n["id"] for n in nodes)),
    }
    path = tmp_path / "flows" / "classify.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _parent(
    tmp_path: Path,
    stub: StubLLM | None,
    *,
    human: bool = False,
    checkpoints: bool = False,
    mlflow: str | None = None,
    otlp: str | None = None,
    **execution: Any,
) -> Path:
    """triage.yaml: `prep`, then the sub-workflow `classify` (flows/classify.yaml), `answer`."""
    _child(tmp_path, stub, human=human)
    if checkpoints:
        execution["checkpoints"] = {"enabled": True, "store": f"sqlite:///{tmp_path / 'cp.db'}"}
    config: JSON = {"llm": _llm(stub), "execution": {"max_retries": 0, **execution}}
    if mlflow is not None:
        config["observability"] = {
            "mlflow": {"enabled": True, "tracking_uri": mlflow, "async_logging": False}
        }
    if otlp is not None:
        config["observability"] = {
            "opentelemetry": {"enabled": True, "endpoint": otlp, "service_name": "subflows"}
        }
    data = {
        "schema_version": "1.0",
        "flow": {"name": "triage"},
        "config": config,
        "state": {
            "fields": {
                "ticket": {"type": "str", "required": True},
                "topic": {"type": "str", "default": ""},
                "level": {"type": "int", "default": 0},
            }
        },
        "nodes": [
            {"id": "prep", "prompt": "task prep of {ticket}", "outputs": ["clean"]},
            {
                "id": "classify",
                "name": "Classifier",
                "workflow": "flows/classify.yaml",
                "inputs": {"text": "{clean}"},
                "outputs": {"category": "topic", "urgency": "level"},
            },
            {
                "id": "answer",
                "prompt": "task answer of {clean} about {topic} at {level}",
                "outputs": ["reply"],
            },
        ],
        "edges": _edges("prep", "classify", "answer"),
    }
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _prepare(path: Path, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return prepare_workflow(path, env={**ENV, **(env or {})}, **{"trace": False, **kwargs})


def _run(prepared: Any, inputs: JSON | None = None, **kwargs: Any) -> RunResult:
    return asyncio.run(prepared.arun(inputs, **kwargs))


def _resume(prepared: Any, run_id: str, inputs: JSON | None = None) -> RunResult:
    return asyncio.run(prepared.aresume(run_id, inputs))


def _requests(stub: StubLLM) -> list[str]:
    return [_asked(r) for r in stub.requests]


# -- a run with a sub-workflow -------------------------------------------------------------------


def test_a_sub_workflow_runs_in_the_run_with_its_cost_nested_spans_and_path_events(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stub_llm.responder = _responder()
    events: list[RunEvent] = []
    result = run_workflow(
        _parent(tmp_path, stub_llm, mlflow=store), {"ticket": "charged twice"}, env=ENV,
        on_event=events.append,
    )  # fmt: skip
    assert result.status is RunStatus.SUCCESS, result.error
    assert _requests(stub_llm) == ["prep", "label", "score", "answer"]
    assert "task label of a clean ticket" in json.dumps(stub_llm.requests[1]["messages"])
    assert "about billing at 4" in json.dumps(stub_llm.requests[3]["messages"])
    assert result.outputs == {
        "clean": "a clean ticket", "topic": "billing", "level": 4, "reply": "we will refund you"
    }  # fmt: skip
    assert "category" not in result.state and "text" not in result.state  # the child's own

    by_id = {r.node_id: r for r in result.records}
    assert [r.node_id for r in result.records] == [
        "prep", "classify/label", "classify/score", "classify", "answer"]  # fmt: skip
    workflow_node = by_id["classify"]
    assert (workflow_node.provider, workflow_node.model, workflow_node.calls) == (
        "workflow", "classify", [])  # fmt: skip
    assert workflow_node.inputs == {"text": "a clean ticket"}
    assert workflow_node.output == {"topic": "billing", "level": 4}
    for inner in ("classify/label", "classify/score"):
        assert by_id[inner].parent_execution_id == workflow_node.execution_id
    assert by_id["prep"].parent_execution_id is None

    # the parent's totals are what the stub billed, at the model's price
    assert result.cost_usd == sum((_cost(n) for n in USAGE), Decimal(0))
    assert result.usage.input_tokens == sum(p for p, _ in USAGE.values())
    assert result.usage.output_tokens == sum(c for _, c in USAGE.values())

    started = [e.data["node"] for e in events if e.type == "node_started"]
    finished = [e.data["node"] for e in events if e.type == "node_finished"]
    assert started == ["prep", "classify", "classify/label", "classify/score", "answer"]
    assert finished == ["prep", "classify/label", "classify/score", "classify", "answer"]
    done = next(e for e in events if e.type == "node_finished" and e.data["node"] == "classify")
    assert done.data["label"] == "Classifier"
    assert events[-1].data["cost_usd"] == pytest.approx(float(result.cost_usd))

    from mlflow.tracking import MlflowClient

    trace = MlflowClient(store).get_trace(result.trace_id)
    spans = {s.span_id: s for s in trace.data.spans}
    (root,) = [s for s in spans.values() if s.parent_id is None]
    nodes = {s.get_attribute("node.id"): s for s in spans.values() if s.span_type == "AGENT"}
    assert set(nodes) == {"prep", "classify", "classify/label", "classify/score", "answer"}
    assert nodes["classify"].name == "Classifier"
    assert nodes["classify"].get_attribute("node.workflow") == "classify"
    assert nodes["classify"].inputs == {"inputs": {"text": "a clean ticket"}}
    for top in ("prep", "classify", "answer"):
        assert nodes[top].parent_id == root.span_id
    for inner in ("label", "score"):
        assert nodes[f"classify/{inner}"].name == inner
        assert nodes[f"classify/{inner}"].parent_id == nodes["classify"].span_id
    chats = [s for s in spans.values() if s.span_type == "CHAT_MODEL"]
    assert len(chats) == 4
    under = {spans[c.parent_id].get_attribute("node.id") for c in chats}
    assert under == {"prep", "classify/label", "classify/score", "answer"}
    child_cost = float(_cost("label") + _cost("score"))
    assert nodes["classify"].get_attribute("node.cost_usd") == pytest.approx(child_cost)
    assert root.get_attribute("workflow.total_cost_usd") == pytest.approx(float(result.cost_usd))
    usage = json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"])
    assert usage["total_tokens"] == result.usage.total_tokens
    (run,) = MlflowClient(store).search_runs([trace.info.experiment_id])
    assert run.data.metrics["total_cost_usd"] == pytest.approx(float(result.cost_usd))
    assert run.data.metrics["node_classify/score_cost_usd"] == pytest.approx(float(_cost("score")))


def test_sub_workflow_spans_are_nested_in_the_otlp_export(tmp_path: Path) -> None:
    from configurable_agents.observability import otel

    from .test_otel import Receiver, TraceIds, _attributes

    receiver = Receiver()
    try:
        prepared = _prepare(_parent(tmp_path, None, otlp=receiver.endpoint), llm="mock")
        prepared.observers.insert(0, TraceIds())
        result = _run(prepared, {"ticket": "t"})
        assert result.status is RunStatus.SUCCESS, result.error
        assert otel.flush_all(timeout=60)
        spans = receiver.spans("subflows")
    finally:
        receiver.server.shutdown()
    nodes = {_attributes(s).get("node.id"): s for s in spans}
    root = next(s for s in spans if not s.parent_span_id)
    assert nodes["classify"].parent_span_id == root.span_id
    assert nodes["classify/label"].parent_span_id == nodes["classify"].span_id
    assert nodes["classify/score"].parent_span_id == nodes["classify"].span_id
    assert _attributes(nodes["classify/label"])["gen_ai.agent.id"] == "classify/label"


def test_a_budget_reached_inside_the_sub_workflow_stops_the_run_with_partial_state(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    stub_llm.responder = _responder()
    # prep and label use 3,300 tokens: score's call (about 40 more) would go over 3,310
    prepared = _prepare(_parent(tmp_path, stub_llm, max_tokens=3_310))
    result = _run(prepared, {"ticket": "charged twice"})
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert "token budget of 3310" in (result.error or "")
    assert "'classify/score'" in (result.error or "")
    assert _requests(stub_llm) == ["prep", "label"]
    assert result.state["clean"] == "a clean ticket"  # partial state: what completed
    assert result.state["topic"] == "" and "reply" not in result.state
    assert [r.node_id for r in result.records] == [
        "prep", "classify/label", "classify/score", "classify"]  # fmt: skip
    assert "token budget" in (result.records[-2].error or "")  # score: no call made
    assert "token budget" in (result.records[-1].error or "")
    assert result.cost_usd == _cost("prep") + _cost("label")

    # a cost budget counts the sub-workflow's calls the same way
    stub_llm.reset()
    stub_llm.responder = _responder()
    budget = float(_cost("prep") + _cost("label") + _cost("score") / 2)
    result = _run(_prepare(_parent(tmp_path, stub_llm, max_cost_usd=budget)), {"ticket": "t"})
    assert result.status is RunStatus.BUDGET_EXCEEDED, result.error
    assert _requests(stub_llm) == ["prep", "label", "score"]
    assert "'classify/answer'" not in (result.error or "") and "'answer'" in (result.error or "")


def test_a_failure_inside_the_sub_workflow_resumes_there_paying_each_call_once(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    stub_llm.responder = _responder(fail={"score"})
    prepared = _prepare(_parent(tmp_path, stub_llm, checkpoints=True))
    first = _run(prepared, {"ticket": "charged twice"})
    assert first.status is RunStatus.FAILED and "400" in (first.error or "")
    assert "classify" in (first.error or "")
    assert _requests(stub_llm) == ["prep", "label", "score"]
    assert first.cost_usd == _cost("prep") + _cost("label")

    resumed = _resume(prepared, first.run_id)
    assert resumed.status is RunStatus.SUCCESS, resumed.error
    assert _requests(stub_llm) == ["prep", "label", "score", "score", "answer"]
    assert [r.node_id for r in resumed.records] == [
        "classify/score", "classify", "answer"]  # fmt: skip
    assert resumed.outputs["topic"] == "billing" and resumed.outputs["level"] == 4
    assert resumed.earlier.cost_usd == _cost("prep") + _cost("label")
    assert resumed.cost_usd == sum((_cost(n) for n in USAGE), Decimal(0))
    (entry,) = asyncio.run(alist_runs(prepared.workflow, env=prepared.env))
    assert (entry.status, entry.attempt, entry.spent.cost_usd) == (
        "success", 2, resumed.cost_usd)  # fmt: skip


def test_a_process_killed_inside_the_sub_workflow_resumes_counting_each_call_once(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    answer = _responder()
    stalled = {"done": False}

    def reply(request: JSON) -> Reply:
        if _asked(request) == "score" and not stalled["done"]:
            stalled["done"] = True
            return Reply.tool_calls([(FINAL, {"urgency": 1})], delay=60)  # cut short by the kill
        return answer(request)

    stub_llm.responder = reply
    path = _parent(tmp_path, stub_llm)
    store = f"sqlite:///{tmp_path / 'killed.db'}"
    code = (
        "import sys; from configurable_agents import run_workflow; "
        "run_workflow(sys.argv[1], {'ticket': 'bees'}, trace=False)"
    )
    env = {**os.environ, **ENV, CHECKPOINTS_ENV: store}
    data = yaml.safe_load(path.read_text())
    data["config"]["execution"]["checkpoints"] = {"enabled": True}
    path.write_text(yaml.safe_dump(data))
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while stub_llm.calls < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before score was asked"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _requests(stub_llm) == ["prep", "label", "score"]

    prepared = _prepare(path, {CHECKPOINTS_ENV: store})
    (entry,) = asyncio.run(alist_runs(prepared.workflow, env=prepared.env))
    assert (entry.status, entry.attempt) == ("running", 1)
    resumed = _resume(prepared, entry.run_id)
    assert resumed.status is RunStatus.SUCCESS, resumed.error
    assert _requests(stub_llm) == ["prep", "label", "score", "score", "answer"]
    # label completed inside the sub-workflow before the kill: its checkpoint says what it cost
    assert resumed.earlier.cost_usd == _cost("prep") + _cost("label")
    assert resumed.cost_usd == sum((_cost(n) for n in USAGE), Decimal(0))


def test_a_person_inside_the_sub_workflow_is_asked_and_answered_through_the_parent(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    stub_llm.responder = _responder(fail={"score"})
    prepared = _prepare(_parent(tmp_path, stub_llm, human=True))  # checkpoints on by default
    first = _run(prepared, {"ticket": "charged twice"})
    assert first.status is RunStatus.WAITING, first.error
    (waiting,) = first.waiting
    assert (waiting.node, waiting.kind, waiting.prompt) == (
        "classify/review", "input", "Right? billing")  # fmt: skip
    assert waiting.outputs["properties"]["ok"]["type"] == "boolean"
    assert [r.node_id for r in first.records] == ["prep", "classify/label", "classify"]

    answered = _resume(prepared, first.run_id, {"ok": True})  # then score fails once
    assert answered.status is RunStatus.FAILED and "400" in (answered.error or "")
    assert [r.node_id for r in answered.records] == [
        "classify/review", "classify/score", "classify"]  # fmt: skip

    done = _resume(prepared, first.run_id)  # the answered question is not asked again
    assert done.status is RunStatus.SUCCESS, done.error
    assert done.attempt == 3 and not done.waiting
    assert _requests(stub_llm) == ["prep", "label", "score", "score", "answer"]
    assert done.outputs["level"] == 4
    assert done.cost_usd == sum((_cost(n) for n in USAGE), Decimal(0))


def test_a_workflow_node_as_a_fan_out_target_runs_its_sub_workflow_per_item(
    tmp_path: Path,
) -> None:
    _child(tmp_path, None)
    data = {
        "schema_version": "1.0",
        "flow": {"name": "many"},
        "config": {"llm": _llm(None), "execution": {"checkpoints": {"enabled": True}}},
        "state": {"fields": {"tickets": {"type": "list[str]", "required": True}}},
        "nodes": [{"id": "each", "workflow": "flows/classify.yaml",
                   "inputs": {"text": "#{item_index}: {item}"}, "outputs": ["urgency"]}],
        "edges": [
            {"from": "START", "parallel": {"items_field": "tickets", "target_node": "each",
                                           "collect_field": "levels"}},
            {"from": "each", "to": "END"},
        ],
    }  # fmt: skip
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(data))
    result = _run(_prepare(path), {"tickets": ["a", "b", "c"]})
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.outputs["levels"] == [1, 1, 1]  # the mock's int
    workflow_nodes = [r for r in result.records if r.node_id == "each"]
    assert sorted(r.item_index for r in workflow_nodes) == [0, 1, 2]
    assert sorted(r.inputs["text"] for r in workflow_nodes) == ["#0: a", "#1: b", "#2: c"]
    executions = {r.execution_id for r in workflow_nodes}
    inner = [r for r in result.records if r.node_id.startswith("each/")]
    assert len(inner) == 6 and {r.parent_execution_id for r in inner} == executions
    _, spans = build_trace(result, load_workflow(path))
    assert sum(1 for s in spans if s["name"] == "label") == 3


def test_the_example_runs_offline(examples_dir: Path) -> None:
    result = run_workflow(
        examples_dir / "subworkflow" / "triage.yaml", {"ticket": "charged twice"}, llm="mock"
    )
    assert result.status is RunStatus.SUCCESS, result.error
    assert set(result.outputs) == {"topic", "urgency", "reply"}
    assert [r.node_id for r in result.records] == ["classify/label", "classify", "answer"]


def test_a_parent_budget_needs_the_sub_workflow_models_priced(tmp_path: Path) -> None:
    from configurable_agents import SetupError

    path = _parent(tmp_path, None, max_cost_usd=1.0)
    child = tmp_path / "flows" / "classify.yaml"
    data = yaml.safe_load(child.read_text())
    data["config"]["llm"] = {"provider": "openai", "model": "no-such-model-xyz"}
    child.write_text(yaml.safe_dump(data))
    with pytest.raises(SetupError, match=r"no-such-model-xyz has no known price.*classify/label"):
        _prepare(path)


# -- validation ----------------------------------------------------------------------------------


def _files(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path / next(iter(files))


PARENT = """\
schema_version: "1.0"
flow: {name: parent}
state:
  fields:
    ticket: {type: str, required: true}
    tags: {type: "list[str]", default: []}
    level: {type: str, default: ""}
nodes:
  - id: classify
    workflow: CHILD
    inputs: INPUTS
    outputs: OUTPUTS
edges:
  - {from: START, to: classify}
  - {from: classify, to: END}
"""

CHILD = """\
schema_version: "1.0"
flow: {name: child}
state:
  fields:
    text: {type: str, required: true}
    urgency: {type: int, default: 0}
nodes:
  - {id: label, prompt: "Label {text}", outputs: [category]}
edges:
  - {from: START, to: label}
  - {from: label, to: END}
"""


def _parent_text(child: str = "child.yaml", inputs: str = '{text: "{ticket}"}',
                 outputs: str = "[category]") -> str:  # fmt: skip
    return PARENT.replace("CHILD", child).replace("INPUTS", inputs).replace("OUTPUTS", outputs)


def _errors(path: Path) -> list[Diagnostic]:
    workflow, diagnostics = validate_workflow(path)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert workflow is None and errors, diagnostics
    return errors


def _one(path: Path) -> Diagnostic:
    errors = _errors(path)
    assert len(errors) == 1, "\n".join(d.format() for d in errors)
    return errors[0]


def test_a_valid_parent_loads_its_sub_workflow_and_types_its_outputs(tmp_path: Path) -> None:
    path = _files(tmp_path, **{"parent.yaml": _parent_text(), "child.yaml": CHILD})
    workflow, diagnostics = validate_workflow(path)
    assert workflow is not None, [d.format() for d in diagnostics]
    assert workflow.subworkflows["classify"].name == "child"
    assert workflow.fields["category"].type == "str"  # implicit, typed by the child
    assert workflow.config.nodes[0].type == "workflow"  # implied by `workflow:`
    from configurable_agents.observability.models import workflow_hash

    (tmp_path / "child.yaml").write_text(CHILD.replace("Label {text}", "Label this: {text}"))
    changed = load_workflow(path)  # a new version of the child is a new version of the parent
    assert workflow_hash(changed) != workflow_hash(workflow)


def test_a_missing_sub_workflow_file_is_located_at_the_reference_with_a_suggestion(
    tmp_path: Path,
) -> None:
    path = _files(tmp_path, **{"parent.yaml": _parent_text("chlid.yaml"), "child.yaml": CHILD})
    error = _one(path)
    assert (error.file, error.line, error.path) == (str(path), 10, "nodes[0].workflow")
    assert "no workflow file 'chlid.yaml'" in error.message
    assert error.suggestion == "child.yaml"


def test_an_error_in_the_sub_workflow_is_located_in_its_file_via_the_parent(
    tmp_path: Path,
) -> None:
    child = CHILD.replace("Label {text}", "Label {txt}")
    path = _files(tmp_path, **{"parent.yaml": _parent_text(), "child.yaml": child})
    error = _one(path)
    assert (error.file, error.line, error.path) == (
        str(tmp_path / "child.yaml"), 8, "nodes[0].prompt")  # fmt: skip
    assert "no state field 'txt'" in error.message and error.suggestion == "text"
    assert error.via == (f"{path}:10:15",)
    assert f"(in the sub-workflow used at {path}:10:15)" in error.format()


def test_a_cycle_across_files_is_refused_where_the_reference_closing_it_is(
    tmp_path: Path,
) -> None:
    a = _parent_text("b.yaml")
    b = CHILD.replace(
        '  - {id: label, prompt: "Label {text}", outputs: [category]}',
        '  - {id: label, workflow: a.yaml, inputs: {ticket: "{text}"}, outputs: [category]}',
    )
    path = _files(tmp_path, **{"a.yaml": a, "b.yaml": b})
    error = _one(path)
    assert (error.file, error.line, error.path) == (
        str(tmp_path / "b.yaml"),
        8,
        "nodes[0].workflow",
    )
    assert error.code == "cycle"
    assert f"{path} -> {tmp_path / 'b.yaml'} -> {path}" in error.message
    error = _one(tmp_path / "b.yaml")  # from the other end, the reference is in a.yaml
    assert (error.file, error.path, error.code) == (str(path), "nodes[0].workflow", "cycle")
    self_use = _files(tmp_path, **{"self.yaml": _parent_text("self.yaml")})
    assert _one(self_use).code == "cycle"


def test_types_across_the_boundary_are_checked(tmp_path: Path) -> None:
    _files(tmp_path, **{"child.yaml": CHILD})
    # the child's int written to a str field
    path = _files(tmp_path, **{"p1.yaml": _parent_text(outputs="{urgency: level}")})
    error = _one(path)
    assert (error.line, error.path, error.code) == (12, "nodes[0].outputs.urgency", "type_mismatch")
    assert "output 'level' is int, not str" in error.message
    # a typed value into a field of another type
    path = _files(tmp_path, **{"p2.yaml": _parent_text(inputs='{text: "{state.tags}"}')})
    error = _one(path)
    assert (error.line, error.path) == (11, "nodes[0].inputs.text")
    assert "{state.tags} is list[str], not str" in error.message
    # text into an int field
    inputs = '{text: "{ticket}", urgency: "level {level}"}'
    path = _files(tmp_path, **{"p3.yaml": _parent_text(inputs=inputs)})
    error = _one(path)
    assert error.path == "nodes[0].inputs.urgency" and "renders as text" in error.message
    # one placeholder passes the value with its type: a str field of the parent into urgency
    path = _files(
        tmp_path, **{"p4.yaml": _parent_text(inputs='{text: "{ticket}", urgency: "{level}"}')}
    )
    assert "is str, not int" in _one(path).message


def test_child_fields_are_named_right_and_required_inputs_given(tmp_path: Path) -> None:
    _files(tmp_path, **{"child.yaml": CHILD})
    path = _files(tmp_path, **{"p1.yaml": _parent_text(inputs='{txt: "{ticket}"}')})
    error = _one(path)  # a misspelt input is one error, not also a missing one
    assert (error.path, error.suggestion, error.code) == (
        "nodes[0].inputs.txt", "text", "subworkflow_field")  # fmt: skip
    path = _files(tmp_path, **{"p2.yaml": _parent_text(inputs='{urgency: "{state.tags}"}')})
    messages = [e.message for e in _errors(path)]
    assert any("needs its required input(s) 'text'" in m for m in messages), messages
    path = _files(tmp_path, **{"p3.yaml": _parent_text(inputs="{}")})
    error = _one(path)
    assert (error.path, error.code) == ("nodes[0].workflow", "missing_input")
    path = _files(tmp_path, **{"p4.yaml": _parent_text(outputs="{categry: level}")})
    error = _one(path)
    assert (error.path, error.suggestion, error.line, error.column) == (
        "nodes[0].outputs.categry", "category", 12, 15)  # fmt: skip
    path = _files(tmp_path, **{"p5.yaml": _parent_text(outputs="[category, urgncy]")})
    error = _one(path)
    assert (error.path, error.suggestion) == ("nodes[0].outputs[1]", "urgency")


def test_a_workflow_node_takes_no_model_keys_and_other_nodes_no_workflow_keys(
    tmp_path: Path,
) -> None:
    _files(tmp_path, **{"child.yaml": CHILD})
    text = _parent_text().replace(
        "    workflow: child.yaml\n",
        "    workflow: child.yaml\n    prompt: hi\n    tools: [calculator]\n"
        "    llm: {model: gpt-4o}\n",
    )
    errors = _errors(_files(tmp_path, **{"p1.yaml": text}))
    assert [(e.path, e.line, e.code) for e in errors] == [
        ("nodes[0].prompt", 11, "workflow_node"),
        ("nodes[0].tools", 12, "workflow_node"),
        ("nodes[0].llm", 13, "workflow_node"),
    ]
    text = _parent_text().replace("    workflow: child.yaml\n", "    type: workflow\n")
    error = _one(_files(tmp_path, **{"p2.yaml": text}))
    assert (error.path, error.code) == ("nodes[0].workflow", "missing_key")
    text = _parent_text().replace(
        "    workflow: child.yaml\n", "    workflow: child.yaml\n    type: llm\n"
    )
    assert _one(_files(tmp_path, **{"p3.yaml": text})).path == "nodes[0].type"
    llm_node = _parent_text(outputs="{a: b}").replace(
        '    workflow: child.yaml\n    inputs: {text: "{ticket}"}\n', '    prompt: "hi"\n'
    )
    error = _one(_files(tmp_path, **{"p4.yaml": llm_node}))
    assert (error.path, error.code) == ("nodes[0].outputs", "workflow_node")
    no_prompt = _parent_text().replace("    workflow: child.yaml\n", "")
    error = _one(_files(tmp_path, **{"p5.yaml": no_prompt}))  # an llm node still needs one
    assert (error.path, error.message) == ("nodes[0].prompt", "missing required key 'prompt'")


def test_a_pausing_sub_workflow_needs_the_parents_checkpoints(tmp_path: Path) -> None:
    child = CHILD.replace(
        '  - {id: label, prompt: "Label {text}", outputs: [category]}',
        '  - {id: label, type: human, prompt: "Label {text}", outputs: [category]}',
    )
    _files(tmp_path, **{"child.yaml": child})
    text = _parent_text() + "config: {execution: {checkpoints: {enabled: false}}}\n"
    error = _one(_files(tmp_path, **{"p.yaml": text}))
    assert (error.path, error.code) == ("config.execution.checkpoints.enabled", "checkpoints")
    assert "'label' pauses the run" in error.message
    workflow, _ = validate_workflow(_files(tmp_path, **{"q.yaml": _parent_text()}))
    from configurable_agents.engine.durable import checkpoints_enabled

    assert workflow is not None and checkpoints_enabled(workflow)
