"""Costs attributed the way users ask: input and output apart, tools that bill per call."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, load_workflow, run_workflow
from configurable_agents.observability.spans import build_trace
from configurable_agents.pricing import PriceBook, TokenUsage, load_price_book, price_call

from .stub_llm import Reply, StubLLM

FINAL = "final_answer"
MILLION = Decimal(1_000_000)


@pytest.mark.parametrize(
    ("provider", "model", "usage"),
    [
        ("openai", "gpt-4o", TokenUsage(1_000, 500, cached_tokens=800)),
        ("anthropic", "claude-sonnet-4-5", TokenUsage(10_000, 500, 8_000, 1_000)),
        ("openai", "o3", TokenUsage(1_000, 2_000, reasoning_tokens=1_500)),
        ("google", "gemini-2.5-pro", TokenUsage(250_000, 1_000)),
    ],
)
def test_input_and_output_parts_add_up_to_the_total(
    provider: str, model: str, usage: TokenUsage
) -> None:
    price = price_call(provider, model, usage)
    assert price.input_usd is not None and price.output_usd is not None
    assert price.input_usd > 0 and price.output_usd > 0
    assert price.input_usd + price.output_usd == price.cost_usd


def test_gpt_4o_mini_parts_are_the_list_prices() -> None:
    price = price_call("openai", "gpt-4o-mini", TokenUsage(10_000, 1_000))
    assert (price.input_usd, price.output_usd) == (Decimal("0.0015"), Decimal("0.0006"))


def test_price_file_parts_put_cache_reads_and_writes_in_input(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "models:\n  - {provider: ollama, model: m, input_per_mtok: 1, output_per_mtok: 4,\n"
        "     cached_input_per_mtok: 0.5, cache_write_per_mtok: 2}\n"
    )
    price = load_price_book(path).price("ollama", "m", TokenUsage(1_000, 100, 400, 200))
    assert price.input_usd == (400 * 1 + 400 * Decimal("0.5") + 200 * 2) / MILLION
    assert price.output_usd == 400 / MILLION


def test_unpriced_has_no_parts() -> None:
    price = price_call("ollama", "llama3.2", TokenUsage(10, 10))
    assert (price.cost_usd, price.input_usd, price.output_usd) == (None, None, None)


def test_tool_prices_are_read_and_unnamed_tools_are_free(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("tools:\n  - {name: serper_search, per_call_usd: 0.001}\n")
    book = load_price_book(path)
    assert book.tool_price("serper_search") == Decimal("0.001")
    assert book.tool_price("calculator") is None
    assert PriceBook().tool_price("serper_search") is None


def test_a_negative_tool_price_is_a_located_error(tmp_path: Path) -> None:
    from configurable_agents.pricing import PricingError

    path = tmp_path / "prices.yaml"
    path.write_text("tools:\n  - {name: serper_search, per_call_usd: -1}\n")
    with pytest.raises(PricingError, match=r"prices\.yaml:2:\d+: tools\[0\]\.per_call_usd"):
        load_price_book(path)


def _workflow(tmp_path: Path, stub: StubLLM, **execution: Any) -> Path:
    (tmp_path / "prices.yaml").write_text("tools:\n  - {name: calculator, per_call_usd: 0.001}\n")
    data = {
        "schema_version": "1.0",
        "flow": {"name": "priced_tools"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "observability": {"pricing_file": "prices.yaml"},
            "execution": execution,
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {
                "id": "count",
                "prompt": "Count {topic}",
                "outputs": ["answer"],
                "tools": ["calculator"],
            }
        ],
        "edges": [{"from": "START", "to": "count"}, {"from": "count", "to": "END"}],
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _script(stub: StubLLM, calculations: int) -> None:
    usage = {"prompt_tokens": 1_000, "completion_tokens": 100}
    replies = [
        Reply.tool_calls([("calculator", {"expression": f"{n} * 7"})], usage=usage)
        for n in range(calculations)
    ]
    stub.script(*replies, Reply.tool_calls([(FINAL, {"answer": "42"})], usage=usage))


def test_priced_tool_calls_count_in_node_run_and_span(tmp_path: Path, stub_llm: StubLLM) -> None:
    _script(stub_llm, 2)
    path = _workflow(tmp_path, stub_llm)
    result = run_workflow(path, {"topic": "bees"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    (record,) = result.records
    assert [tool.cost_usd for tool in record.tool_calls] == [Decimal("0.001")] * 2
    model_cost = 3 * (1_000 * Decimal("0.15") + 100 * Decimal("0.60")) / MILLION
    assert record.cost_usd == result.cost_usd == model_cost + Decimal("0.002")
    assert record.to_dict()["tool_calls"][0]["cost_usd"] == 0.001
    _, spans = build_trace(result, load_workflow(path))
    tools = [s for s in spans if s["attributes"]["mlflow.spanType"] == '"TOOL"']
    assert [json.loads(s["attributes"]["mlflow.llm.cost"]) for s in tools] == [
        {"total_cost": 0.001}
    ] * 2
    assert {json.loads(s["attributes"]["mlflow.llm.provider"]) for s in tools} == {"tool"}
    chats = [s for s in spans if s["attributes"]["mlflow.spanType"] == '"CHAT_MODEL"']
    cost = json.loads(chats[0]["attributes"]["mlflow.llm.cost"])
    assert cost == {"input_cost": 0.00015, "output_cost": 0.00006, "total_cost": 0.00021}


def test_a_tool_call_that_would_exceed_the_budget_is_not_made(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    _script(stub_llm, 3)
    # Each model call costs $0.00021 and each calculation $0.001: the second calculation would
    # take the run past $0.0015 (0.00021 * 2 + 0.001 spent, plus 0.001).
    path = _workflow(tmp_path, stub_llm, max_cost_usd=0.0015)
    result = run_workflow(path, {"topic": "bees"}, env={})
    assert result.status is RunStatus.BUDGET_EXCEEDED, result.error
    assert "tool 'calculator'" in (result.error or "")
    (record,) = result.records
    assert [tool.result for tool in record.tool_calls] == ["0", None]
    assert record.tool_calls[1].error.startswith("not called: budget of $0.0015 reached")
    assert result.cost_usd <= Decimal("0.0015")


def test_mlflow_reads_input_output_and_tool_cost_back(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _script(stub_llm, 1)
    path = _workflow(tmp_path, stub_llm)
    data = yaml.safe_load(path.read_text())
    data["config"]["observability"]["mlflow"] = {
        "enabled": True,
        "tracking_uri": uri,
        "async_logging": False,
    }
    path.write_text(yaml.safe_dump(data))
    result = run_workflow(path, {"topic": "bees"}, env={}, trace=True)
    assert result.status is RunStatus.SUCCESS and result.trace_id
    trace = MlflowClient(uri).get_trace(result.trace_id)
    cost = json.loads(trace.info.trace_metadata["mlflow.trace.cost"])
    assert cost["input_cost"] == pytest.approx(2 * 0.00015)
    assert cost["output_cost"] == pytest.approx(2 * 0.00006)
    assert cost["total_cost"] == pytest.approx(2 * 0.00021 + 0.001) == float(result.cost_usd)
