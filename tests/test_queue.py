"""Scale-out for real: Redis (Celery broker, run status), PostgreSQL behind an MLflow server, two
`worker` processes, `batch --queue` and two `serve --queue` replicas, a worker killed mid-batch."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from configurable_agents.cli import app
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.writer import drain

from .conftest import require
from .stub_llm import Reply, StubLLM, default_responder

REDIS_DB = 13  # this module's Redis database; flushed before and after
QUEUE = f"redis://127.0.0.1:6379/{REDIS_DB}"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def _services() -> None:
    require(
        _reachable(6379) and _reachable(5432),
        "needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (.ci/run starts them)",
    )


class _Process:
    """A `configurable-agents` subprocess, its stderr collected; ready once it logs ``ready``."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str, cwd: Path) -> None:
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "configurable_agents", *args],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._logged = threading.Condition()

        def collect() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                with self._logged:
                    self.log.append(line)
                    self._logged.notify_all()

        threading.Thread(target=collect, daemon=True).start()
        with self._logged:
            started = self._logged.wait_for(
                lambda: any(ready in line for line in self.log) or self.process.poll() is not None,
                60,
            )
        assert started and self.process.poll() is None, "".join(self.log)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(60)


def _env(spool: Path) -> dict[str, str]:
    """This environment with recording as the workflow says and its own spool."""
    env = {k: v for k, v in os.environ.items() if k != "CONFIGURABLE_AGENTS_TRACING"}
    env.update(CONFIGURABLE_AGENTS_SPOOL=str(spool), CONFIGURABLE_AGENTS_FLUSH_TIMEOUT="0")
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_db() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(QUEUE)
    client.flushdb()
    yield QUEUE
    client.flushdb()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow server on a fresh PostgreSQL database, dropped afterwards."""
    import psycopg2

    database = f"ca_queue_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    tmp = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"{POSTGRES.replace('postgresql', 'postgresql+psycopg2')}/{database}",
         "--artifacts-destination", str(tmp / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the MLflow server did not start"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(30)
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with StubLLM() as server:
        yield server


def _topic(request: dict[str, Any]) -> str:
    return re.search(r"about (\S+)", request["messages"][-1]["content"]).group(1)


def _slow_replies(request: dict[str, Any]) -> Reply:
    """Every call takes 50 ms, so a worker always has runs in flight."""
    return dataclasses.replace(default_responder(request), delay=0.05)


class _Hold:
    """Holds the first model call of each of ``topics`` until ``release`` is set."""

    def __init__(self, topics: set[str]) -> None:
        self.topics = topics
        self.waiting = 0
        self.changed = threading.Condition()
        self.release = threading.Event()

    def __call__(self, request: dict[str, Any]) -> Reply:
        if _topic(request) in self.topics and not self.release.is_set():
            with self.changed:
                self.waiting += 1
                self.changed.notify_all()
            self.release.wait(60)
        return _slow_replies(request)


def _workflow(path: Path, stub: StubLLM, name: str, tracking_uri: str) -> Path:
    ids = ["outline", "draft", "polish"]
    data: dict[str, Any] = {
        "schema_version": "1.0",
        "flow": {"name": name, "version": "1.0.0"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "execution": {"max_retries": 0},
            "observability": {"mlflow": {"enabled": True, "tracking_uri": tracking_uri}},
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": i, "prompt": f"{i} about {{topic}}", "outputs": [f"{i}_out"]} for i in ids
        ],
        "edges": [
            {"from": a, "to": b} for a, b in zip(["START", *ids], [*ids, "END"], strict=True)
        ],
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_db: str, mlflow_server: str, stub: StubLLM
) -> Iterator[dict[str, Any]]:
    """Two workers of one traced workflow, each with its own spool; redelivery after 3 s."""
    stub.responder = _slow_replies
    tmp = tmp_path_factory.mktemp("fleet")
    workflow = _workflow(tmp / "wf.yaml", stub, "queued", mlflow_server)
    args = ["worker", str(workflow), "--queue", redis_db, "-c", "4", "--visibility-timeout", "3"]
    spools = [tmp / f"worker{i}.db" for i in range(2)]
    workers = [_Process(args, _env(spool), "worker for queued@1.0.0", tmp) for spool in spools]
    yield {"tmp": tmp, "workflow": workflow, "workers": workers, "spools": spools}
    for worker in workers:
        worker.stop()
    assert not any("Traceback" in "".join(w.log) for w in workers)


def _drain(spools: list[Path]) -> None:
    """Write what the spools hold to their stores (what `observability flush` does)."""
    opened = [Spool(path) for path in spools]
    deadline = time.monotonic() + 60
    while any(spool.pending() for spool in opened):  # a worker's own writer may go on
        assert time.monotonic() < deadline, [spool.pending() for spool in opened]
        for spool in opened:
            drain(spool)
        time.sleep(0.1)


def test_serve_replicas_share_queued_runs(fleet: dict[str, Any], mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient

    started_ms = int(time.time() * 1000)
    tmp, workflow = fleet["tmp"], fleet["workflow"]
    args = ["serve", str(workflow), "--port", "0", "--queue", QUEUE]
    api = [_Process(args, _env(tmp / f"api{i}.db"), "Application startup complete", tmp)
           for i in range(2)]  # fmt: skip
    try:
        urls = [re.search(r"on (http://\S+)", "".join(p.log)).group(1) for p in api]
        body = {"inputs": {"topic": "shared"}, "wait_seconds": 30, "tags": {"who": "replica0"}}
        first = httpx.post(f"{urls[0]}/runs", json=body, timeout=60)
        assert first.status_code == 200, first.text
        run = first.json()
        assert run["status"] == "success" and run["outputs"]["polish_out"] == "stub"
        assert run["trace_id"].startswith("tr-")
        seen = httpx.get(f"{urls[1]}/runs/{run['run_id']}", timeout=10)
        assert seen.status_code == 200 and seen.json() == run
        listed = httpx.get(f"{urls[1]}/runs", params={"tag": "who=replica0"}, timeout=10).json()
        assert [r["run_id"] for r in listed["runs"]] == [run["run_id"]]
        queued = httpx.post(f"{urls[1]}/runs", json={"inputs": {"topic": "later"},
                            "wait_seconds": 0}, timeout=10)  # fmt: skip
        assert queued.status_code in (200, 202), queued.text
        done = httpx.get(f"{urls[0]}{'/runs/' + queued.json()['run_id']}",
                         params={"wait_seconds": 30}, timeout=60).json()  # fmt: skip
        assert done["status"] == "success", done
        bad = httpx.post(f"{urls[0]}/runs", json={"inputs": {}}, timeout=10)
        assert bad.status_code == 422
    finally:
        for process in api:
            assert process.stop() == 0, "".join(process.log)
    assert not any("Traceback" in "".join(p.log) for p in api)
    _drain(fleet["spools"])  # served runs are traces, not MLflow runs (no request_runs)
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    client.get_trace(run["trace_id"])  # recorded
    assert client.search_runs([experiment], f"attributes.start_time >= {started_ms}") == []


def test_a_worker_records_traces_only_unless_the_workflow_asks(
    tmp_path: Path, stub: StubLLM, redis_db: str
) -> None:
    """`worker` gives each run an MLflow run only with `observability.mlflow.request_runs`."""
    from configurable_agents import prepare_workflow
    from configurable_agents.observability.recorder import Recorder
    from configurable_agents.queue.runs import RedisRuns
    from configurable_agents.queue.worker import Worker

    paths = []
    for name, asked in (("default", None), ("asked", True), ("refused", False)):
        path = _workflow(tmp_path / f"{name}.yaml", stub, name, f"sqlite:///{tmp_path / 'm.db'}")
        data = yaml.safe_load(path.read_text())
        mlflow = data["config"]["observability"]["mlflow"]
        mlflow.update(async_logging=False, **({} if asked is None else {"request_runs": asked}))
        path.write_text(yaml.safe_dump(data))
        paths.append(path)
    prepared = [prepare_workflow(path, trace=True) for path in paths]
    recorders = [p.observer(Recorder) for p in prepared]
    assert all(r is not None and r.run_records for r in recorders)  # as `run` records
    Worker(prepared, RedisRuns(redis_db))
    assert [r.run_records for r in recorders if r is not None] == [False, True, False]


def _unfinished() -> list[Any]:
    """Runs in Redis that did not end, and the broker's keys (to explain a hang)."""
    import redis

    client = redis.Redis.from_url(QUEUE, decode_responses=True)
    ended = {k.rsplit(":", 1)[1] for k in client.keys("configurable-agents:summary:*")}
    runs = [k.rsplit(":", 1)[1] for k in client.keys("configurable-agents:run:*")]
    open_runs = [client.get(f"configurable-agents:run:{r}") for r in runs if r not in ended]
    return [*open_runs, client.keys("configurable-agents:[!rs]*")]


