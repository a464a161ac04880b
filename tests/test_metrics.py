"""Prometheus: `/metrics` after real runs, `run`'s metrics port, the alert rules and the dashboard.

Scrapes are parsed with ``prometheus_client``'s own parser; the rules are checked and unit-tested
by ``promtool`` (Debian package ``prometheus``; `.ci/run` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import require
from .stub_llm import Reply, StubLLM
from .test_server import Gate, Server, answer, server_env, write_workflow

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "configurable-agents.json"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped[(name, frozenset(labels.items()))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Scenario:
    """Runs made against one server, and what it showed at `/metrics` during and after them."""

    views: list[dict[str, Any]]
    during: dict[tuple[str, frozenset[tuple[str, str]]], float]
    after: dict[tuple[str, frozenset[tuple[str, str]]], float]
    text: str


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Two successful runs and a failed one; the first `/metrics` scrape is taken while the last
    run is held in flight."""
    tmp = tmp_path_factory.mktemp("metrics")
    with StubLLM() as stub:
        workflow = write_workflow(tmp / "wf.yaml", stub)
        server = Server(workflow, tmp / "runs.db", server_env(tmp))
        found = Scenario()
        try:
            stub.script(answer(), Reply.error(400))
            ids = [
                server.client.post("/runs", json={"inputs": {"topic": t}}).json()["run_id"]
                for t in ("a", "b")
            ]
            held, gate = server.hold_run(stub, "c", answer())
            try:
                found.during = samples(server.client.get("/metrics").text)
            finally:
                gate.release()
            server.client.get(f"/runs/{held}", params={"wait_seconds": 30})
            found.views = [server.client.get(f"/runs/{i}").json() for i in (*ids, held)]
            found.text = server.client.get("/metrics").text
            found.after = samples(found.text)
        finally:
            assert server.stop() == 0
        yield found


def test_metrics_match_the_runs_made(scenario: Scenario) -> None:
    assert [v["status"] for v in scenario.views] == ["success", "failed", "success"]
    after, during = scenario.after, scenario.during
    runs = {s: value(after, "workflow_runs_total", workflow="simple", status=s)
            for s in ("success", "failed", "budget_exceeded", "timeout", "cancelled")}  # fmt: skip
    assert runs == {"success": 2, "failed": 1, "budget_exceeded": 0, "timeout": 0, "cancelled": 0}
    assert value(after, "llm_tokens_total", model="gpt-4o-mini", type="input") == 2_000
    assert value(after, "llm_tokens_total", model="gpt-4o-mini", type="output") == 200
    assert value(after, "llm_cost_usd_total", model="gpt-4o-mini") == pytest.approx(0.00042)
    assert value(after, "workflow_duration_seconds_count", workflow="simple") == 3
    assert value(after, "workflow_duration_seconds_sum", workflow="simple") == pytest.approx(
        sum(v["duration_s"] for v in scenario.views), abs=1e-5
    )
    node = {"workflow": "simple", "node": "write"}
    assert value(after, "node_duration_seconds_count", **node) == 3
    assert value(after, "node_duration_seconds_bucket", le="+Inf", **node) == 3
    assert value(during, "active_workflows") == 1
    assert value(after, "active_workflows") == 0
    assert value(during, "workflow_runs_total", workflow="simple", status="success") == 1
    assert value(after, "traces_spooled") == 0  # not recording
    assert value(after, "traces_dropped_total") == 0


def test_spool_backlog_and_lost_traces_are_counted(tmp_path: Path) -> None:
    from configurable_agents.engine import RunResult, RunStatus
    from configurable_agents.observability.prometheus import Metrics
    from configurable_agents.observability.spool import Spool

    spool = Spool(tmp_path / "spool.db")
    ids = [spool.put("sqlite:///m.db", "exp", {"run": n}) for n in range(2)]
    metrics = Metrics("wf", backlog=spool.pending)
    result = RunResult("r1", "wf", RunStatus.SUCCESS, {}, {}, [], trace_id="tr-1")
    metrics.run_finished(result)
    metrics.run_finished(RunResult("r2", "wf", RunStatus.FAILED, {}, {}, []))  # recording failed
    scraped = samples(metrics.render()[0].decode())
    assert value(scraped, "traces_spooled") == 2
    assert value(scraped, "traces_dropped_total") == 1
    assert value(scraped, "workflow_runs_total", workflow="wf", status="failed") == 1
    spool.done(ids)
    assert value(samples(metrics.render()[0].decode()), "traces_spooled") == 0
    untraced = Metrics("wf")  # not recording: a run without a trace lost nothing
    untraced.run_finished(RunResult("r3", "wf", RunStatus.SUCCESS, {}, {}, []))
    assert value(samples(untraced.render()[0].decode()), "traces_dropped_total") == 0


def test_run_serves_metrics_on_the_configured_port(tmp_path: Path, stub_llm: StubLLM) -> None:
    port = free_port()
    prometheus = {"enabled": True, "port": port, "path": "/prom"}
    workflow = write_workflow(tmp_path / "wf.yaml", stub_llm, prometheus=prometheus)
    gate = Gate(answer())
    stub_llm.responder = gate
    process = subprocess.Popen(
        [sys.executable, "-m", "configurable_agents", "run", str(workflow), "-i", "topic=x"],
        env=server_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert gate.arrived.wait(60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            scraped = samples(client.get("/prom").text)
            assert client.get("/metrics").status_code == 404
    finally:
        gate.release()
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert value(scraped, "active_workflows") == 1
    assert value(scraped, "workflow_runs_total", workflow="simple", status="success") == 0
    assert f"metrics on http://0.0.0.0:{port}/prom" in stderr
    assert json.loads(stdout) == {"article": "An article"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require(
        shutil.which("promtool") is not None,
        "promtool is not installed (Debian package `prometheus`; .ci/run installs it)",
    )
    return subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True)


def test_alert_rules_pass_promtool() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


_FUNCTION = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (functions, labels and keywords left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    expr = _FUNCTION.sub("", expr)
    return set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))


def test_metric_names_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{workflow=~"$w"}[5m]))) / b_total'
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_rules_and_dashboard_read_only_metrics_we_export(scenario: Scenario) -> None:
    exported = {name for name, _ in scenario.after}
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"][0]["rules"]
    rule_names = set().union(*(metric_names(rule["expr"]) for rule in rules))
    assert rule_names == {"workflow_duration_seconds_bucket", "workflow_runs_total",
                          "llm_cost_usd_total"}  # fmt: skip
    assert rule_names <= exported

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["definition"].split("(", 1)[1].split(",")[0])
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used <= exported, used - exported
    assert len(used) >= 7
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in ("throughput", "p50", "p95", "p99", "error rate", "tokens per hour",
                   "cost per day", "model mix"):  # fmt: skip
        assert wanted in titles
