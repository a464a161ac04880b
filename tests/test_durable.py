"""Durable runs in the engine: a failed or killed run resumed from its last checkpoint with each
call paid once, human nodes and approvals, waits that time out, session-scoped fields, resume
errors, budgets across attempts and live events. Model calls cross real HTTP to the stub."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, load_workflow, prepare_workflow
from configurable_agents.config import validate_workflow
from configurable_agents.engine import calls
from configurable_agents.engine.durable import (
    CHECKPOINTS_ENV,
    ResumeError,
    ResumeInputError,
    alist_runs,
)
from configurable_agents.engine.events import RunEvent
from configurable_agents.engine.records import RunResult

from .conftest import require
from .stub_llm import JSON, Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
FINAL = "final_answer"
ENV = {"OPENAI_API_KEY": "test"}
INPUT_PRICE, OUTPUT_PRICE = Decimal("0.15") / 10**6, Decimal("0.60") / 10**6  # gpt-4o-mini


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "BACKOFF_BASE_S", 0.001)


def _final(args: JSON, prompt_tokens: int = 0, completion_tokens: int = 0) -> Reply:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return Reply.tool_calls([(FINAL, args)], usage=usage if prompt_tokens else None)


def _cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    return prompt_tokens * INPUT_PRICE + completion_tokens * OUTPUT_PRICE


def _write(tmp_path: Path, data: JSON, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _chain(
    tmp_path: Path,
    stub: StubLLM | None,
    nodes: str = "abc",
    *,
    store: str | None = "sqlite",
    **execution: Any,
) -> Path:
    """A chain of nodes, each prompt naming its node (``task b after ...``); checkpoints on
    (``store``: ``sqlite`` for a store in ``tmp_path``, a URI, or None for the default)."""
    previous = ["{topic}", *(f"{{out_{n}}}" for n in nodes)]
    checkpoints: JSON = {"enabled": True}
    if store == "sqlite":
        checkpoints["store"] = f"sqlite:///{tmp_path / 'cp.db'}"
    elif store is not None:
        checkpoints["store"] = store
    llm: JSON = {"provider": "mock", "model": "mock"}
    if stub is not None:
        llm = {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url}
    data = {
        "schema_version": "1.0",
        "flow": {"name": "chain"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": n, "prompt": f"task {n} after {previous[i]}", "outputs": [f"out_{n}"]}
            for i, n in enumerate(nodes)
        ],
        "edges": [
            {"from": "START", "to": nodes[0]},
            *({"from": a, "to": b} for a, b in itertools.pairwise(nodes)),
            {"from": nodes[-1], "to": "END"},
        ],
        "config": {
            "llm": llm,
            "execution": {"max_retries": 0, "checkpoints": checkpoints, **execution},
        },
    }
    return _write(tmp_path, data)


def _asked(stub: StubLLM) -> list[str]:
    """The node of each request the stub received, in order (from ``task N after``)."""
    return [json.dumps(r["messages"]).split("task ")[1].split(" ")[0] for r in stub.requests]


def _prepare(path: Path, env: dict[str, str] | None = None) -> Any:
    return prepare_workflow(path, env={**ENV, **(env or {})}, trace=False)


def _run(prepared: Any, inputs: JSON | None = None, **kwargs: Any) -> RunResult:
    return asyncio.run(prepared.arun(inputs, **kwargs))


def _resume(prepared: Any, run_id: str, inputs: JSON | None = None, **kwargs: Any) -> RunResult:
    return asyncio.run(prepared.aresume(run_id, inputs, **kwargs))


def _ledger(prepared: Any, status: str | None = None) -> list[Any]:
    return asyncio.run(alist_runs(prepared.workflow, status=status, env=prepared.env))


# -- a failed run resumed ------------------------------------------------------------------------

USAGES = {"a": (1_000, 100), "b": (2_000, 200), "c": (3_000, 300)}


def _script_chain(stub: StubLLM) -> None:
    """Replies for a, b, then a 400 for c, then c's reply (for the resumed attempt)."""
    replies = [_final({"out_a": "A"}, *USAGES["a"]), _final({"out_b": "B"}, *USAGES["b"])]
    stub.script(*replies, Reply.error(400), _final({"out_c": "C"}, *USAGES["c"]))


