"""The cost engine: exact prices for the documented cases, price files, unpriced models."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from configurable_agents import RunStatus, SetupError, run_workflow
from configurable_agents.pricing import (
    PriceBook,
    PricingError,
    load_price_book,
    price_call,
)
from configurable_agents.pricing.usage import TokenUsage

from .stub_llm import Reply, StubLLM


@pytest.mark.parametrize(
    ("provider", "model", "usage", "cost"),
    [
        ("openai", "gpt-4o", TokenUsage(1_000, 500, cached_tokens=800), "0.006500"),
        (
            "anthropic",
            "claude-sonnet-4-5",
            TokenUsage(10_000, 500, cached_tokens=8_000, cache_write_tokens=1_000),
            "0.016650",
        ),
        ("openai", "o3", TokenUsage(1_000, 2_000, reasoning_tokens=1_500), "0.018000"),
        ("google", "gemini-2.5-pro", TokenUsage(250_000, 1_000), "0.640000"),
        ("openai", "gpt-4o-mini", TokenUsage(10_000, 1_000), "0.002100"),
    ],
    ids=["gpt-4o-cached", "claude-cache-rw", "o3-reasoning", "gemini-long-context", "gpt-4o-mini"],
)
def test_documented_cases_come_out_exactly(
    provider: str, model: str, usage: TokenUsage, cost: str
) -> None:
    price = price_call(provider, model, usage)
    assert price.cost_usd is not None
    assert price.cost_usd.quantize(Decimal("0.000001")) == Decimal(cost)
    assert price.source.startswith("genai-prices ")


def test_unknown_and_self_hosted_models_are_unpriced_not_free() -> None:
    assert price_call("openai", "my-finetune", TokenUsage(10, 10)).cost_usd is None
    unpriced = price_call("ollama", "llama3.2", TokenUsage(10, 10))
    assert unpriced.cost_usd is None and unpriced.source.startswith("unpriced")
    assert price_call("mock", "anything", TokenUsage(10, 10)).cost_usd == 0


PRICES = """\
models:
  - provider: ollama
    model: llama3.2
    input_per_mtok: 0.10
    output_per_mtok: 0.40
  - provider: openai
    model: gpt-4o-mini
    input_per_mtok: 0.10
    output_per_mtok: 0.50
    cached_input_per_mtok: 0.01
    effective_from: 2020-01-01
  - provider: openai
    model: gpt-4o
    input_per_mtok: 1
    output_per_mtok: 1
    effective_until: 2020-12-31
"""


def test_price_file_overrides_and_adds_prices(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(PRICES)
    book = load_price_book(path)
    local = book.price("ollama", "llama3.2", TokenUsage(1_000_000, 1_000_000))
    assert (local.cost_usd, local.source) == (Decimal("0.50"), str(path))
    negotiated = book.price(
        "openai", "gpt-4o-mini", TokenUsage(1_000_000, 0, cached_tokens=500_000)
    )
    assert negotiated.cost_usd == Decimal("0.055")  # 500k fresh at 0.10 + 500k cached at 0.01
    expired = book.price("openai", "gpt-4o", TokenUsage(1_000, 500, cached_tokens=800))
    assert expired.source.startswith("genai-prices")  # the override ended in 2020


def test_price_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(PRICES)
    monkeypatch.setenv("CONFIGURABLE_AGENTS_PRICING", str(path))
    assert load_price_book().source == str(path)
    assert load_price_book(None).overrides


def test_bad_price_file_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text("models:\n  - provider: openai\n    model: x\n    input_per_mtk: 1\n")
    with pytest.raises(PricingError) as caught:
        load_price_book(path)
    message = str(caught.value)
    assert f"{path}:4:5: models[0].input_per_mtk: unknown key 'input_per_mtk'" in message
    assert "models[0].output_per_mtok: missing required key" in message
    with pytest.raises(PricingError, match="no such file"):
        load_price_book(tmp_path / "missing.yaml")


def test_run_uses_the_workflows_price_file(tmp_path: Path, stub_llm: StubLLM) -> None:
    (tmp_path / "pricing.yaml").write_text(
        "models:\n"
        "  - {provider: openai, model: house-model, input_per_mtok: 2, output_per_mtok: 4}\n"
    )
    workflow = {
        "schema_version": "1.0",
        "flow": {"name": "priced"},
        "config": {
            "llm": {"provider": "openai", "model": "house-model", "api_base": stub_llm.base_url},
            "execution": {"max_cost_usd": 1.0},
            "observability": {"pricing_file": "pricing.yaml"},
        },
        "nodes": [{"id": "a", "prompt": "hi", "outputs": ["x"]}],
        "edges": [{"from": "START", "to": "a"}, {"from": "a", "to": "END"}],
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    stub_llm.script(Reply.tool_calls([("final_answer", {"x": "y"})], usage={
        "prompt_tokens": 1_000_000, "completion_tokens": 500_000}))  # fmt: skip
    result = run_workflow(path, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    assert result.cost_usd == Decimal(4)
    assert result.records[0].price_source == str(tmp_path / "pricing.yaml")
    assert json.loads(json.dumps(result.to_dict()))["cost_usd"] == 4.0


def test_budget_on_an_unpriced_model_is_refused(tmp_path: Path) -> None:
    workflow = {
        "schema_version": "1.0",
        "flow": {"name": "unpriced"},
        "config": {
            "llm": {"provider": "openai", "model": "house-model", "api_base": "http://127.0.0.1:9"},
            "execution": {"max_cost_usd": 1.0},
        },
        "nodes": [{"id": "a", "prompt": "hi", "outputs": ["x"]}],
        "edges": [{"from": "START", "to": "a"}, {"from": "a", "to": "END"}],
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    with pytest.raises(SetupError, match="openai/house-model has no known price"):
        run_workflow(path, env={})


def test_empty_price_book_defers_to_genai_prices() -> None:
    usage = TokenUsage(10_000, 1_000)
    assert PriceBook().price("openai", "gpt-4o-mini", usage) == price_call(
        "openai", "gpt-4o-mini", usage
    )
