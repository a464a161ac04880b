"""The engine on the offline mock provider: every example runs, control flow is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import InputError, RunStatus, SetupError, load_workflow, run_workflow

ROOT = Path(__file__).resolve().parent.parent
INPUTS = {
    "article_writer": {"topic": "bees"},
    "routing": {"ticket": "my invoice is wrong"},
    "loop": {"topic": "tides"},
    "fan_out": {"question": "why is the sky blue?"},
    "nested_output": {"text": "Acme makes anvils."},
}


def _workflow(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_every_example_runs_on_mock(name: str) -> None:
    result = run_workflow(ROOT / "examples" / f"{name}.yaml", INPUTS[name], llm="mock")
    assert result.status is RunStatus.SUCCESS, result.error
    workflow = load_workflow(ROOT / "examples" / f"{name}.yaml")
    targets = {e.parallel.target_node for e in workflow.config.edges if e.parallel}
    written = {o for n in workflow.config.nodes if n.id not in targets for o in n.outputs}
    assert written <= set(result.state)  # a fan-out target's output goes to its collect_field
    assert all(r.provider == "mock" and r.model_calls == 1 for r in result.records)
    assert result.usage.total_tokens == sum(r.usage.total_tokens for r in result.records) > 0
    assert result.cost_usd == 0 and not result.unpriced


def test_mock_tokens_come_from_the_rendered_prompt(tmp_path: Path) -> None:
    short = run_workflow(ROOT / "examples" / "article_writer.yaml", {"topic": "x"}, llm="mock")
    long = run_workflow(ROOT / "examples" / "article_writer.yaml", {"topic": "x" * 400}, llm="mock")
    assert long.records[0].usage.input_tokens - short.records[0].usage.input_tokens == 100
    assert "x" * 400 in long.records[0].prompt


def test_loop_that_never_exits_runs_exactly_max_iterations() -> None:
    result = run_workflow(ROOT / "examples" / "loop.yaml", {"topic": "tides"}, llm="mock")
    revisions = [r for r in result.records if r.node_id == "revise"]
    assert [r.iteration for r in revisions] == [1, 2, 3]
    assert [r.node_id for r in result.records] == [
        "draft_it",
        "revise",
        "revise",
        "revise",
        "title",
    ]


def test_fan_out_collects_in_item_order() -> None:
    result = run_workflow(ROOT / "examples" / "fan_out.yaml", INPUTS["fan_out"], llm="mock")
    items = result.state["sub_questions"]
    fan = [r for r in result.records if r.node_id == "answer_one"]
    assert sorted(r.item_index for r in fan) == list(range(len(items))) == [0, 1, 2]
    by_index = {r.item_index: r for r in fan}
    for index, item in enumerate(items):
        assert f"Sub-question {index}: {item}" in by_index[index].prompt
    assert result.outputs["answers"] == [by_index[i].output["answer"] for i in range(3)]


def test_route_default_and_condition(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "routing.yaml").read_text()
    result = run_workflow(_workflow(tmp_path, text), INPUTS["routing"], llm="mock")
    # the mock answers urgency 1 and category "mock category": neither condition holds
    assert [r.node_id for r in result.records] == ["classify", "general"]
    data = yaml.safe_load(text)
    data["edges"][1]["routes"][0]["condition"] = "state.urgency >= 1"
    result = run_workflow(_workflow(tmp_path, yaml.safe_dump(data)), INPUTS["routing"], llm="mock")
    assert [r.node_id for r in result.records] == ["classify", "escalate"]


def test_token_budget_stops_cleanly_with_partial_state(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    data["config"] = {"execution": {"max_tokens": 150}}
    result = run_workflow(_workflow(tmp_path, yaml.safe_dump(data)), {"topic": "t"}, llm="mock")
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert "token budget of 150 reached" in result.error
    assert result.usage.total_tokens <= 150
    assert result.state["draft"] == "mock draft"  # what ran before the stop is kept
    assert 1 <= len(result.records) < 5


def test_inputs_are_checked_all_at_once() -> None:
    with pytest.raises(InputError) as caught:
        run_workflow(ROOT / "examples" / "routing.yaml", {"tickt": "x", "urgency": "high"})
    assert caught.value.problems == [
        "unknown input 'tickt' (did you mean 'ticket'?)",
        "input 'urgency': expected int, got str 'high'",
        "missing required input 'ticket' (str)",
    ]


def test_missing_key_is_reported_before_any_call() -> None:
    with pytest.raises(SetupError, match="set OPENAI_API_KEY"):
        run_workflow(ROOT / "examples" / "routing.yaml", INPUTS["routing"], env={})


def test_unknown_llm_override_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown provider 'mok'"):
        run_workflow(ROOT / "examples" / "routing.yaml", INPUTS["routing"], llm="mok")


def test_node_id_equal_to_a_state_field_runs(tmp_path: Path) -> None:
    result = run_workflow(
        ROOT / "examples" / "nested_output.yaml", INPUTS["nested_output"], llm="mock"
    )
    assert result.outputs["pitch"] == "mock pitch"
    assert "Acme" not in result.outputs["pitch"]
    assert (
        'Products: ["mock products 1", "mock products 2", "mock products 3"]'
        in result.records[1].prompt
    )


def test_recursion_limit_is_honoured(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    data["edges"][2]["loop"]["max_iterations"] = 50
    data["config"] = {"execution": {"recursion_limit": 6}}
    result = run_workflow(_workflow(tmp_path, yaml.safe_dump(data)), {"topic": "t"}, llm="mock")
    assert result.status is RunStatus.FAILED
    assert result.error == "recursion_limit of 6 steps reached"
    assert len(result.records) == 6


def test_branches_of_different_lengths_meet_once(tmp_path: Path) -> None:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "fork"},
        "state": {"fields": {"topic": {"type": "str"}}},
        "nodes": [
            {"id": "pros", "prompt": "pros of {topic}", "outputs": ["pros"]},
            {"id": "pros_more", "prompt": "more on {pros}", "outputs": ["pros2"]},
            {"id": "cons", "prompt": "cons of {topic}", "outputs": ["cons"]},
            {"id": "join", "prompt": "{pros2} vs {cons}", "outputs": ["summary"]},
        ],
        "edges": [
            {"from": "START", "to": ["pros", "cons"]},
            {"from": "pros", "to": "pros_more"},
            {"from": "pros_more", "to": "join"},
            {"from": "cons", "to": "join"},
            {"from": "join", "to": "END"},
        ],
    }
    result = run_workflow(_workflow(tmp_path, yaml.safe_dump(data)), {"topic": "t"}, llm="mock")
    order = [r.node_id for r in result.records]
    assert order.count("join") == 1
    assert order[-1] == "join"
    assert "mock pros2 vs mock cons" in result.records[-1].prompt


def test_observers_see_every_result_and_cannot_fail_a_run() -> None:
    import asyncio

    from configurable_agents.engine import NullObserver, prepare_workflow

    seen: list[str] = []

    class Watcher(NullObserver):
        def run_started(self, run: Any) -> None:
            seen.append(f"start {run.run_id}")

        def call_finished(self, node_id: str, call: Any) -> None:
            seen.append(f"call {node_id}")

        def node_finished(self, record: Any) -> None:
            seen.append(f"node {record.node_id}")

        def run_finished(self, result: Any) -> None:
            seen.append(f"end {result.run_id}")

    class Broken(NullObserver):
        def run_started(self, run: Any) -> None:
            raise RuntimeError("observer bug")

        def run_finished(self, result: Any) -> None:
            raise RuntimeError("observer bug")

    prepared = prepare_workflow(
        ROOT / "examples" / "article_writer.yaml", llm="mock", observers=[Broken(), Watcher()]
    )
    result = asyncio.run(prepared.arun({"topic": "bees"}, run_id="r-1"))
    assert result.status is RunStatus.SUCCESS
    assert seen == ["start r-1", "call write", "node write", "end r-1"]


def test_the_engine_attaches_no_observer_by_itself() -> None:
    from configurable_agents.engine import prepare_workflow

    path = ROOT / "examples" / "article_writer.yaml"  # it enables MLflow recording
    assert prepare_workflow(path, llm="mock").observers == []
