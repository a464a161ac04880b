"""One `RunStore` protocol for the job table (SQLite) and the queue's runs (Redis): the same calls
give the same views; the API and the executors never call a store on the event loop; a write
that began ends even if its caller is cancelled; the queue reads runs through the neutral
`server.store` module, not the server's internals."""

from __future__ import annotations

import ast
import asyncio
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from configurable_agents import RunStatus, prepare_workflow
from configurable_agents.server import store
from configurable_agents.server.app import create_app
from configurable_agents.server.executor import LocalExecutor
from configurable_agents.server.jobs import JobStore
from configurable_agents.server.store import QUEUED, RUNNING, UNFINISHED, AsyncRuns, RunStore

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "configurable_agents"
REDIS = "redis://127.0.0.1:6379/12"  # this module's Redis database; flushed before and after

WORKFLOW = {
    "schema_version": "1.0",
    "flow": {"name": "stored"},
    "state": {"fields": {"topic": {"type": "str", "required": True}}},
    "nodes": [{"id": "write", "prompt": "About {topic}", "outputs": ["text"]}],
    "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
}


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["sqlite", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """Each implementation of the protocol, empty."""
    if request.param == "sqlite":
        yield JobStore(tmp_path / "runs.db")
        return
    require(_redis_up(), "needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
    import redis

    from configurable_agents.queue.runs import RedisRuns

    redis.Redis.from_url(REDIS).flushdb()
    yield RedisRuns(REDIS)
    redis.Redis.from_url(REDIS).flushdb()


def _comparable(view: dict[str, Any] | None) -> dict[str, Any]:
    assert view is not None
    assert view["created_at"] is not None
    return {k: v for k, v in view.items() if k not in ("created_at", "finished_at")}


def test_both_stores_give_the_same_views(any_store: RunStore) -> None:
    """The sequence serve and worker go through, read back through the protocol only."""
    any_store.create("a", "wf", {"topic": "x"}, {"user": "u1"})
    any_store.create("b", "wf", {"topic": "y"}, {"user": "u2"})
    any_store.create("c", "other", {}, {})
    assert _comparable(any_store.get("a")) == {
        "run_id": "a", "workflow": "wf", "status": QUEUED, "inputs": {"topic": "x"},
        "tags": {"user": "u1"}, "outputs": None, "state": None, "cost_usd": None,
        "unpriced": None, "tokens": None, "duration_s": None, "trace_id": None, "error": None,
        "session_id": None, "attempt": None, "resumed_from": None, "waiting": None,
    }  # fmt: skip
    any_store.start("a")
    assert [v["run_id"] for v in any_store.list("wf", status=RUNNING)] == ["a"]
    summary = {"run_id": "a", "status": "success", "outputs": {"text": "t"}, "cost_usd": 0.5,
               "trace_id": "tr-1", "error": None}  # fmt: skip
    any_store.finish("a", summary)
    any_store.fail("b", RunStatus.CANCELLED, "run cancelled")
    ended = any_store.get("a")
    assert ended is not None and ended["finished_at"] is not None
    assert (ended["status"], ended["outputs"], ended["cost_usd"]) == ("success", {"text": "t"}, 0.5)
    cancelled = any_store.get("b")
    assert cancelled is not None
    assert (cancelled["status"], cancelled["error"]) == ("cancelled", "run cancelled")
    assert [v["run_id"] for v in any_store.list("wf")] == ["b", "a"]  # newest first
    assert [v["run_id"] for v in any_store.list("wf", tags={"user": "u1"})] == ["a"]
    assert any_store.list("wf", status=QUEUED) == [] and any_store.get("nope") is None
    assert [v["run_id"] for v in any_store.list("wf", limit=1)] == ["b"]
    assert any_store.recover() == 0  # nothing was left by a dead process


def test_statuses_and_views_are_defined_once() -> None:
    from configurable_agents.queue import runs
    from configurable_agents.server import jobs, schemas

    assert UNFINISHED == (QUEUED, RUNNING) == (jobs.QUEUED, jobs.RUNNING) == jobs.UNFINISHED
    assert runs.UNFINISHED is store.UNFINISHED and runs.run_view is store.run_view
    assert {s.value for s in schemas.RunState} == {QUEUED, RUNNING, *RunStatus}


def _server_imports(path: Path) -> set[str]:
    """``module.name`` of everything ``path`` imports from ``configurable_agents.server``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and "server" in node.module:
            found.update(f"{node.module.lstrip('.')}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if "server" in a.name.split("."))
    return found


def test_the_queue_uses_only_the_neutral_public_server_modules() -> None:
    imported = set().union(*(_server_imports(p) for p in (SRC / "queue").glob("*.py")))
    modules = {name.rsplit(".", 1)[0] for name in imported}
    assert modules <= {"server.store", "server.recording"}, imported
    assert not [name for name in imported if name.rsplit(".", 1)[1].startswith("_")]
    assert "server.store.run_view" in imported and "server.recording.per_request_runs" in imported
    for module in ("store", "recording"):  # neutral: neither imports the rest of the server
        assert _server_imports(SRC / "server" / f"{module}.py") == set(), module
        text = (SRC / "server" / f"{module}.py").read_text()
        assert "from ." not in text.replace("from ..", "") and "fastapi" not in text


class Spy(JobStore):
    """A job table noting each call, and whether it was made on a running event loop."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[tuple[str, bool]] = []

    def _note(self, name: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.calls.append((name, False))
        else:
            self.calls.append((name, True))

    def create(self, run_id: str, workflow: str, inputs: Mapping[str, Any],
               tags: Mapping[str, str]) -> None:  # fmt: skip
        self._note("create")
        super().create(run_id, workflow, inputs, tags)

    def start(self, run_id: str) -> None:
        self._note("start")
        super().start(run_id)

    def finish(self, run_id: str, summary: Mapping[str, Any]) -> None:
        self._note("finish")
        super().finish(run_id, summary)

    def get(self, run_id: str) -> dict[str, Any] | None:
        self._note("get")
        return super().get(run_id)

    def list(self, workflow: str, **filters: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        self._note("list")
        return super().list(workflow, **filters)

    def recover(self) -> int:
        self._note("recover")
        return super().recover()


def _workflow(tmp: Path) -> Path:
    path = tmp / "stored.yaml"
    path.write_text(yaml.safe_dump(WORKFLOW))
    return path


def test_no_store_call_runs_on_the_event_loop(tmp_path: Path) -> None:
    spy = Spy(tmp_path / "runs.db")
    prepared = prepare_workflow(_workflow(tmp_path), llm="mock", trace=False)
    with TestClient(create_app(prepared, jobs=spy, max_runs=1)) as client:
        run = client.post("/runs", json={"inputs": {"topic": "x"}}).json()
        assert run["status"] == "success"
        assert client.get(f"/runs/{run['run_id']}", params={"wait_seconds": 1}).status_code == 200
        assert client.get("/runs", params={"status": "success"}).json()["runs"]
        assert client.delete(f"/runs/{run['run_id']}").status_code == 409
        assert client.get("/ready").status_code == 200
        assert client.delete("/runs/none").status_code == 404
    called = {name for name, _ in spy.calls}
    assert called == {"recover", "create", "start", "finish", "get", "list"}
    assert [call for call in spy.calls if call[1]] == []  # none on the loop


class SlowCreate(JobStore):
    """A job table whose ``create`` waits for ``release`` (a slow disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered, self.release = threading.Event(), threading.Event()

    def create(self, run_id: str, workflow: str, inputs: Mapping[str, Any],
               tags: Mapping[str, str]) -> None:  # fmt: skip
        self.entered.set()
        assert self.release.wait(30)
        super().create(run_id, workflow, inputs, tags)


def test_a_write_that_began_ends_before_its_caller_sees_the_cancellation(tmp_path: Path) -> None:
    slow = SlowCreate(tmp_path / "runs.db")

    async def scenario() -> None:
        task = asyncio.create_task(AsyncRuns(slow).create("r", "wf", {}, {}))
        await asyncio.to_thread(slow.entered.wait, 30)
        task.cancel()
        await asyncio.sleep(0.1)
        assert not task.done()  # still writing: the cancellation waits for the write
        slow.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slow.get("r") is not None  # written before the task ended

    asyncio.run(scenario())


def test_a_submit_cancelled_while_its_row_is_written_still_runs_the_run(tmp_path: Path) -> None:
    """The row exists once its write began, so the run must go on and end it."""
    from configurable_agents.observability.prometheus import Metrics

    slow = SlowCreate(tmp_path / "runs.db")
    prepared = prepare_workflow(_workflow(tmp_path), llm="mock", trace=False)

    async def scenario() -> str | None:
        executor = LocalExecutor(prepared, slow, Metrics.for_workflow(prepared))
        submit = asyncio.create_task(executor.submit({"topic": "x"}, {}))
        await asyncio.to_thread(slow.entered.wait, 30)
        submit.cancel()
        slow.release.set()
        with pytest.raises(asyncio.CancelledError):
            await submit
        (row,) = slow.list("stored")
        run_id = row["run_id"]
        assert await executor.wait(run_id, 30)
        view = slow.get(run_id)
        return None if view is None else view["status"]

    assert asyncio.run(scenario()) == "success"