def test_batch_through_the_queue_survives_a_killed_worker(
    fleet: dict[str, Any], stub: StubLLM, mlflow_server: str
) -> None:
    from mlflow.tracking import MlflowClient

    tmp, workflow = fleet["tmp"], fleet["workflow"]
    topics = [f"q{i:03d}" for i in range(100)]
    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps({"topic": t}) + "\n" for t in topics))
    out = tmp / "results.jsonl"
    stub.reset()
    held = _Hold(set(topics[30:42]))
    stub.responder = held
    batch = subprocess.Popen(
        [sys.executable, "-m", "configurable_agents", "batch", str(workflow), "--inputs",
         str(data), "-o", str(out), "-c", "16", "--queue", QUEUE],
        cwd=tmp, env=_env(tmp / "batch.db"), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = fleet["workers"][0].process
    with held.changed:  # mid-batch: each of the 8 threads (4 per worker) is in a held run
        assert held.changed.wait_for(lambda: held.waiting >= 8, 60), held.waiting
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    held.release.set()
    try:
        _, stderr = batch.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        batch.kill()
        _, stderr = batch.communicate()
        pytest.fail(f"batch hung: {stderr}\n{_unfinished()}\n{''.join(fleet['workers'][1].log)}")
    assert batch.returncode == 0, stderr

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [str(i) for i in range(1, 101)]  # once each
    assert {line["status"] for line in lines} == {"success"}
    assert all(line["outputs"]["polish_out"] == "stub" for line in lines)
    calls = Counter(_topic(request) for request in stub.requests)
    assert set(calls) == set(topics)
    again = [t for t, n in calls.items() if n > 3]  # the killed worker's 4 runs ran again
    assert len(again) >= 4 and set(again) <= held.topics, calls
    trace_ids = {line["trace_id"] for line in lines}
    assert len(trace_ids) == 100 and None not in trace_ids

    _drain([*fleet["spools"], tmp / "batch.db"])  # the killed worker's writer may go on
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    traces = client.search_traces(locations=[experiment], max_results=500, include_spans=False)
    stored = {t.info.trace_id for t in traces}
    assert trace_ids <= stored  # every row's trace is in the PostgreSQL-backed store
    rows = Counter(t.info.tags.get("batch.row_id") for t in traces if "batch.id" in t.info.tags)
    assert set(rows) == {str(i) for i in range(1, 101)}


def test_a_worker_refuses_a_workflow_it_does_not_have(
    fleet: dict[str, Any], stub: StubLLM, mlflow_server: str
) -> None:
    tmp = fleet["tmp"]
    other = _workflow(tmp / "other.yaml", stub, "unknown_here", mlflow_server)
    data = tmp / "two.jsonl"
    data.write_text('{"topic": "a"}\n{"topic": "b"}\n')
    out = tmp / "refused.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "batch", str(other), "--inputs", str(data),
         "-o", str(out), "--queue", QUEUE],
        cwd=tmp, env=_env(tmp / "refused.db"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["failed", "failed"]
    assert all("has no workflow unknown_here@1.0.0#" in line["error"] for line in lines)


def test_bad_queue_urls_are_located_errors(tmp_path: Path, stub: StubLLM) -> None:
    workflow = _workflow(tmp_path / "wf.yaml", stub, "queued", "sqlite:///unused.db")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"topic": "a"}\n')
    closed = f"redis://:secret@127.0.0.1:{_free_port()}/0"
    for args, message in [
        (["worker", str(workflow), "--queue", "http://x"], "expected a Redis URL"),
        (["worker", str(workflow), "--queue", closed], "Redis does not answer"),
        (
            [
                "batch",
                str(workflow),
                "--inputs",
                str(rows),
                "-o",
                str(tmp_path / "results.jsonl"),
                "--queue",
                closed,
            ],
            "does not answer",
        ),
        (["serve", str(workflow), "--queue", closed], "Redis does not answer"),
    ]:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert "secret" not in result.output
    assert not (tmp_path / "results.jsonl").exists()