def _check_resumed_once(first_spent: Decimal, resumed: RunResult, stub: StubLLM) -> None:
    """Nodes a and b were asked once, c again; the resumed run counts every call once."""
    assert resumed.status is RunStatus.SUCCESS, resumed.error
    assert resumed.outputs == {"out_a": "A", "out_b": "B", "out_c": "C"}
    assert _asked(stub).count("a") == 1 and _asked(stub).count("b") == 1
    assert _asked(stub)[-1] == "c"
    assert resumed.attempt == 2
    assert [r.node_id for r in resumed.records] == ["c"]  # only this attempt's
    assert resumed.earlier.cost_usd == first_spent == _cost(*USAGES["a"]) + _cost(*USAGES["b"])
    assert resumed.earlier.calls >= 2
    assert resumed.attempt_cost_usd == _cost(*USAGES["c"])
    assert resumed.cost_usd == sum((_cost(*u) for u in USAGES.values()), Decimal(0))
    assert resumed.usage.input_tokens == sum(p for p, _ in USAGES.values())
    assert resumed.usage.output_tokens == sum(c for _, c in USAGES.values())


def test_a_run_failing_at_its_third_node_resumes_there_and_pays_each_call_once(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    _script_chain(stub_llm)
    prepared = _prepare(_chain(tmp_path, stub_llm))
    first = _run(prepared, {"topic": "bees"})
    assert first.status is RunStatus.FAILED and "400" in (first.error or "")
    assert _asked(stub_llm) == ["a", "b", "c"]
    assert first.attempt == 1 and first.earlier.calls == 0
    assert first.cost_usd == _cost(*USAGES["a"]) + _cost(*USAGES["b"])
    (entry,) = _ledger(prepared)
    assert (entry.run_id, entry.status, entry.attempt) == (first.run_id, "failed", 1)

    resumed = _resume(prepared, first.run_id)
    assert _asked(stub_llm) == ["a", "b", "c", "c"]
    _check_resumed_once(first.cost_usd, resumed, stub_llm)
    assert resumed.run_id == first.run_id and resumed.inputs == {"topic": "bees"}
    (entry,) = _ledger(prepared)
    assert (entry.status, entry.attempt) == ("success", 2)
    assert entry.spent.cost_usd == resumed.cost_usd
    with pytest.raises(ResumeError, match="succeeded"):
        _resume(prepared, first.run_id)
    assert stub_llm.calls == 4


def test_a_killed_process_resumes_from_its_last_checkpoint(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    replies = [_final({"out_a": "A"}, *USAGES["a"]), _final({"out_b": "B"}, *USAGES["b"])]
    never = Reply.tool_calls([(FINAL, {"out_c": "never"})], delay=60)  # cut short at stop
    stub_llm.script(*replies, never, _final({"out_c": "C"}, *USAGES["c"]))
    path = _chain(tmp_path, stub_llm, store=None)  # the store comes from the environment
    store = f"sqlite:///{tmp_path / 'killed.db'}"
    code = (
        "import sys; from configurable_agents import run_workflow; "
        "run_workflow(sys.argv[1], {'topic': 'bees'}, trace=False)"
    )
    env = {**os.environ, **ENV, CHECKPOINTS_ENV: store}
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, cwd=tmp_path)
    try:
        _wait_for(lambda: stub_llm.calls >= 3 or process.poll() is not None, 60)
        assert process.poll() is None, "the run ended before node c was asked"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert _asked(stub_llm) == ["a", "b", "c"]

    prepared = _prepare(path, {CHECKPOINTS_ENV: store})
    (entry,) = _ledger(prepared)
    assert (entry.status, entry.attempt) == ("running", 1)  # it never said how it ended
    resumed = _resume(prepared, entry.run_id)
    assert _asked(stub_llm) == ["a", "b", "c", "c"]
    _check_resumed_once(_cost(*USAGES["a"]) + _cost(*USAGES["b"]), resumed, stub_llm)
    (entry,) = _ledger(prepared)
    assert (entry.status, entry.attempt, entry.spent) == (
        "success",
        2,
        resumed.earlier + _spent(resumed),
    )


def test_a_process_killed_mid_fan_out_keeps_the_items_that_finished(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    data = yaml.safe_load((ROOT / "examples" / "fan_out.yaml").read_text())
    data["config"] = yaml.safe_load(_chain(tmp_path, stub_llm).read_text())["config"]
    path = _write(tmp_path, data)
    slow = {"1"}

    def responder(request: JSON) -> Reply:
        text = json.dumps(request["messages"])
        if "Split this research question" in text:
            return _final({"sub_questions": ["q0", "q1", "q2"]}, 1_000, 100)
        if "Findings" in text:
            return _final({"report": "R"}, 1_000, 100)
        item = text.split("Sub-question ")[1][0]
        if item in slow:
            return Reply.tool_calls([(FINAL, {"answer": "never"})], delay=60)  # cut at stop
        return _final({"answer": f"a{item}"}, 1_000, 100)

    stub_llm.responder = responder
    prepared = _prepare(path)
    code = (
        "import sys; from configurable_agents import run_workflow; "
        "run_workflow(sys.argv[1], {'question': 'q'}, trace=False)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], env={**os.environ, **ENV}, cwd=tmp_path
    )
    try:
        _wait_for(lambda: _answers(prepared) == ["a0", None, "a2"] or process.poll(), 60)
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    slow.clear()
    (entry,) = _ledger(prepared)
    resumed = _resume(prepared, entry.run_id)
    assert resumed.status is RunStatus.SUCCESS, resumed.error
    assert resumed.outputs["answers"] == ["a0", "a1", "a2"]
    sent = [json.dumps(r["messages"]) for r in stub_llm.requests]
    assert [sum(f"Sub-question {i}:" in text for text in sent) for i in range(3)] == [1, 2, 1]
    assert [(r.node_id, r.item_index) for r in resumed.records] == [
        ("answer_one", 1),
        ("synthesise", None),
    ]
    # plan and items 0 and 2 before the kill; item 1 and synthesise after: each paid once
    assert resumed.earlier.cost_usd == 3 * _cost(1_000, 100)
    assert resumed.earlier.calls == 3
    assert resumed.cost_usd == 5 * _cost(1_000, 100)
    assert resumed.usage.input_tokens == 5_000


def _answers(prepared: Any) -> Any:
    """The collected answers of the (only) run in the checkpoint store, as its checkpoint and
    the writes of its finished tasks have them."""
    from configurable_agents.engine.durable import open_store, store_uri

    async def read() -> Any:
        runs = await alist_runs(prepared.workflow, env=prepared.env)
        if not runs:
            return None
        async with open_store(store_uri(prepared.workflow, prepared.env)) as store:
            graph = prepared.graph.copy(update={"checkpointer": store.saver})
            snapshot = await graph.aget_state({"configurable": {"thread_id": runs[0].run_id}})
        return (snapshot.values or {}).get("answers")

    return asyncio.run(read())


def _spent(result: RunResult) -> Any:
    from configurable_agents.engine.records import Spend

    return Spend.of_records(result.records)


def _wait_for(condition: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.02)


def test_a_failed_branch_of_a_fork_is_resumed_alone(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = yaml.safe_load(_chain(tmp_path, stub_llm).read_text())
    data["edges"] = [
        {"from": "START", "to": ["a", "b"]},
        {"from": "a", "to": "c"},
        {"from": "b", "to": "c"},
        {"from": "c", "to": "END"},
    ]
    data["nodes"][1]["prompt"] = "task b after {topic}"
    data["nodes"][2]["prompt"] = "task c after {out_a} {out_b}"
    failing = {"b"}

    def responder(request: JSON) -> Reply:
        node = json.dumps(request["messages"]).split("task ")[1][0]
        if node in failing:
            return Reply.error(400, delay=0.05)  # a has answered by then
        return _final({f"out_{node}": node.upper()}, *USAGES[node])

    stub_llm.responder = responder
    prepared = _prepare(_write(tmp_path, data))
    first = _run(prepared, {"topic": "bees"})
    assert first.status is RunStatus.FAILED and "node 'b'" in (first.error or "")
    assert sorted(_asked(stub_llm)) == ["a", "b"]
    failing.clear()
    resumed = _resume(prepared, first.run_id)
    assert resumed.status is RunStatus.SUCCESS, resumed.error
    assert sorted(_asked(stub_llm)) == ["a", "b", "b", "c"]  # a's finished branch kept
    assert [r.node_id for r in resumed.records] == ["b", "c"]
    assert resumed.earlier.cost_usd == _cost(*USAGES["a"])
    assert resumed.cost_usd == sum((_cost(*u) for u in USAGES.values()), Decimal(0))
    assert resumed.outputs == {"out_a": "A", "out_b": "B", "out_c": "C"}


def test_a_fan_out_resumes_only_its_failed_item(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = yaml.safe_load((ROOT / "examples" / "fan_out.yaml").read_text())
    data["config"] = yaml.safe_load(_chain(tmp_path, stub_llm).read_text())["config"]
    failing = {"Sub-question 1: q1"}

    def responder(request: JSON) -> Reply:
        text = json.dumps(request["messages"])
        if any(f in text for f in failing):
            return Reply.error(400, delay=0.1)  # the other items have answered by then
        if "Split this research question" in text:
            return _final({"sub_questions": ["q0", "q1", "q2"]}, 1_000, 100)
        if "Findings" in text:
            return _final({"report": "R"}, 1_000, 100)
        item = text.split("Sub-question ")[1][0]
        return _final({"answer": f"a{item}"}, 1_000, 100)

    stub_llm.responder = responder
    prepared = _prepare(_write(tmp_path, data))
    first = _run(prepared, {"question": "q"})
    assert first.status is RunStatus.FAILED, first.error
    assert first.state["answers"] == ["a0", None, "a2"]
    assert stub_llm.calls == 4
    failing.clear()
    resumed = _resume(prepared, first.run_id)
    assert resumed.status is RunStatus.SUCCESS, resumed.error
    assert resumed.outputs["answers"] == ["a0", "a1", "a2"]
    asked = [json.dumps(r["messages"]) for r in stub_llm.requests[4:]]
    assert len(asked) == 2 and "Sub-question 1: q1" in asked[0] and "Findings" in asked[1]
    assert [(r.node_id, r.item_index) for r in resumed.records] == [
        ("answer_one", 1),
        ("synthesise", None),
    ]
    assert resumed.cost_usd == 5 * _cost(1_000, 100)  # plan, three items, synthesise
    assert resumed.earlier.cost_usd == 3 * _cost(1_000, 100)


def test_a_run_that_timed_out_resumes_from_its_last_checkpoint(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    replies = [_final({"out_a": "A"}, *USAGES["a"]), _final({"out_b": "B"}, *USAGES["b"])]
    late = Reply.tool_calls([(FINAL, {"out_c": "late"})], delay=30)  # cut short at stop
    stub_llm.script(*replies, late, _final({"out_c": "C"}, *USAGES["c"]))
    prepared = _prepare(_chain(tmp_path, stub_llm, timeout=1))
    first = _run(prepared, {"topic": "bees"})
    assert first.status is RunStatus.TIMEOUT, first.error
    (entry,) = _ledger(prepared, "timeout")
    assert entry.run_id == first.run_id
    resumed = _resume(prepared, first.run_id)
    _check_resumed_once(first.cost_usd, resumed, stub_llm)
    assert resumed.session_id == first.session_id == first.run_id


# -- human nodes ---------------------------------------------------------------------------------


def _human_flow(tmp_path: Path, **review: Any) -> Path:
    """draft (mock model) -> review (a person gives an int score) -> publish (mock model)."""
    data = {
        "schema_version": "1.0",
        "flow": {"name": "reviewed"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": "draft", "prompt": "Draft about {topic}", "outputs": ["text"]},
            {
                "id": "review",
                "type": "human",
                "name": "Editor review",
                "prompt": "Score this draft: {text}",
                "outputs": ["score"],
                "output_schema": {"type": "int"},
                **review,
            },
            {"id": "publish", "prompt": "Publish {text} scored {score}", "outputs": ["post"]},
        ],
        "edges": [
            {"from": "START", "to": "draft"},
            {"from": "draft", "to": "review"},
            {"from": "review", "to": "publish"},
            {"from": "publish", "to": "END"},
        ],
        "config": {"llm": {"provider": "mock"}},
    }
    return _write(tmp_path, data)


def test_a_human_node_pauses_refuses_a_bad_answer_unchanged_and_resumes(tmp_path: Path) -> None:
    prepared = _prepare(_human_flow(tmp_path))
    first = _run(prepared, {"topic": "tides"})
    assert first.status is RunStatus.WAITING, first.error
    assert [r.node_id for r in first.records] == ["draft"]
    (waiting,) = first.waiting
    assert (waiting.node, waiting.kind, waiting.label) == ("review", "input", "Editor review")
    assert waiting.prompt == "Score this draft: mock text"
    assert waiting.outputs["properties"]["score"]["type"] == "integer"
    assert waiting.deadline is None
    (entry,) = _ledger(prepared, "waiting")
    assert entry.run_id == first.run_id and entry.waiting == first.waiting

    for answer, loc in (({"score": "high"}, "score"), ({"grade": 3}, "grade"), ({}, "score")):
        with pytest.raises(ResumeInputError) as caught:
            _resume(prepared, first.run_id, answer)
        assert loc in [e["loc"][0] for e in caught.value.errors], caught.value.errors
        assert "review" in str(caught.value)
        with pytest.raises(ResumeInputError):  # the check alone says the same
            asyncio.run(prepared.acheck_resume(first.run_id, answer))
    (entry,) = _ledger(prepared)
    assert (entry.status, entry.attempt, entry.waiting) == ("waiting", 1, first.waiting)

    done = _resume(prepared, first.run_id, {"score": 7})
    assert done.status is RunStatus.SUCCESS, done.error
    assert done.attempt == 2
    assert done.state["score"] == 7 and done.outputs["post"] == "mock post"
    assert [r.node_id for r in done.records] == ["review", "publish"]
    assert done.records[0].provider == "human" and done.records[0].output == {"score": 7}
    assert not done.waiting
    (entry,) = _ledger(prepared)
    assert (entry.status, entry.waiting) == ("success", [])


def test_a_waiting_run_takes_no_inputs_beyond_the_answer_and_a_failed_one_none(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    _script_chain(stub_llm)
    prepared = _prepare(_chain(tmp_path, stub_llm))
    failed = _run(prepared, {"topic": "bees"})
    with pytest.raises(ResumeError, match="not waiting for input"):
        _resume(prepared, failed.run_id, {"out_c": "x"})
    assert _asked(stub_llm) == ["a", "b", "c"]


def test_a_human_node_in_a_loop_asks_at_each_iteration(tmp_path: Path) -> None:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "looped"},
        "state": {
            "fields": {
                "topic": {"type": "str", "required": True},
                "done": {"type": "bool", "default": False},
                "note": {"type": "str", "default": ""},
            }
        },
        "nodes": [
            {
                "id": "ask",
                "type": "human",
                "prompt": "Note on {topic} ({note})?",
                "outputs": ["note", "done"],
            },
            {"id": "wrap", "prompt": "Wrap up {note}", "outputs": ["summary"]},
        ],
        "edges": [
            {"from": "START", "to": "ask"},
            {
                "from": "ask",
                "loop": {"condition_field": "done", "max_iterations": 5, "exit_to": "wrap"},
            },
            {"from": "wrap", "to": "END"},
        ],
        "config": {"llm": {"provider": "mock"}},
    }
    prepared = _prepare(_write(tmp_path, data))
    result = _run(prepared, {"topic": "tides"})
    seen = []
    for note in ("n1", "n2"):
        assert result.status is RunStatus.WAITING, result.error
        (waiting,) = result.waiting
        seen.append((waiting.iteration, waiting.prompt))
        result = _resume(prepared, result.run_id, {"note": note, "done": False})
    (waiting,) = result.waiting
    seen.append((waiting.iteration, waiting.prompt))
    assert seen == [
        (1, "Note on tides ()?"),
        (2, "Note on tides (n1)?"),
        (3, "Note on tides (n2)?"),
    ]
    result = _resume(prepared, result.run_id, {"note": "last", "done": True})
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.attempt == 4
    assert [(r.node_id, r.iteration) for r in result.records] == [("ask", 3), ("wrap", None)]
    assert result.state["note"] == "last"


def test_a_human_fan_out_target_waits_for_each_item_answered_one_by_one(tmp_path: Path) -> None:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "graded"},
        "state": {"fields": {"essays": {"type": "list[str]", "required": True}}},
        "nodes": [
            {
                "id": "grade",
                "type": "human",
                "prompt": "Grade essay {item_index}: {item}",
                "outputs": ["grade"],
                "output_schema": {"type": "int"},
            },
            {"id": "report", "prompt": "Report on {grades}", "outputs": ["summary"]},
        ],
        "edges": [
            {
                "from": "START",
                "parallel": {
                    "items_field": "essays",
                    "target_node": "grade",
                    "collect_field": "grades",
                },
            },
            {"from": "grade", "to": "report"},
            {"from": "report", "to": "END"},
        ],
        "config": {"llm": {"provider": "mock"}},
    }
    path = _write(tmp_path, data)
    assert validate_workflow(path)[0] is not None, validate_workflow(path)[1]
    prepared = _prepare(path)
    result = _run(prepared, {"essays": ["e0", "e1", "e2"]})
    assert result.status is RunStatus.WAITING, result.error
    assert sorted(w.item_index for w in result.waiting) == [0, 1, 2]
    assert {w.prompt for w in result.waiting} == {f"Grade essay {i}: e{i}" for i in range(3)}
    answered: list[int] = []
    for attempt in (2, 3, 4):
        assert result.status is RunStatus.WAITING, result.error
        pending = sorted(w.item_index for w in result.waiting)
        assert pending == [i for i in range(3) if i not in answered]
        index = result.waiting[0].item_index
        assert index is not None
        with pytest.raises(ResumeInputError):
            _resume(prepared, result.run_id, {"grade": "A"})
        result = _resume(prepared, result.run_id, {"grade": 10 + index})
        answered.append(index)
        assert result.attempt == attempt
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.state["grades"] == [10, 11, 12]
    assert result.outputs["summary"] == "mock summary"


# -- approvals -----------------------------------------------------------------------------------


def test_interrupt_before_asks_for_approval_then_runs_the_node(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    path = _chain(tmp_path, stub_llm, "ab")
    data = yaml.safe_load(path.read_text())
    data["nodes"][1]["interrupt_before"] = True
    data["nodes"][1]["description"] = "send the letter"
    prepared = _prepare(_write(tmp_path, data))
    first = _run(prepared, {"topic": "bees"})
    assert first.status is RunStatus.WAITING, first.error
    (waiting,) = first.waiting
    assert (waiting.node, waiting.kind, waiting.outputs) == ("b", "approval", {})
    assert waiting.prompt == "Approve? send the letter"
    assert _asked(stub_llm) == ["a"]  # b is not called before it is approved
    with pytest.raises(ResumeInputError) as caught:
        _resume(prepared, first.run_id, {"out_b": "x"})
    assert caught.value.errors[0]["loc"] == ["out_b"]

    done = _resume(prepared, first.run_id)
    assert done.status is RunStatus.SUCCESS, done.error
    assert _asked(stub_llm) == ["a", "b"]
    assert [r.node_id for r in done.records] == ["b"]
    assert done.outputs["out_b"] == "stub"

    second = _run(prepared, {"topic": "ants"})
    declined = _resume(prepared, second.run_id, {"approved": False})
    assert declined.status is RunStatus.FAILED
    assert declined.error == "node 'b' was not approved"
    assert _asked(stub_llm) == ["a", "b", "a"]  # a declined node is never called
    (entry,) = _ledger(prepared, "failed")
    assert entry.run_id == second.run_id


# -- waits that time out -------------------------------------------------------------------------


def test_a_human_node_answered_after_its_timeout_ends_the_run_with_timeout(
    tmp_path: Path,
) -> None:
    prepared = _prepare(_human_flow(tmp_path, timeout=0.05))
    first = _run(prepared, {"topic": "tides"})
    assert first.status is RunStatus.WAITING, first.error
    (waiting,) = first.waiting
    assert waiting.deadline is not None
    _wait_for(lambda: time.time() > waiting.deadline + 0.01, 5)  # type: ignore[operator]

    (expired,) = _ledger(prepared, "timeout")  # an expired wait is listed as a timeout
    assert expired.run_id == first.run_id
    assert _ledger(prepared, "waiting") == []
    late = _resume(prepared, first.run_id, {"score": 5})
    assert late.status is RunStatus.TIMEOUT
    assert late.error == ("node 'review' waited for its input longer than its timeout of 0.05 s")
    assert late.records == [] and "score" not in late.state
    (entry,) = _ledger(prepared, "timeout")
    assert (entry.run_id, entry.status, entry.waiting) == (first.run_id, "timeout", [])


# -- session fields ------------------------------------------------------------------------------


def test_session_fields_carry_from_one_run_of_a_session_to_the_next(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "chat"},
        "state": {
            "fields": {
                "message": {"type": "str", "required": True},
                "memory": {"type": "str", "default": "nothing", "scope": "session"},
            }
        },
        "nodes": [
            {
                "id": "reply",
                "prompt": "Said {message}; remembered {memory}",
                "outputs": ["answer", "memory"],
            },
        ],
        "edges": [{"from": "START", "to": "reply"}, {"from": "reply", "to": "END"}],
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub_llm.base_url}
        },
    }

    def responder(request: JSON) -> Reply:
        said = json.dumps(request["messages"]).split("Said ")[1].split(";")[0]
        return _final({"answer": "ok", "memory": f"heard {said}"})

    stub_llm.responder = responder
    prepared = _prepare(_write(tmp_path, data))  # the store: the conftest's, from the env

    def remembered(message: str, session: str | None, **inputs: Any) -> str:
        result = _run(prepared, {"message": message, **inputs}, session_id=session)
        assert result.status is RunStatus.SUCCESS, result.error
        assert result.session_id == session
        return json.dumps(stub_llm.requests[-1]["messages"]).split("remembered ")[1].split('"')[0]

    assert remembered("m1", "s1") == "nothing"
    assert remembered("m2", "s1") == "heard m1"
    assert remembered("m3", "s2") == "nothing"  # another session
    assert remembered("m4", "s1", memory="given") == "given"  # inputs win
    assert remembered("m5", "s1") == "heard m4"
    assert remembered("m6", None) == "nothing"  # no session, nothing remembered
    assert remembered("m7", "s2") == "heard m3"


