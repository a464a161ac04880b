"""`report costs --breakdown tag:KEY`: cost per user (or any run tag), tool prices included.

Runs with and without a `user_id` tag, one of them calling a tool priced per call and one
failing, are recorded for real through the stub server; each figure must equal what the stub
billed for that tag's runs, to the micro-dollar.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from configurable_agents import RunStatus, run_workflow
from configurable_agents.cli import app
from configurable_agents.reports import ReportQuery, cost_report, from_csv, render

from .stub_llm import Reply, StubLLM

MICRO = 0.5e-6
TOOL_PRICE = 0.0025
PLAN = [  # user_id tag (None: untagged), calculations, fails
    ("u-1", 0, False),
    ("u-1", 2, False),
    ("u-2", 1, False),
    ("u-2", 0, True),
    (None, 0, False),
]


def _cost(tokens_in: int, tokens_out: int) -> float:
    return (tokens_in * 0.15 + tokens_out * 0.60) / 1e6  # gpt-4o-mini list prices


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("tags")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    (folder / "prices.yaml").write_text(
        f"tools: [{{name: calculator, per_call_usd: {TOOL_PRICE}}}]"
    )
    billed: dict[Any, dict[str, Any]] = defaultdict(lambda: {"cost": 0.0, "runs": 0, "failed": 0})
    with pytest.MonkeyPatch.context() as env, StubLLM() as stub:
        env.setenv("CONFIGURABLE_AGENTS_SPOOL", str(folder / "spool.db"))
        env.delenv("CONFIGURABLE_AGENTS_TRACING", raising=False)
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.chdir(folder)
        data = {
            "schema_version": "1.0",
            "flow": {"name": "tagged"},
            "config": {
                "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
                "observability": {
                    "pricing_file": "prices.yaml",
                    "mlflow": {"enabled": True, "tracking_uri": uri, "async_logging": False},
                },
            },
            "state": {"fields": {"topic": {"type": "str", "required": True}}},
            "nodes": [
                {"id": "count", "prompt": "{topic}", "outputs": ["n"], "tools": ["calculator"]}
            ],
            "edges": [{"from": "START", "to": "count"}, {"from": "count", "to": "END"}],
        }
        path = folder / "tagged.yaml"
        path.write_text(yaml.safe_dump(data))
        for index, (user, calculations, fails) in enumerate(PLAN):
            tokens = [(10_000 + 1_000 * index + call, 500 + call) for call in range(3)]
            replies = [
                Reply.tool_calls([("calculator", {"expression": "6*7"})], usage=_usage(*tokens[c]))
                for c in range(calculations)
            ]
            final = Reply.tool_calls([("final_answer", {"n": "42"})], usage=_usage(*tokens[-1]))
            stub.script(*replies, Reply.error(400) if fails else final)
            tags = {"user_id": user} if user else {}
            result = run_workflow(path, {"topic": "t"}, tags=tags, env={})
            assert result.status is (RunStatus.FAILED if fails else RunStatus.SUCCESS)
            entry = billed[user or "(none)"]
            entry["runs"] += 1
            entry["failed"] += fails
            entry["cost"] += sum(_cost(*tokens[c]) for c in range(calculations))
            entry["cost"] += calculations * TOOL_PRICE + (0 if fails else _cost(*tokens[-1]))
            assert float(result.cost_usd) == pytest.approx(
                sum(_cost(*tokens[c]) for c in range(calculations))
                + calculations * TOOL_PRICE
                + (0 if fails else _cost(*tokens[-1])),
                abs=MICRO,
            )
        yield uri, dict(billed)


def _usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}


def _cli(uri: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["report", "costs", "--tracking-uri", uri, *args])


def test_cost_per_user_equals_what_the_stub_billed(store: tuple[str, dict[str, Any]]) -> None:
    uri, billed = store
    outcome = _cli(uri, "--breakdown", "tag:user_id", "--format", "json")
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.stdout)
    rows = {row["value"]: row for row in report["by_tag"]["user_id"]}
    assert set(rows) == {"u-1", "u-2", "(none)"}
    for user, expected in billed.items():
        assert rows[user]["cost_usd"] == pytest.approx(expected["cost"], abs=MICRO), user
        assert rows[user]["runs"] == expected["runs"]
        assert rows[user]["failed"] == expected["failed"]
    total = sum(e["cost"] for e in billed.values())
    assert report["total_cost_usd"] == pytest.approx(total, abs=MICRO)
    assert report["by_workflow"] == [] and report["by_model"] == []  # only what was asked


def test_tool_costs_appear_as_a_model_of_provider_tool(store: tuple[str, dict[str, Any]]) -> None:
    uri, _ = store
    report = cost_report(ReportQuery(uri), breakdown=("model",))
    models = {(m["provider"], m["model"]): m["cost_usd"] for m in report.by_model}
    assert models[("tool", "calculator")] == pytest.approx(3 * TOOL_PRICE, abs=MICRO)


def test_bare_breakdown_gives_workflow_and_model(store: tuple[str, dict[str, Any]]) -> None:
    uri, _ = store
    outcome = _cli(uri, "--period", "last_7_days", "--breakdown", "--format", "json")
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.stdout)
    assert [w["workflow"] for w in report["by_workflow"]] == ["tagged"]
    assert {m["model"] for m in report["by_model"]} == {"gpt-4o-mini", "calculator"}
    both = _cli(uri, "--breakdown", "--breakdown", "tag:user_id", "--format", "json")
    assert set(json.loads(both.stdout)["by_tag"]) == {"user_id"}
    assert json.loads(both.stdout)["by_workflow"]


def test_tag_breakdowns_round_trip_through_csv_and_show_in_the_table(
    store: tuple[str, dict[str, Any]],
) -> None:
    uri, _ = store
    report = cost_report(ReportQuery(uri), breakdown=("tag:user_id", "tag:missing"))
    assert from_csv(render(report, "csv")).by_tag == report.by_tag
    assert [row["value"] for row in report.by_tag["missing"]] == ["(none)"]
    table = render(report, "table")
    assert "Cost by Tag user_id:" in table and "(none)" in table


@pytest.mark.parametrize("value", ["tag:", "owner", "tag: "])
def test_a_bad_breakdown_is_one_line_and_exit_2(
    store: tuple[str, dict[str, Any]], value: str
) -> None:
    uri, _ = store
    outcome = _cli(uri, "--breakdown", value)
    assert outcome.exit_code == 2
    assert len(outcome.output.strip().splitlines()) == 1 and "--breakdown" in outcome.output