def test_a_run_ends_once_and_a_redelivered_task_is_skipped(redis_db: str) -> None:
    from configurable_agents.queue.runs import RedisRuns
    from configurable_agents.queue.worker import Worker

    runs = RedisRuns(redis_db)
    runs.create("r1", "once", {"topic": "a"}, {"k": "v"})
    assert runs.get("r1")["status"] == "queued"
    runs.start("r1")
    assert runs.get("r1")["status"] == "running"
    assert runs.finish("r1", {"run_id": "r1", "status": "success", "outputs": {"x": 1}})
    assert not runs.finish("r1", {"run_id": "r1", "status": "failed", "error": "second end"})
    worker = Worker([], runs)
    worker.execute("once@1#abc", "r1", {"topic": "a"}, {})  # redelivered after it ended
    view = runs.get("r1")
    assert (view["status"], view["outputs"], view["error"]) == ("success", {"x": 1}, None)
    assert view["finished_at"] is not None and view["tags"] == {"k": "v"}
    assert [v["run_id"] for v in runs.list("once", tags={"k": "v"})] == ["r1"]
    assert runs.list("once", status="failed") == [] and runs.list("once", tags={"k": "w"}) == []
    runs.create("r2", "once", {}, {})
    worker.execute("once@1#abc", "r2", {}, {})
    assert runs.get("r2")["status"] == "failed"
    assert "has no workflow once@1#abc" in runs.get("r2")["error"]