# -- what cannot be resumed ----------------------------------------------------------------------


def test_resume_errors_say_why_in_one_line(tmp_path: Path, stub_llm: StubLLM) -> None:
    prepared = _prepare(_chain(tmp_path, stub_llm))
    with pytest.raises(ResumeError, match="no run 'nope' in the checkpoint store"):
        _resume(prepared, "nope")
    done = _run(prepared, {"topic": "bees"})
    assert done.status is RunStatus.SUCCESS, done.error
    with pytest.raises(ResumeError, match="succeeded: there is nothing to resume") as caught:
        _resume(prepared, done.run_id)
    assert not isinstance(caught.value, ResumeInputError)

    data = yaml.safe_load(_chain(tmp_path, stub_llm).read_text())
    data["config"]["execution"]["checkpoints"] = {"enabled": False}
    plain = _prepare(_write(tmp_path, data, "plain.yaml"))
    ran = _run(plain, {"topic": "bees"})
    assert ran.status is RunStatus.SUCCESS
    with pytest.raises(ResumeError, match="keeps no checkpoints") as caught:
        _resume(plain, ran.run_id)
    assert "\n" not in str(caught.value)

    data["flow"]["name"] = "other"
    store = f"sqlite:///{tmp_path / 'cp.db'}"
    data["config"]["execution"]["checkpoints"] = {"enabled": True, "store": store}
    other = _prepare(_write(tmp_path, data, "other.yaml"))
    with pytest.raises(ResumeError, match="is a run of workflow 'chain', not 'other'"):
        _resume(other, done.run_id)


