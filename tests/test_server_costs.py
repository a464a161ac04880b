"""`GET /costs`: the report of `report costs` as JSON, read from the MLflow store the served
workflow records to, here a real SQLite store holding runs recorded through the stub LLM.

Each answer is compared with what `cost_report` makes of the same query; bad queries get 422
with the report's message, an empty or missing store 404, an unreadable one 503; MLflow is
imported only once `/costs` is called, and the report never runs on the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from configurable_agents import RunStatus, prepare_workflow, run_workflow
from configurable_agents.reports import CostReport, ReportQuery, cost_report, date_range
from configurable_agents.server.app import create_app
from configurable_agents.server.cost_schemas import CostReport as CostReportModel
from configurable_agents.server.jobs import JobStore

from .stub_llm import Reply, StubLLM

TOKEN = "costs-t0ken"
PLAN = [("u-1", False), ("u-2", False), ("u-1", True)]  # user_id tag, fails


def _workflow(path: Path, uri: str, api_base: str) -> Path:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "priced"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": api_base},
            "execution": {"max_retries": 0},
            "observability": {
                "mlflow": {"enabled": True, "tracking_uri": uri, "async_logging": False}
            },
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [{"id": "write", "prompt": "{topic}", "outputs": ["text"]}],
        "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A SQLite MLflow store with three runs of `priced` (one failed); the workflow's file."""
    folder = tmp_path_factory.mktemp("costs")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env, StubLLM() as stub:
        env.setenv("CONFIGURABLE_AGENTS_SPOOL", str(folder / "spool.db"))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        path = _workflow(folder / "priced.yaml", uri, stub.base_url)
        for index, (user, fails) in enumerate(PLAN):
            usage = {"prompt_tokens": 1_000 * (index + 1), "completion_tokens": 100}
            answer = Reply.tool_calls([("final_answer", {"text": "t"})], usage=usage)
            stub.script(Reply.error(400) if fails else answer)
            result = run_workflow(path, {"topic": "t"}, tags={"user_id": user}, trace=True)
            assert result.status is (RunStatus.FAILED if fails else RunStatus.SUCCESS)
    yield path, uri


def _app(workflow: Path, token: str | None = None) -> TestClient:
    prepared = prepare_workflow(workflow, trace=False)
    app = create_app(prepared, jobs=JobStore(workflow.parent / "runs.db"), token=token)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(store: tuple[Path, str]) -> Iterator[TestClient]:
    """The API of the recorded workflow, untraced (it reads the store its file names)."""
    with _app(store[0]) as served:
        yield served


def _expected(uri: str, **options: Any) -> dict[str, Any]:
    """What `cost_report` says, as JSON."""
    query = {
        k: options.pop(k) for k in ("workflow", "start_ms", "end_ms", "status") if k in options
    }
    report = cost_report(ReportQuery(uri, **query), **options).to_dict()
    return json.loads(json.dumps(report))


def test_costs_is_the_cost_report_as_json(client: TestClient, store: tuple[Path, str]) -> None:
    response = client.get("/costs")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report == _expected(store[1])
    assert (report["total_runs"], report["successful"], report["failed"]) == (3, 2, 1)
    assert [w["workflow"] for w in report["by_workflow"]] == ["priced"]  # the defaults
    assert [m["model"] for m in report["by_model"]] == ["gpt-4o-mini"]
    assert report["total_cost_usd"] == pytest.approx((1_000 + 2_000) * 0.15e-6 + 200 * 0.6e-6)
    CostReportModel.model_validate(report)  # the declared model: every field, nothing else
    assert set(CostReportModel.model_fields) == set(CostReport().to_dict())


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tag": ({"breakdown": "tag:user_id"}, {"breakdown": ("tag:user_id",)}),
    "defaults-and-node": (
        {"breakdown": ["", "node"]},
        {"breakdown": ("workflow", "model", "node")},
    ),
    "period-status-daily": (
        {"period": "last_7_days", "status": "failure", "aggregate_by": "daily"},
        {"status": "failure", "aggregate_by": "daily"},
    ),
    "workflow-and-dates": (
        {"workflow": "priced", "start_date": "TODAY", "end_date": "TODAY"},
        {"workflow": "priced"},
    ),
}


