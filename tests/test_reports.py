"""`report costs|runs|profile` and `configurable_agents.reports`, over runs recorded for real.

One store, shared by the module: workflows run through the real client against the stub server
(successes, a failure, a budget stop, a run with an unpriced model), recorded to a tmp SQLite
store. Every figure is checked against what the stub billed, priced here from list prices.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from configurable_agents import RunStatus, run_workflow
from configurable_agents.cli import app
from configurable_agents.reports import CostReport, ReportError, ReportQuery, cost_report, from_csv

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}  # USD per million tokens
UNPRICED = "house-model-7b"
MICRO = 0.5e-6
NODE_OF_OUTPUTS = {("draft",): "draft_it", ("approved", "draft"): "revise", ("headline",): "title"}
"""The nodes of examples/loop.yaml by the fields they answer; other nodes answer `<node>_text`."""


@dataclasses.dataclass
class Recorded:
    """The shared store and what the stub billed into it."""

    uri: str
    folder: Path
    runs: list[Any]
    calls: list[tuple[str, str, str, int, int]]  # workflow, node, model, input, output tokens

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        price_in, price_out = PRICES[model]
        return (tokens_in * price_in + tokens_out * price_out) / 1e6

    def billed(self, key: int | None = None) -> dict[Any, float]:
        """Cost of the priced calls, summed by a field of the call (0 workflow, 1 node, 2 model)."""
        sums: dict[Any, float] = defaultdict(float)
        for call in self.calls:
            if call[2] in PRICES:
                sums[None if key is None else call[key]] += self.cost(*call[2:])
        return sums


def _flow(name: str, nodes: list[tuple[str, str]], stub: StubLLM, uri: str) -> dict[str, Any]:
    edges = ["START", *[node for node, _ in nodes], "END"]
    return {
        "schema_version": "1.0",
        "flow": {"name": name},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "observability": {
                "mlflow": {"enabled": True, "tracking_uri": uri, "async_logging": False}
            },
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {
                "id": node,
                "prompt": f"{node} about {{topic}}",
                "outputs": [f"{node}_text"],
                "llm": {"provider": "openai", "model": model, "api_base": stub.base_url},
            }
            for node, model in nodes
        ],
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(edges)],
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("reports")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    calls: list[tuple[str, str, str, int, int]] = []
    plan = {"fail": False, "delay": {}}
    with pytest.MonkeyPatch.context() as env, StubLLM() as stub:
        env.setenv("CONFIGURABLE_AGENTS_SPOOL", str(folder / "spool.db"))
        env.delenv("CONFIGURABLE_AGENTS_TRACING", raising=False)
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.chdir(folder)

        def answer(request: dict[str, Any]) -> Reply:
            if plan["fail"]:
                return Reply.error(400)
            wanted = dict(request["tools"][0]["function"]["parameters"]["properties"])
            fields = list(wanted)
            node = NODE_OF_OUTPUTS.get(tuple(sorted(wanted))) or wanted.popitem()[0][:-5]
            tokens_in, tokens_out = 20_000 + 1_000 * len(calls), 2_000 + 7 * len(calls)
            calls.append((current["workflow"], node, request["model"], tokens_in, tokens_out))
            return Reply.tool_calls(
                [("final_answer", {key: False if key == "approved" else "d" for key in fields})],
                usage={"prompt_tokens": tokens_in, "completion_tokens": tokens_out},
                delay=plan["delay"].get(node, 0.0),
            )

        stub.responder = answer
        current = {"workflow": ""}
        runs = []

        def run(data: dict[str, Any], **options: Any) -> Any:
            current["workflow"] = data["flow"]["name"]
            path = folder / f"{data['flow']['name']}.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            result = run_workflow(path, {"topic": "tides"}, env={}, **options)
            runs.append(result)
            return result

        writer = _flow("writer", [("write", "gpt-4o-mini")], stub, uri)
        assert run(writer).status is RunStatus.SUCCESS
        assert run(writer).status is RunStatus.SUCCESS
        plan["fail"] = True
        assert run(writer).status is RunStatus.FAILED
        plan["fail"] = False
        plan["delay"] = {"outline": 0.4}
        pair = _flow("pair", [("outline", "gpt-4o"), ("draft", "gpt-4o-mini")], stub, uri)
        assert run(pair).status is RunStatus.SUCCESS
        plan["delay"] = {}
        loop = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
        loop["config"] = {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "execution": {"max_cost_usd": 0.01},
            "observability": writer["config"]["observability"],
        }
        assert run(loop).status is RunStatus.BUDGET_EXCEEDED
        private = _flow("private", [("outline", "gpt-4o-mini"), ("draft", UNPRICED)], stub, uri)
        result = run(private)
        assert result.status is RunStatus.SUCCESS and result.unpriced
        yield Recorded(uri, folder, runs, calls)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, [*args], catch_exceptions=False)


def _costs(recorded: Recorded, *args: str) -> dict[str, Any]:
    outcome = _cli("report", "costs", "--tracking-uri", recorded.uri, "--format", "json", *args)
    assert outcome.exit_code == 0, outcome.output
    return json.loads(outcome.stdout)


def test_recorded_traces_carry_the_tags_reports_group_by(recorded: Recorded) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(recorded.uri)
    tags = {r.trace_id: client.get_trace(r.trace_id).info.tags for r in recorded.runs}
    assert {t["mlflow.traceName"] for t in tags.values()} == {
        "writer", "pair", "iterative_refinement", "private"}  # fmt: skip
    assert [tags[r.trace_id]["unpriced"] for r in recorded.runs] == [
        "true" if r.unpriced else "false" for r in recorded.runs
    ]
    private = client.get_trace(recorded.runs[-1].trace_id)
    costs = {
        s.get_attribute("mlflow.llm.model"): s.get_attribute("mlflow.llm.cost")
        for s in private.data.spans
        if s.span_type == "CHAT_MODEL"
    }
    assert costs[UNPRICED] == {}  # empty: the store leaves it unpriced instead of pricing it
    assert costs["gpt-4o-mini"]["total_cost"] == pytest.approx(recorded.billed(0)["private"])


def test_cost_figures_match_what_the_stub_billed(recorded: Recorded) -> None:
    report = _costs(recorded, "--breakdown", "workflow", "--breakdown", "model",
                    "--breakdown", "node")  # fmt: skip
    assert report["source"] == "traces"
    assert abs(report["total_cost_usd"] - recorded.billed()[None]) < MICRO
    assert report["total_runs"] == 6
    assert (report["successful"], report["failed"]) == (4, 2)
    assert report["total_tokens"] == sum(c[3] + c[4] for c in recorded.calls)
    assert abs(report["avg_cost_per_run"] - recorded.billed()[None] / 6) < MICRO
    by_workflow = {w["workflow"]: w for w in report["by_workflow"]}
    billed = recorded.billed(0)
    assert set(by_workflow) == {"writer", "pair", "iterative_refinement", "private"}
    for name, row in by_workflow.items():
        assert abs(row["cost_usd"] - billed[name]) < MICRO, name
        assert row["tokens"] == sum(c[3] + c[4] for c in recorded.calls if c[0] == name)
    assert (by_workflow["writer"]["runs"], by_workflow["writer"]["failed"]) == (3, 1)
    by_model = {m["model"]: m["cost_usd"] for m in report["by_model"]}
    assert set(by_model) == set(PRICES)
    for model, cost in recorded.billed(2).items():
        assert abs(by_model[model] - cost) < MICRO, model
    by_node = {(n["workflow"], n["node"]): n["cost_usd"] for n in report["by_node"]}
    expected: dict[tuple[str, str], float] = defaultdict(float)
    for call in recorded.calls:
        if call[2] in PRICES:
            expected[(call[0], call[1])] += recorded.cost(*call[2:])
    assert by_node.keys() == expected.keys()
    for key, cost in expected.items():
        assert abs(by_node[key] - cost) < MICRO, key
    private = next(r for r in recorded.runs if r.unpriced)
    assert report["unpriced"] == {
        "runs": 1, "models": [f"openai/{UNPRICED}"], "trace_ids": [private.trace_id]}  # fmt: skip


def test_paging_runs_gives_the_same_figures(recorded: Recorded) -> None:
    query = ReportQuery(recorded.uri)
    traces = cost_report(query, breakdown=("workflow", "model", "node"), aggregate_by="daily")
    runs = cost_report(query, breakdown=("workflow", "model", "node"), aggregate_by="daily",
                       source="runs")  # fmt: skip
    assert runs.source == "runs"
    for figure in ("total_cost_usd", "total_runs", "successful", "failed", "total_tokens"):
        assert getattr(runs, figure) == pytest.approx(getattr(traces, figure), abs=MICRO)
    assert runs.by_node == traces.by_node
    assert [w["workflow"] for w in runs.by_workflow] == [w["workflow"] for w in traces.by_workflow]
    assert runs.unpriced == traces.unpriced
    (day,) = traces.periods
    assert day["runs"] == 6 and day["cost_usd"] == pytest.approx(traces.total_cost_usd, abs=MICRO)
    assert sum(day["by_model"].values()) == pytest.approx(traces.total_cost_usd, abs=MICRO)


def test_filters_by_workflow_status_and_period(recorded: Recorded) -> None:
    writer = _costs(recorded, "--workflow", "writer")
    assert writer["total_runs"] == 3
    assert abs(writer["total_cost_usd"] - recorded.billed(0)["writer"]) < MICRO
    failures = _costs(recorded, "--status", "failure")
    assert (failures["total_runs"], failures["failed"], failures["successful"]) == (2, 2, 0)
    loop_cost = recorded.billed(0)["iterative_refinement"]
    assert abs(failures["total_cost_usd"] - loop_cost) < MICRO  # the failed call billed nothing
    assert _costs(recorded, "--period", "today")["total_runs"] == 6
    models_only = _costs(recorded, "--breakdown", "model")
    assert models_only["by_workflow"] == [] and len(models_only["by_model"]) == 2
    assert models_only["total_runs"] == 6
    yesterday = _costs(recorded, "--period", "yesterday")
    assert (yesterday["total_runs"], yesterday["total_cost_usd"]) == (0, 0.0)


def test_table_reads_like_the_documented_example(recorded: Recorded) -> None:
    outcome = _cli("report", "costs", "--tracking-uri", recorded.uri)
    assert outcome.exit_code == 0
    lines = outcome.stdout.splitlines()
    assert lines[0] == "Cost Summary:"
    assert lines[1] == f"  Total Cost:        ${recorded.billed()[None]:,.6f}"
    assert "  Total Runs:        6" in lines and "  Failed:            2" in lines
    assert "Cost by Workflow:" in lines and "Cost by Model:" in lines
    assert any(line.startswith("  Unpriced Runs:     1 (calls to openai/house-model-7b")
               for line in lines)  # fmt: skip


def test_json_and_csv_exports_round_trip(recorded: Recorded, tmp_path: Path) -> None:
    report = cost_report(ReportQuery(recorded.uri), breakdown=("workflow", "model", "node"),
                         aggregate_by="monthly")  # fmt: skip
    base = ["report", "costs", "--tracking-uri", recorded.uri, "--breakdown", "workflow",
            "--breakdown", "model", "--breakdown", "node", "--aggregate-by", "monthly"]  # fmt: skip
    assert _cli(*base, "--format", "json", "-o", str(tmp_path / "r.json")).exit_code == 0
    assert _cli(*base, "--format", "csv", "-o", str(tmp_path / "r.csv")).exit_code == 0
    from_json = CostReport.from_dict(json.loads((tmp_path / "r.json").read_text()))
    assert from_json == report
    assert from_csv((tmp_path / "r.csv").read_text()) == dataclasses.replace(
        report, source="", filters={}
    )
    assert report.periods and report.by_node and report.unpriced["runs"] == 1


def test_charts_are_drawn(recorded: Recorded, tmp_path: Path) -> None:
    from matplotlib import image

    png, page = tmp_path / "cost.png", tmp_path / "cost.html"
    args = ["report", "costs", "--tracking-uri", recorded.uri, "--format", "json"]
    assert _cli(*args, "--chart", str(png), "--chart-by", "model").exit_code == 0
    assert _cli(*args, "--chart", str(page)).exit_code == 0
    pixels = image.imread(png)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 500
    assert pixels.std() > 0.05  # bars, axes and text, not a blank canvas
    text = page.read_text()
    assert "<svg" in text and "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    data = json.loads(text.split('id="report-data">')[1].split("</script>")[0])
    billed = recorded.billed(0)
    for name, costs in data["series"].items():
        assert abs(sum(costs) - billed[name]) < MICRO, name
    assert data["report"]["total_runs"] == 6


def test_runs_lists_newest_first(recorded: Recorded) -> None:
    outcome = _cli("report", "runs", "--tracking-uri", recorded.uri, "--format", "json")
    assert outcome.exit_code == 0
    listed = json.loads(outcome.stdout)
    assert [r["trace_id"] for r in listed] == [r.trace_id for r in reversed(recorded.runs)]
    for row, result in zip(listed, reversed(recorded.runs), strict=True):
        assert row["status"] == result.status.value and row["workflow"] == result.workflow
        assert abs(row["cost_usd"] - float(result.cost_usd)) < MICRO
        assert row["tokens"] == result.usage.total_tokens and row["unpriced"] == result.unpriced
    table = _cli("report", "runs", "--tracking-uri", recorded.uri, "--status", "failure", "-n", "5")
    assert table.exit_code == 0 and recorded.runs[2].trace_id in table.stdout


def test_profile_flags_the_bottleneck(recorded: Recorded) -> None:
    pair = recorded.runs[3]
    outcome = _cli("report", "profile", pair.trace_id, "--tracking-uri", recorded.uri,
                   "--format", "json")  # fmt: skip
    assert outcome.exit_code == 0
    profile = json.loads(outcome.stdout)
    assert [n["node"] for n in profile["nodes"]] == ["outline", "draft"]
    outline, draft = profile["nodes"]
    assert outline["bottleneck"] and not draft["bottleneck"]
    assert outline["share"] > 0.5 and outline["model"] == "openai/gpt-4o"
    for node, record in zip(profile["nodes"], pair.records, strict=True):
        assert abs(node["cost_usd"] - float(record.cost_usd)) < MICRO
    latest = _cli("report", "profile", "latest", "--tracking-uri", recorded.uri)
    assert latest.exit_code == 0 and recorded.runs[-1].trace_id in latest.stdout
    assert "unpriced" in latest.stdout


def test_bad_input_is_one_line_and_leaves_no_file(recorded: Recorded, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    empty = tmp_path / "empty.db"
    MlflowClient(f"sqlite:///{empty}").search_experiments()  # a store with no runs
    uri = ["--tracking-uri", recorded.uri]
    cases = {
        "no MLflow store at": ["--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"],
        "no runs recorded in": ["--tracking-uri", f"sqlite:///{empty}"],
        "no experiment 'nope'": [*uri, "--experiment", "nope"],
        "no runs of workflow 'nope'": [*uri, "--workflow", "nope"],
        "is before --start-date": [*uri, "--start-date", "2026-02-01", "--end-date", "2026-01-31"],
        "'2026-02-30' is not a date": [*uri, "--start-date", "2026-02-30"],
        "does not exist": [*uri, "-o", str(tmp_path / "no" / "such" / "dir.json")],
        "must end in .png or .html": [*uri, "--chart", str(tmp_path / "chart.svg")],
    }
    for reason, args in cases.items():
        outcome = _cli("report", "costs", *args)
        assert outcome.exit_code == 2, (reason, outcome.output)
        assert outcome.stderr.count("\n") == 1 and reason in outcome.stderr, outcome.stderr
    assert not (tmp_path / "missing.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    profile = _cli("report", "profile", "tr-0000", *uri)
    assert profile.exit_code == 2 and "no run 'tr-0000'" in profile.stderr


def test_the_cost_report_notebook_runs(
    recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", recorded.uri)  # the kernel inherits it
    notebook = nbformat.read(ROOT / "examples" / "notebooks" / "cost_report.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    summary = notebook.cells[1].outputs[0]["text"]
    assert (
        summary.startswith("6 runs (2 not successful), $") and "1 with an unpriced model" in summary
    )
    exported = from_csv((tmp_path / "cost_report.csv").read_text())
    expected = cost_report(ReportQuery(recorded.uri), aggregate_by="monthly")
    assert exported == dataclasses.replace(expected, source="", filters={})
    assert (tmp_path / "cost_by_month.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tables = [cell.outputs[0]["data"]["text/plain"] for cell in notebook.cells[3:8:2]]
    month = datetime.datetime.now(datetime.UTC).strftime("%Y-%m")
    assert "writer" in tables[0] and "gpt-4o-mini" in tables[1] and month in tables[2]


def test_a_store_without_trace_metrics_is_paged(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()  # a file store: no query_trace_metrics
    stub_llm.responder = lambda request: Reply.tool_calls(
        [("final_answer", {"write_text": "d"})],
        usage={"prompt_tokens": 30_000, "completion_tokens": 3_000},
    )
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(_flow("writer", [("write", "gpt-4o-mini")], stub_llm, uri)))
    results = [run_workflow(path, {"topic": "t"}, env={}) for _ in range(2)]
    report = cost_report(ReportQuery(uri), breakdown=("workflow", "model", "node"))
    assert report.source == "runs"
    assert (report.total_runs, report.successful, report.total_tokens) == (2, 2, 66_000)
    billed = 2 * (30_000 * 0.15 + 3_000 * 0.60) / 1e6
    assert abs(report.total_cost_usd - billed) < MICRO
    cost = pytest.approx(billed, abs=MICRO)
    assert report.by_model == [{"model": "gpt-4o-mini", "provider": "openai", "cost_usd": cost}]
    assert report.by_node == [{"workflow": "writer", "node": "write", "cost_usd": cost}]
    assert float(sum(r.cost_usd for r in results)) == pytest.approx(billed, abs=MICRO)
    with pytest.raises(ReportError, match="cannot aggregate trace metrics"):
        cost_report(ReportQuery(uri), source="traces")


def test_an_mlflow_server_aggregates_the_same_figures(recorded: Recorded, tmp_path: Path) -> None:
    import shutil

    from .test_recording_recovery import _free_port, _mlflow_server

    shutil.copy(recorded.folder / "mlflow.db", tmp_path / "server.db")
    local = cost_report(ReportQuery(recorded.uri), aggregate_by="daily")
    with _mlflow_server(_free_port(), tmp_path) as uri:
        remote = cost_report(ReportQuery(uri), aggregate_by="daily")
        listed = _cli("report", "runs", "--tracking-uri", uri, "--format", "json")
    assert remote.source == "traces"  # query_trace_metrics over REST
    assert dataclasses.replace(remote, filters={}) == dataclasses.replace(local, filters={})
    assert len(json.loads(listed.stdout)) == 6


def test_the_api_and_help_import_neither_mlflow_nor_matplotlib() -> None:
    import subprocess
    import sys

    code = (
        "import sys, configurable_agents.reports\n"
        "from configurable_agents.cli import app\n"
        "try:\n    app(['report', 'costs', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'mlflow', 'matplotlib'} & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "--chart FILE" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"