def _problems(path: Path) -> list[Any]:
    workflow, diagnostics = validate_workflow(path)
    assert workflow is None
    return diagnostics


def test_a_human_node_with_checkpoints_off_or_model_keys_is_invalid(tmp_path: Path) -> None:
    data = yaml.safe_load(_human_flow(tmp_path).read_text())
    data["config"]["execution"] = {"checkpoints": {"enabled": False}}
    (problem,) = _problems(_write(tmp_path, data, "off.yaml"))
    assert "node 'review' pauses the run" in problem.format()
    assert "checkpoints" in problem.format()

    data = yaml.safe_load(_human_flow(tmp_path, tools=["calculator"]).read_text())
    path = _write(tmp_path, data, "tools.yaml")
    (problem,) = _problems(path)
    text = problem.format()
    assert "a human node has no 'tools'" in text
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == "tools:")
    assert f"{path.name}:{line}:" in text, text

    data = yaml.safe_load(_human_flow(tmp_path).read_text())
    data["nodes"][1]["interrupt_before"] = True
    data["nodes"][1]["type"] = "llm"
    data["config"]["execution"] = {"checkpoints": {"enabled": False}}
    (problem,) = _problems(_write(tmp_path, data, "approval.yaml"))
    assert "node 'review' pauses the run" in problem.format()