@pytest.mark.parametrize("params,options", CASES.values(), ids=CASES.keys())
def test_query_parameters_are_the_report_options(
    client: TestClient, store: tuple[Path, str], params: dict[str, Any], options: dict[str, Any]
) -> None:
    params = {k: _today() if v == "TODAY" else v for k, v in params.items()}
    if "period" in params or "start_date" in params:
        start, end = date_range(
            params.get("period"), params.get("start_date"), params.get("end_date")
        )
        options = {**options, "start_ms": start, "end_ms": end}
    response = client.get("/costs", params=params)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report == _expected(store[1], **options)
    CostReportModel.model_validate(report)
    if "tag:user_id" in str(params):
        users = {row["value"]: row["runs"] for row in report["by_tag"]["user_id"]}
        assert users == {"u-1": 2, "u-2": 1} and report["by_workflow"] == []
    if "node" in str(params):
        assert [n["node"] for n in report["by_node"]] == ["write"] and report["by_model"]
    if params.get("status") == "failure":
        assert (report["total_runs"], report["failed"]) == (1, 1)
        assert [p["period"] for p in report["periods"]] == [_today()]


BAD = {
    "end-before-start": ({"start_date": "2026-01-02", "end_date": "2026-01-01"}, "end_date"),
    "unknown-period": ({"period": "last_year"}, "period"),
    "not-a-date": ({"start_date": "2026-02-30"}, "start_date"),
    "unknown-breakdown": ({"breakdown": "owner"}, "breakdown"),
    "tag-without-key": ({"breakdown": "tag: "}, "breakdown"),
    "unknown-aggregate": ({"aggregate_by": "hourly"}, "aggregate_by"),
    "unknown-status": ({"status": "ok"}, "status"),
    "quote-in-workflow": ({"workflow": "a'b"}, "workflow"),
}


@pytest.mark.parametrize("params,where", BAD.values(), ids=BAD.keys())
def test_bad_values_get_422_naming_the_parameter(
    client: TestClient, params: dict[str, Any], where: str
) -> None:
    response = client.get("/costs", params=params)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][:2] == ["query", where]
    if where == "end_date":  # the report's own message, its options named as parameters
        assert error["msg"] == "end_date 2026-01-01 is before start_date 2026-01-02"


def test_nothing_to_report_is_404(client: TestClient, tmp_path: Path) -> None:
    response = client.get("/costs", params={"workflow": "nope"})
    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith("no runs of workflow 'nope' in sqlite:///")
    missing = _workflow(tmp_path / "wf.yaml", f"sqlite:///{tmp_path / 'none.db'}", "http://x")
    with _app(missing) as other:
        response = other.get("/costs")
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert detail == f"no MLflow store at {tmp_path / 'none.db'} (is tracking_uri right?)"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_that_cannot_be_read_is_503_without_its_password(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 200)
    server = f"http://reader:s3cretpw@127.0.0.1:{_closed_port()}"
    for uri, reason in [(f"sqlite:///{garbage}", "file is not a database"), (server, "")]:
        workflow = _workflow(tmp_path / "wf.yaml", uri, "http://x")
        with _app(workflow) as other:
            response = other.get("/costs")
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert detail.startswith("cannot read ") and reason in detail
        assert "s3cretpw" not in response.text
    assert "reader:***@127.0.0.1" in detail


def test_costs_needs_the_token(store: tuple[Path, str]) -> None:
    with _app(store[0], token=TOKEN) as guarded:
        assert guarded.get("/costs").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert guarded.get("/costs", headers=good).status_code == 200


def test_the_report_runs_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a report takes its time, the API answers: it runs in a thread of its own."""
    from configurable_agents.reports import costs

    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow_report(*_: Any, **__: Any) -> CostReport:
        seen.append(threading.current_thread().name)
        started.set()
        assert release.wait(30)
        return CostReport(total_runs=7)

    monkeypatch.setattr(costs, "cost_report", slow_report)
    answers: list[Any] = []
    waiting = threading.Thread(target=lambda: answers.append(client.get("/costs")))
    waiting.start()
    try:
        assert started.wait(30)
        assert client.get("/runs").status_code == 200  # answered while the report is held
        assert not answers
    finally:
        release.set()
        waiting.join(30)
    assert answers[0].status_code == 200 and answers[0].json()["total_runs"] == 7
    assert seen[0].startswith("costs-report")


LAZY = """
import sys
from pathlib import Path
from starlette.testclient import TestClient
from configurable_agents import prepare_workflow
from configurable_agents.server.app import create_app
from configurable_agents.server.jobs import JobStore

workflow = Path(sys.argv[1])
app = create_app(prepare_workflow(workflow, trace=False), jobs=JobStore(sys.argv[2]))
with TestClient(app) as client:
    for path in ("/health", "/ready", "/runs", "/schema", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    before = "mlflow" in sys.modules
    assert client.get("/costs").status_code == 503  # the store is not a database
print(before, "mlflow" in sys.modules)
"""


def test_mlflow_is_imported_only_when_costs_is_called(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 200)  # read by MLflow, unlike a missing file
    workflow = _workflow(tmp_path / "wf.yaml", f"sqlite:///{garbage}", "http://x")
    result = subprocess.run(
        [sys.executable, "-c", LAZY, str(workflow), str(tmp_path / "runs.db")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "True"]