def test_a_worker_scores_its_runs_online_and_attaches_the_scores(
    tmp_path: Path, stub: StubLLM, redis_db: str
) -> None:
    """`evaluation.online` in a worker: each run it executes is scored off the task's thread."""
    from mlflow.tracking import MlflowClient

    from configurable_agents import prepare_workflow
    from configurable_agents.observability.recorder import flush_all
    from configurable_agents.queue.app import workflow_key
    from configurable_agents.queue.runs import RedisRuns
    from configurable_agents.queue.worker import Worker

    stub.responder = default_responder
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    path = _workflow(tmp_path / "online.yaml", stub, "online", uri)
    data = yaml.safe_load(path.read_text())
    data["evaluation"] = {
        "scorers": [{"name": "cheap", "type": "max_cost", "usd": 1.0}],
        "online": {"sample": 1.0},
    }
    path.write_text(yaml.safe_dump(data))
    prepared = prepare_workflow(path, trace=True)
    runs = RedisRuns(redis_db)
    worker = Worker([prepared], runs)
    (evaluator,) = worker.online
    runs.create("online-1", "online", {"topic": "tides"}, {})
    worker.execute(workflow_key(prepared), "online-1", {"topic": "tides"}, {})
    assert runs.get("online-1")["status"] == "success"
    assert evaluator.wait(30) and flush_all(60)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("configurable_agents")
    (trace,) = client.search_traces(locations=[experiment.experiment_id])
    (feedback,) = trace.info.assessments
    assert (feedback.name, feedback.value, feedback.source.source_type) == ("cheap", True, "CODE")