def test_checkpoints_are_on_by_default_only_when_a_node_pauses(tmp_path: Path) -> None:
    from configurable_agents.engine.durable import checkpoints_enabled

    assert checkpoints_enabled(load_workflow(_human_flow(tmp_path)))
    data = yaml.safe_load(_chain(tmp_path, None, store=None).read_text())
    del data["config"]["execution"]["checkpoints"]
    assert not checkpoints_enabled(load_workflow(_write(tmp_path, data, "plain.yaml")))


# -- budgets across attempts ---------------------------------------------------------------------


def test_a_resumed_runs_budget_counts_what_earlier_attempts_spent(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    big = (20_000, 2_000)  # $0.0042 a call
    stub_llm.script(
        _final({"out_a": "A"}, *big),
        _final({"out_b": "B"}, *big),
        Reply.error(400),
        _final({"out_c": "C"}, *big),
    )
    prepared = _prepare(_chain(tmp_path, stub_llm, "abcd", max_cost_usd=0.01))
    first = _run(prepared, {"topic": "bees"})
    assert first.status is RunStatus.FAILED, first.error
    assert float(first.cost_usd) == pytest.approx(0.0084)

    resumed = _resume(prepared, first.run_id)
    # c fits ($0.0084 spent), d does not ($0.0126): alone, this attempt spent only $0.0042
    assert resumed.status is RunStatus.BUDGET_EXCEEDED, resumed.error
    assert _asked(stub_llm) == ["a", "b", "c", "c"]
    assert "budget of $0.01 reached: $0.012600 spent" in (resumed.error or "")
    assert float(resumed.attempt_cost_usd) == pytest.approx(0.0042)
    assert float(resumed.cost_usd) == pytest.approx(0.0126)

    again = _resume(prepared, first.run_id)  # still over: refused before any call
    assert again.status is RunStatus.BUDGET_EXCEEDED
    assert again.attempt == 3 and stub_llm.calls == 4
    assert float(again.cost_usd) == pytest.approx(0.0126)


# -- live events ---------------------------------------------------------------------------------


def test_live_events_come_in_order(tmp_path: Path) -> None:
    prepared = _prepare(_human_flow(tmp_path))
    events: list[RunEvent] = []
    first = _run(prepared, {"topic": "tides"}, on_event=events.append)
    shown = [(e.type, e.data.get("node")) for e in events if e.type != "token"]
    assert shown == [
        ("run_started", None),
        ("node_started", "draft"),
        ("node_finished", "draft"),
        ("node_started", "review"),
        ("waiting", None),
        ("run_finished", None),
    ]
    assert {e.run_id for e in events} == {first.run_id}
    started, finished = events[0].data, events[-1].data
    assert started["attempt"] == 1 and started["inputs"] == {"topic": "tides"}
    assert started["workflow"] == "reviewed"
    assert events[3].data["label"] == "Editor review"
    (waiting,) = next(e for e in events if e.type == "waiting").data["waiting"]
    assert waiting["node"] == "review" and waiting["kind"] == "input"
    assert finished["status"] == "waiting" and finished["error"] is None
    assert finished["tokens"]["total"] == first.usage.total_tokens > 0

    events.clear()
    done = _resume(prepared, first.run_id, {"score": 3}, on_event=events.append)
    shown = [(e.type, e.data.get("node")) for e in events if e.type != "token"]
    assert shown == [
        ("run_started", None),
        ("node_started", "review"),
        ("node_finished", "review"),
        ("node_started", "publish"),
        ("node_finished", "publish"),
        ("run_finished", None),
    ]
    assert events[0].data["attempt"] == 2
    review = next(e for e in events if e.type == "node_finished")
    assert review.data["outputs"] == {"score": 3} and review.data["error"] is None
    assert events[-1].data["status"] == "success"
    assert events[-1].data["tokens"]["total"] == done.usage.total_tokens


def test_live_events_of_a_failed_node_and_a_raising_listener(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    _script_chain(stub_llm)
    prepared = _prepare(_chain(tmp_path, stub_llm))
    events: list[RunEvent] = []

    def listen(event: RunEvent) -> None:
        events.append(event)
        raise RuntimeError("a broken live view")

    result = _run(prepared, {"topic": "bees"}, on_event=listen)
    assert result.status is RunStatus.FAILED  # the listener's errors never fail the run
    finished = [e.data for e in events if e.type == "node_finished"]
    assert [(d["node"], d["error"] is None) for d in finished] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]
    assert finished[0]["cost_usd"] == pytest.approx(float(_cost(*USAGES["a"])))
    assert events[-1].type == "run_finished" and events[-1].data["status"] == "failed"
    assert events[-1].data["cost_usd"] == pytest.approx(float(result.cost_usd))


# -- PostgreSQL ----------------------------------------------------------------------------------

POSTGRES = os.environ.get(
    "CONFIGURABLE_AGENTS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres() -> Any:
    """A store URI in PostgreSQL whose tables go to a schema of the test's own, dropped after."""
    try:
        import psycopg

        connection = psycopg.connect(POSTGRES, connect_timeout=3, autocommit=True)
    except Exception as exc:
        require(False, f"PostgreSQL at {POSTGRES} is not reachable: {exc}")
    schema = f"durable_{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in POSTGRES else "?"
            yield f"{POSTGRES}{sep}options=-csearch_path%3D{schema}"
        finally:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_postgresql_store_resumes_a_failed_run(
    tmp_path: Path, stub_llm: StubLLM, postgres: str
) -> None:
    _script_chain(stub_llm)
    prepared = _prepare(_chain(tmp_path, stub_llm, store=postgres))
    first = _run(prepared, {"topic": "bees"})
    assert first.status is RunStatus.FAILED
    (entry,) = _ledger(prepared, "failed")
    assert entry.run_id == first.run_id and entry.spent.cost_usd == first.cost_usd
    resumed = _resume(prepared, first.run_id)
    _check_resumed_once(first.cost_usd, resumed, stub_llm)
    (entry,) = _ledger(prepared)
    assert (entry.status, entry.attempt) == ("success", 2)

    human = _prepare(_human_flow(tmp_path, timeout=3600), {CHECKPOINTS_ENV: postgres})
    waiting = _run(human, {"topic": "tides"})
    assert waiting.status is RunStatus.WAITING, waiting.error
    with pytest.raises(ResumeInputError):
        _resume(human, waiting.run_id, {"score": "x"})
    done = _resume(human, waiting.run_id, {"score": 9})
    assert done.status is RunStatus.SUCCESS and done.state["score"] == 9
