"""The engine driven through the real `langchain-openai` client against the stub server.

Token usage, retries, faults, tool calls and concurrency all cross a real HTTP connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, load_workflow, run_workflow
from configurable_agents.engine import calls

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
FINAL = "final_answer"


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "BACKOFF_BASE_S", 0.001)


def _workflow(
    tmp_path: Path, stub: StubLLM, data: dict[str, Any], call_timeout: float = 10, **execution: Any
) -> Path:
    data = json.loads(json.dumps(data))
    data.setdefault("config", {})
    data["config"]["llm"] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_base": stub.base_url,
        "timeout": call_timeout,
    }
    data["config"]["execution"] = {**data["config"].get("execution", {}), **execution}
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())


SIMPLE = {
    "schema_version": "1.0",
    "flow": {"name": "simple"},
    "state": {"fields": {"topic": {"type": "str", "required": True}}},
    "nodes": [{"id": "write", "prompt": "Write about {topic}", "outputs": ["article"]}],
    "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
}


def _final(args: dict[str, Any], **usage: int) -> Reply:
    return Reply.tool_calls([(FINAL, args)], usage=usage or None)


def test_usage_and_cost_come_from_the_wire(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.script(_final({"article": "A"}, prompt_tokens=10_000, completion_tokens=1_000))
    result = run_workflow(_workflow(tmp_path, stub_llm, SIMPLE), {"topic": "bees"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.outputs == {"article": "A"}
    (record,) = result.records
    assert (record.usage.input_tokens, record.usage.output_tokens) == (10_000, 1_000)
    assert float(record.cost_usd) == pytest.approx(0.0021)  # gpt-4o-mini list price
    request = stub_llm.requests[0]
    assert request["model"] == "gpt-4o-mini"
    assert request["tool_choice"]["function"]["name"] == FINAL
    assert "Write about bees" in json.dumps(request["messages"])


def test_every_example_runs_against_the_stub(tmp_path: Path, stub_llm: StubLLM) -> None:
    inputs = {
        "article_writer": {"topic": "bees"},
        "routing": {"ticket": "hi"},
        "loop": {"topic": "t"},
        "fan_out": {"question": "q"},
        "nested_output": {"text": "t"},
    }
    for name, values in inputs.items():
        result = run_workflow(_workflow(tmp_path, stub_llm, _example(name)), values, env={})
        assert result.status is RunStatus.SUCCESS, (name, result.error)
        assert result.usage.total_tokens > 0 and result.cost_usd > 0


def test_nested_output_with_typed_list_and_dict(tmp_path: Path, stub_llm: StubLLM) -> None:
    profile = {
        "name": "Acme",
        "founded": 1950,
        "products": ["anvils", "rockets"],
        "headcount_by_country": {"US": 10, "FR": 2},
        "ceo": {"name": "W. Coyote", "since": 1999},
    }
    stub_llm.script(_final({"profile": profile}), _final({"pitch": "Buy anvils"}))
    path = _workflow(tmp_path, stub_llm, _example("nested_output"))
    result = run_workflow(path, {"text": "t"}, env={})
    assert result.outputs["profile"] == profile
    sent = json.dumps(stub_llm.requests[1]["messages"])
    assert 'Products: [\\"anvils\\", \\"rockets\\"]' in sent
    tool = stub_llm.requests[0]["tools"][0]["function"]
    properties = json.dumps(tool["parameters"])
    assert "headcount_by_country" in properties and "additionalProperties" in properties


def test_invalid_reply_is_sent_back_with_the_error(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.script(_final({"score": "high"}), _final({"score": 7}))
    data = json.loads(json.dumps(SIMPLE))
    data["nodes"][0]["outputs"] = ["score"]
    data["nodes"][0]["output_schema"] = {"type": "int"}
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS
    assert result.outputs == {"score": 7}
    assert result.records[0].model_calls == 2
    feedback = json.dumps(stub_llm.requests[1]["messages"][-1])
    assert "not valid" in feedback and "score" in feedback


def test_invalid_replies_fail_after_max_retries(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: _final({"wrong": 1})
    path = _workflow(tmp_path, stub_llm, SIMPLE, max_retries=2)
    result = run_workflow(path, {"topic": "x"}, env={})
    assert result.status is RunStatus.FAILED
    assert stub_llm.calls == 3
    assert "no valid reply after 3 attempt(s)" in result.error
    assert "\n" not in result.error


def test_route_on_an_int_threshold(tmp_path: Path, stub_llm: StubLLM) -> None:
    for urgency, expected in ((5, "escalate"), (2, "general")):
        stub_llm.reset()
        stub_llm.script(_final({"category": "other", "urgency": urgency}))
        path = _workflow(tmp_path, stub_llm, _example("routing"))
        result = run_workflow(path, {"ticket": "t"}, env={})
        assert [r.node_id for r in result.records] == ["classify", expected]


def test_loop_stops_when_the_field_turns_true(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.script(
        _final({"draft": "d0"}),
        _final({"draft": "d1", "approved": False}),
        _final({"draft": "d2", "approved": True}),
    )
    result = run_workflow(_workflow(tmp_path, stub_llm, _example("loop")), {"topic": "t"}, env={})
    assert [r.node_id for r in result.records] == ["draft_it", "revise", "revise", "title"]
    assert result.state["draft"] == "d2"


def test_loop_that_never_exits_makes_exactly_three_calls(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = {
        **SIMPLE,
        "state": {"fields": {"topic": {"type": "str"}, "done": {"type": "bool", "default": False}}},
        "nodes": [{"id": "work", "prompt": "{topic}", "outputs": ["done"]}],
        "edges": [
            {"from": "START", "to": "work"},
            {"from": "work", "loop": {"condition_field": "done", "max_iterations": 3}},
        ],
    }
    stub_llm.responder = lambda request: _final({"done": False})
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS
    assert stub_llm.calls == 3


def test_fan_out_limits_concurrency_and_keeps_item_order(tmp_path: Path, stub_llm: StubLLM) -> None:
    items = [f"q{i}" for i in range(5)]

    def answer(request: dict[str, Any]) -> Reply:
        text = json.dumps(request["messages"])
        if "Split this research question" in text:
            return _final({"sub_questions": items})
        if "Findings" in text:
            return _final({"report": "done"})
        index = next(i for i, item in enumerate(items) if f"Sub-question {i}: {item}" in text)
        # later items answer faster, so completion order is the reverse of item order
        return Reply.tool_calls([(FINAL, {"answer": f"a{index}"})], delay=0.05 * (5 - index))

    stub_llm.responder = answer
    data = _example("fan_out")
    data["config"] = {"execution": {"max_concurrency": 2}}
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"question": "q"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.outputs["answers"] == [f"a{i}" for i in range(5)]
    assert stub_llm.calls == 7  # plan + 5 items + synthesise
    assert stub_llm.max_in_flight == 2


def test_independent_branches_run_concurrently(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = {
        **SIMPLE,
        "nodes": [
            {"id": "pros", "prompt": "pros of {topic}", "outputs": ["pros"]},
            {"id": "cons", "prompt": "cons of {topic}", "outputs": ["cons"]},
            {"id": "join", "prompt": "{pros} {cons}", "outputs": ["summary"]},
        ],
        "edges": [
            {"from": "START", "to": ["pros", "cons"]},
            {"from": "pros", "to": "join"},
            {"from": "cons", "to": "join"},
            {"from": "join", "to": "END"},
        ],
    }

    def answer(request: dict[str, Any]) -> Reply:
        name = request["tools"][0]["function"]["parameters"]["required"][0]
        return Reply.tool_calls([(FINAL, {name: name.upper()})], delay=0.1)

    stub_llm.responder = answer
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS
    assert stub_llm.max_in_flight == 2
    assert result.outputs == {"pros": "PROS", "cons": "CONS", "summary": "SUMMARY"}
    assert [r.node_id for r in result.records].count("join") == 1


def test_tool_call_round_trip(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = json.loads(json.dumps(SIMPLE))
    data["nodes"][0]["tools"] = ["calculator"]
    stub_llm.script(
        Reply.tool_calls([("calculator", {"expression": "6 * 7"})]),
        _final({"article": "the answer is 42"}),
    )
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    (call,) = result.records[0].tool_calls
    assert (call.name, call.args, call.result) == ("calculator", {"expression": "6 * 7"}, "42")
    second = stub_llm.requests[1]["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "42"
    assert stub_llm.requests[0]["tool_choice"] == "required"


def test_tool_failure_with_on_error_fail_stops_the_node(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = json.loads(json.dumps(SIMPLE))
    data["nodes"][0]["tools"] = [{"name": "calculator", "on_error": "fail"}]
    stub_llm.script(Reply.tool_calls([("calculator", {"expression": "1/0"})]))
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"topic": "x"}, env={})
    assert result.status is RunStatus.FAILED
    assert "tool 'calculator' failed" in result.error


def test_tool_calls_are_capped(tmp_path: Path, stub_llm: StubLLM) -> None:
    data = json.loads(json.dumps(SIMPLE))
    data["nodes"][0]["tools"] = [{"name": "calculator", "on_error": "continue"}]
    data["nodes"][0]["max_tool_calls"] = 2

    def answer(request: dict[str, Any]) -> Reply:
        if request["tool_choice"] == "required":
            return Reply.tool_calls([("calculator", {"expression": "1+1"})])
        return _final({"article": "ok"})

    stub_llm.responder = answer
    result = run_workflow(_workflow(tmp_path, stub_llm, data), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS
    assert len(result.records[0].tool_calls) == 2
    assert stub_llm.calls == 3


@pytest.mark.parametrize(
    "fault",
    [
        lambda: Reply.error(429, retry_after=0),
        lambda: Reply.error(500),
        lambda: Reply.error(503),
        Reply.malformed,
        Reply.drop,
    ],
    ids=["429", "500", "503", "malformed", "dropped"],
)
def test_transient_faults_are_retried(tmp_path: Path, stub_llm: StubLLM, fault: Any) -> None:
    stub_llm.script(fault(), fault(), _final({"article": "A"}))
    result = run_workflow(_workflow(tmp_path, stub_llm, SIMPLE), {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    assert stub_llm.calls == 3


def test_retry_after_is_honoured(stub_llm: StubLLM) -> None:
    import openai

    stub_llm.script(Reply.error(429, retry_after=7))
    client = openai.OpenAI(base_url=stub_llm.base_url, api_key="t", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert calls.retry_delay(caught.value, 0) == 7


def test_persistent_fault_fails_with_one_line(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: Reply.error(500)
    result = run_workflow(
        _workflow(tmp_path, stub_llm, SIMPLE, max_retries=2), {"topic": "x"}, env={}
    )
    assert result.status is RunStatus.FAILED
    assert stub_llm.calls == 3
    assert "Error code: 500" in result.error and "\n" not in result.error


def test_client_errors_are_not_retried(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: Reply.error(400)
    result = run_workflow(_workflow(tmp_path, stub_llm, SIMPLE), {"topic": "x"}, env={})
    assert result.status is RunStatus.FAILED
    assert stub_llm.calls == 1
    assert "400" in result.error


def test_slow_reply_times_out_then_retries(tmp_path: Path, stub_llm: StubLLM) -> None:
    late = Reply.tool_calls([(FINAL, {"article": "late"})], delay=2.0)
    stub_llm.script(late, _final({"article": "A"}))
    path = _workflow(tmp_path, stub_llm, SIMPLE, call_timeout=0.5)
    result = run_workflow(path, {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.outputs == {"article": "A"}


def test_run_timeout_keeps_partial_state(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.script(_final({"draft": "first"}), Reply.tool_calls([(FINAL, {})], delay=3.0))
    path = _workflow(tmp_path, stub_llm, _example("loop"), timeout=0.6)
    result = run_workflow(path, {"topic": "t"}, env={})
    assert result.status is RunStatus.TIMEOUT
    assert result.state["draft"] == "first"
    assert result.records[0].node_id == "draft_it"


def test_cost_budget_stops_before_the_call_that_would_exceed_it(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    def answer(request: dict[str, Any]) -> Reply:
        wanted = request["tools"][0]["function"]["parameters"]["properties"]
        values = {"draft": "d", "approved": False, "headline": "h"}
        args = {key: values[key] for key in wanted}
        return _final(args, prompt_tokens=20_000, completion_tokens=2_000)

    stub_llm.responder = answer
    # Each call really costs 20k * $0.15/M + 2k * $0.60/M = $0.0042, far more than its short
    # prompt suggests. After two calls ($0.0084) the third still fits the $0.01 budget by its
    # prompt; once it is billed ($0.0126) no further call starts.
    path = _workflow(tmp_path, stub_llm, _example("loop"), max_cost_usd=0.01)
    result = run_workflow(path, {"topic": "t"}, env={})
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert stub_llm.calls == 3
    assert float(result.cost_usd) == pytest.approx(0.0126)
    assert "budget of $0.01 reached: $0.012600 spent" in result.error
    assert result.state["draft"] == "d"


def test_workflow_loads_once_per_run(tmp_path: Path, stub_llm: StubLLM) -> None:
    workflow = load_workflow(_workflow(tmp_path, stub_llm, SIMPLE))
    first = run_workflow(workflow, {"topic": "a"}, env={})
    second = run_workflow(workflow, {"topic": "b"}, env={})
    assert first.run_id != second.run_id
    assert [first.status, second.status] == [RunStatus.SUCCESS, RunStatus.SUCCESS]
