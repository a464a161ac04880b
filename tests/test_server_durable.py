"""Durable runs over HTTP: live events as Server-Sent Events (`"stream": true`,
`GET /runs/{id}/events`, reconnection with `Last-Event-ID`), runs that wait for a person
(`GET /runs?status=waiting`, `POST /runs/{id}/resume` and its 404/409/422), sessions, and the
caller's W3C `traceparent` — in process, against a real `serve`, and through the queue (Redis
streams between a worker and the API)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from configurable_agents import prepare_workflow
from configurable_agents.engine import NullObserver, RunStart
from configurable_agents.server.app import create_app
from configurable_agents.server.events import LocalEvents, follow
from configurable_agents.server.jobs import JobStore
from configurable_agents.server.store import RunStore
from configurable_agents.server.traceparent import parse_traceparent

from .conftest import require
from .stub_llm import StubLLM, default_responder
from .test_server import Gate, Server, server_env

REDIS_DB = 11  # this module's Redis database; flushed before and after
QUEUE = f"redis://127.0.0.1:6379/{REDIS_DB}"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"

Event = tuple[int, str, dict[str, Any]]
"""An SSE message: its id, its event type, its data."""


def review_workflow(tmp: Path, llm: dict[str, Any] | None = None) -> Path:
    """write (a model) -> review (a person: verdict and score) -> finish (a model) -> END."""
    data: dict[str, Any] = {
        "schema_version": "1.0",
        "flow": {"name": "review"},
        "state": {
            "fields": {
                "topic": {"type": "str", "required": True},
                "draft": {"type": "str"},
                "verdict": {"type": "str"},
                "score": {"type": "int"},
                "final": {"type": "str"},
            }
        },
        "nodes": [
            {"id": "write", "prompt": "Write about {topic}", "outputs": ["draft"]},
            {
                "id": "review",
                "type": "human",
                "name": "Editor review",
                "prompt": "Review: {draft}",
                "outputs": ["verdict", "score"],
            },
            {"id": "finish", "prompt": "Finish {draft}: {verdict}", "outputs": ["final"]},
        ],
        "edges": [
            {"from": "START", "to": "write"},
            {"from": "write", "to": "review"},
            {"from": "review", "to": "finish"},
            {"from": "finish", "to": "END"},
        ],
        "config": {
            "execution": {
                "max_retries": 0,
                "checkpoints": {"store": f"sqlite:///{tmp / 'cp.db'}"},
            },
        },
    }
    if llm is not None:
        data["config"]["llm"] = llm
    path = tmp / "review.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stub_llm_config(stub: StubLLM) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url, "timeout": 30}


def parse_sse(lines: Iterator[str], limit: int | None = None) -> list[Event]:
    """The messages of an event stream (comments skipped), up to ``limit`` of them."""
    events: list[Event] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if fields:
            events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
            fields = {}
            if limit is not None and len(events) >= limit:
                break
    return events


def _types(events: list[Event]) -> list[str]:
    return [kind for _, kind, _ in events]


def _without_tokens(events: list[Event]) -> list[str]:
    return [kind for kind in _types(events) if kind != "token"]


# --- in process: the mock model, a TestClient -----------------------------------------------


class Starts(NullObserver):
    """Notes every attempt's start (its traceparent, attempt, session)."""

    def __init__(self) -> None:
        self.starts: list[RunStart] = []

    def run_started(self, run: RunStart) -> None:
        self.starts.append(run)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[TestClient, Starts]]:
    prepared = prepare_workflow(review_workflow(tmp_path), llm="mock", trace=False)
    starts = Starts()
    prepared.observers.append(starts)
    with TestClient(create_app(prepared, jobs=JobStore(tmp_path / "runs.db"))) as client:
        yield client, starts


def test_a_waiting_run_is_listed_and_resumed_with_what_it_waits_for(
    local: tuple[TestClient, Starts],
) -> None:
    client, starts = local
    started = client.post("/runs", json={"inputs": {"topic": "bees"}, "session_id": "chat-1"})
    assert started.status_code == 200, started.text
    run = started.json()
    assert (run["status"], run["session_id"], run["attempt"]) == ("waiting", "chat-1", 1), run
    (waiting,) = run["waiting"]
    assert (waiting["node"], waiting["kind"], waiting["label"]) == (
        "review",
        "input",
        "Editor review",
    )
    assert waiting["prompt"] == "Review: mock draft"
    assert set(waiting["outputs"]["properties"]) == {"verdict", "score"}

    listed = client.get("/runs", params={"status": "waiting"}).json()["runs"]
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert listed[0]["waiting"] == run["waiting"]

    url = f"/runs/{run['run_id']}/resume"
    refused = client.post(url, json={"inputs": {"verdict": 3, "typo": 1}})
    assert refused.status_code == 422, refused.text
    located = {tuple(e["loc"]): e["msg"] for e in refused.json()["detail"]}
    assert set(located) >= {("body", "inputs", "verdict"), ("body", "inputs", "score")}
    assert all(e["type"] == "value_error" for e in refused.json()["detail"])
    unchanged = client.get(f"/runs/{run['run_id']}").json()
    assert unchanged == run  # nothing changed: still waiting, same summary
    assert len(starts.starts) == 1

    resumed = client.post(url, json={"inputs": {"verdict": "publish", "score": 4}})
    assert resumed.status_code == 200, resumed.text
    done = resumed.json()
    assert (done["status"], done["attempt"], done["waiting"]) == ("success", 2, [])
    assert done["outputs"]["final"] == "mock final" and done["state"]["score"] == 4
    assert done["session_id"] == "chat-1"
    assert client.get("/runs", params={"status": "waiting"}).json()["runs"] == []

    again = client.post(url, json={"inputs": {"verdict": "publish", "score": 4}})
    assert again.status_code == 409 and "success" in again.json()["detail"]
    assert client.post("/runs/nope/resume", json={}).status_code == 404
    assert client.get("/runs/nope/events").status_code == 404


def test_events_of_a_finished_run_replay_in_order_across_attempts(
    local: tuple[TestClient, Starts],
) -> None:
    client, _ = local
    run_id = client.post("/runs", json={"inputs": {"topic": "bees"}}).json()["run_id"]
    answer = {"inputs": {"verdict": "ok", "score": 5}, "stream": True}
    streamed = client.post(f"/runs/{run_id}/resume", json=answer)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    second = parse_sse(iter(streamed.text.split("\n")))
    assert [number for number, _, _ in second] == list(range(7, 7 + len(second)))
    assert _without_tokens(second) == [
        "run_started", "node_started", "node_finished", "node_started", "node_finished",
        "run_finished",
    ]  # fmt: skip
    assert second[0][2]["attempt"] == 2 and second[-1][2]["status"] == "success"

    replay = client.get(f"/runs/{run_id}/events")
    events = parse_sse(iter(replay.text.split("\n")))
    assert [number for number, _, _ in events] == list(range(1, len(events) + 1))
    assert _types(events)[:6] == [
        "run_started", "node_started", "node_finished", "node_started", "waiting", "run_finished",
    ]  # fmt: skip
    assert events[5][2]["status"] == "waiting" and events[6:] == second
    assert all(data["run_id"] == run_id and data["type"] == kind for _, kind, data in events)
    (waiting,) = events[4][2]["waiting"]
    assert waiting["node"] == "review"

    after = client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "6"})
    assert parse_sse(iter(after.text.split("\n"))) == second
    query = client.get(f"/runs/{run_id}/events", params={"last_event_id": 6})
    assert parse_sse(iter(query.text.split("\n"))) == second
    both = client.get(
        f"/runs/{run_id}/events", params={"last_event_id": 0}, headers={"Last-Event-ID": "6"}
    )
    assert parse_sse(iter(both.text.split("\n"))) == second  # the header wins
    for bad in ({"headers": {"Last-Event-ID": "x"}}, {"params": {"last_event_id": -1}}):
        refused = client.get(f"/runs/{run_id}/events", **bad)
        assert refused.status_code == 422, refused.text


def test_traceparent_reaches_the_engine_and_an_invalid_one_is_ignored(
    local: tuple[TestClient, Starts],
) -> None:
    client, starts = local
    body = {"inputs": {"topic": "bees"}}
    first = client.post("/runs", json=body, headers={"traceparent": TRACEPARENT})
    assert first.status_code == 200
    for invalid in (
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-b7ad6b7169203331-01",
        f"ff-{TRACE_ID}-b7ad6b7169203331-01",
        f"00-{TRACE_ID}-b7ad6b7169203331-01-extra",
        "not a traceparent",
    ):
        answered = client.post("/runs", json=body, headers={"traceparent": invalid})
        assert answered.status_code == 200, (invalid, answered.text)
    repeated = client.post(
        "/runs", json=body, headers=[("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)]
    )
    assert repeated.status_code == 200
    assert [start.traceparent for start in starts.starts] == [TRACEPARENT] + [None] * 6
    run_id = first.json()["run_id"]
    later = "00-11111111111111111111111111111111-2222222222222222-00"
    resumed = client.post(
        f"/runs/{run_id}/resume",
        json={"inputs": {"verdict": "ok", "score": 1}},
        headers={"traceparent": later},
    )
    assert resumed.status_code == 200 and resumed.json()["status"] == "success"
    assert (starts.starts[-1].traceparent, starts.starts[-1].attempt) == (later, 2)


def test_parse_traceparent_follows_w3c() -> None:
    assert parse_traceparent([TRACEPARENT]) == TRACEPARENT
    assert parse_traceparent([f" {TRACEPARENT}\t"]) == TRACEPARENT
    future = f"cc-{TRACE_ID}-b7ad6b7169203331-01-what-comes-later"
    assert parse_traceparent([future]) == future[:55]
    for invalid in (
        [],
        [TRACEPARENT, TRACEPARENT],
        [TRACEPARENT.upper()],
        [f"00-{TRACE_ID}-{'0' * 16}-01"],
        [f"00-{TRACE_ID}-b7ad6b7169203331-01-"],
        [f"cc-{TRACE_ID}-b7ad6b7169203331-01x"],
        [TRACEPARENT[:-1]],
        ["00-xyz"],
    ):
        assert parse_traceparent(invalid) is None, invalid


# --- the event buffer -----------------------------------------------------------------------


class _Ended:
    """A run store whose every run has ended (what :func:`follow` asks when a run is quiet)."""

    async def get(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "status": "failed", "error": "gone", "tokens": None}


async def _collect(events: LocalEvents, run_id: str, after: int) -> list[Event]:
    chunks = [c async for c in follow(events, _Ended(), run_id, after, quiet_s=0.01, grace_s=0.01)]  # type: ignore[arg-type]
    return parse_sse(iter(b"".join(chunks).decode().split("\n")))


def test_the_event_buffer_is_bounded_and_drops_finished_runs() -> None:
    async def scenario() -> None:
        events = LocalEvents(max_events=3, keep_s=600, keep_runs=2)
        events.open("r1")
        for index in range(5):
            events.publish("r1", {"type": "node_started", "run_id": "r1", "n": index})
        events.close("r1", {"type": "run_finished", "run_id": "r1", "status": "failed"})
        kept = await _collect(events, "r1", 0)
        assert [number for number, _, _ in kept] == [4, 5, 6]  # the last 3 of 6
        assert _types(kept) == ["node_started", "node_started", "run_finished"]
        chunks = [c async for c in follow(events, _Ended(), "r1", 1, quiet_s=0.01, grace_s=0.01)]  # type: ignore[arg-type]
        assert chunks[0] == b": 2 earlier event(s) are no longer kept\n\n"
        for run_id in ("r2", "r3"):
            events.open(run_id)
            events.close(run_id, {"type": "run_finished", "run_id": run_id, "status": "success"})
        assert await events.last_id("r1") == 0  # the first finished of three went
        assert await events.last_id("r3") == 1
        gone = await _collect(events, "r1", 0)  # made from the stored run
        assert gone == [(1, "run_finished", {"type": "run_finished", "run_id": "r1",
                         "status": "failed", "error": "gone", "cost_usd": None, "tokens": None,
                         "trace_id": None})]  # fmt: skip

    asyncio.run(scenario())


# --- stores: reopening a run for another attempt ----------------------------------------------


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_db() -> Iterator[str]:
    require(_redis_up(), "needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
    import redis

    redis.Redis.from_url(QUEUE).flushdb()
    yield QUEUE
    redis.Redis.from_url(QUEUE).flushdb()


@pytest.fixture(params=["sqlite", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    if request.param == "sqlite":
        return JobStore(tmp_path / "runs.db")
    from configurable_agents.queue.runs import RedisRuns

    return RedisRuns(request.getfixturevalue("redis_db"))


def test_only_an_ended_unsuccessful_run_reopens_and_a_refusal_restores_it(
    any_store: RunStore,
) -> None:
    any_store.create("w", "wf", {"topic": "x"}, {}, session_id="s-1")
    assert any_store.get("w")["session_id"] == "s-1"  # type: ignore[index]
    assert not any_store.reopen("w")  # queued: not ended
    waiting = [{"node": "review", "kind": "input", "prompt": "?", "outputs": {}}]
    any_store.finish("w", {"run_id": "w", "status": "waiting", "waiting": waiting, "attempt": 1})
    assert any_store.reopen("w", {"inputs": {"verdict": "ok"}, "options": {"resume": "a"}})
    reopened = any_store.get("w")
    assert reopened is not None
    assert (reopened["status"], reopened["waiting"], reopened["finished_at"]) == (
        "queued",
        None,
        None,
    )
    assert not any_store.reopen("w")  # a second resume loses
    any_store.restore("w")
    restored = any_store.get("w")
    assert restored is not None and (restored["status"], restored["waiting"]) == (
        "waiting",
        waiting,
    )
    assert [v["run_id"] for v in any_store.list("wf", status="waiting")] == ["w"]
    assert any_store.reopen("w")
    any_store.start("w")
    any_store.finish("w", {"run_id": "w", "status": "success", "attempt": 2, "waiting": []})
    ended = any_store.get("w")
    assert ended is not None and (ended["status"], ended["attempt"]) == ("success", 2)
    assert not any_store.reopen("w") and any_store.get("w") == ended
    any_store.restore("w")  # nothing aside: nothing changes
    assert any_store.get("w") == ended
    assert not any_store.reopen("unknown")


def test_a_job_table_made_before_sessions_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, "
        "owner TEXT NOT NULL, created REAL NOT NULL, finished REAL, inputs TEXT NOT NULL, "
        "tags TEXT NOT NULL, summary TEXT)"
    )
    old.execute("INSERT INTO runs VALUES ('o', 'wf', 'success', 'x:1:y', 1, 2, '{}', '{}', "
                "'{\"status\": \"success\", \"session_id\": \"from-summary\"}')")  # fmt: skip
    old.commit()
    old.close()
    jobs = JobStore(path)
    assert jobs.get("o")["session_id"] == "from-summary"  # type: ignore[index]
    jobs.create("n", "wf", {}, {}, session_id="new")
    assert jobs.get("n")["session_id"] == "new"  # type: ignore[index]


class _Sent:
    """A Celery app that runs each task it is sent on a thread of ``worker`` (or keeps it)."""

    def __init__(self, worker: Any = None) -> None:
        self.worker = worker
        self.sent: list[list[Any]] = []
        self.threads: list[threading.Thread] = []

    def send_task(self, name: str, args: list[Any], task_id: str) -> None:
        self.sent.append(args)
        if self.worker is not None:
            thread = threading.Thread(target=self.worker.execute, args=args)
            thread.start()
            self.threads.append(thread)


def test_the_queue_hands_session_traceparent_and_resumes_to_the_worker(
    tmp_path: Path, redis_db: str
) -> None:
    from configurable_agents.engine import ResumeInputError
    from configurable_agents.queue.executors import QueueExecutor, SummaryWaiter
    from configurable_agents.queue.runs import RedisRuns
    from configurable_agents.queue.worker import Worker

    prepared = prepare_workflow(review_workflow(tmp_path), llm="mock", trace=False)
    starts = Starts()
    prepared.observers.append(starts)
    runs = RedisRuns(redis_db)
    app = _Sent(Worker([prepared], runs))
    executor = QueueExecutor(prepared, runs, app)

    async def scenario() -> str:
        run_id = await executor.submit(
            {"topic": "x"}, {"k": "v"}, session_id="s-9", traceparent=TRACEPARENT
        )
        assert await executor.wait(run_id, 30)
        with pytest.raises(ResumeInputError) as refused:
            await executor.resume(run_id, {"score": "?"}, decide_within=30)
        assert {tuple(e["loc"]) for e in refused.value.errors} >= {("verdict",), ("score",)}
        assert (await executor.events.last_id(run_id)) == 6  # the refusal told nothing
        later = f"00-{'1' * 32}-{'2' * 16}-01"
        taken = await executor.resume(
            run_id, {"verdict": "ok", "score": 2}, traceparent=later, decide_within=30
        )
        assert taken and await executor.wait(run_id, 30)
        return run_id

    run_id = asyncio.run(scenario())
    for thread in app.threads:
        thread.join(30)
    assert [(s.attempt, s.session_id, s.traceparent) for s in starts.starts] == [
        (1, "s-9", TRACEPARENT),
        (2, "s-9", f"00-{'1' * 32}-{'2' * 16}-01"),
    ]
    ended = runs.get(run_id)
    assert ended is not None and (ended["status"], ended["attempt"]) == ("success", 2)
    assert ended["tags"] == {"k": "v"} and ended["session_id"] == "s-9"

    # A lost resume task is sent again as a resume, with its inputs and options.
    runs.create("lost", "review", {"topic": "y"}, {}, session_id="s", task={"traceparent": None})
    runs.finish("lost", {"run_id": "lost", "status": "waiting"})
    options = {"resume": "answer-1", "traceparent": TRACEPARENT}
    assert runs.reopen("lost", {"inputs": {"verdict": "v", "score": 1}, "options": options})
    kept = _Sent()
    waiter = SummaryWaiter(runs, kept, "review@-#x")
    waiter._resend_lost(["lost"], {"lost"})
    assert kept.sent == [["review@-#x", "lost", {"verdict": "v", "score": 1}, {}, options]]


# --- a real server: live streams over HTTP ----------------------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with StubLLM() as server:
        yield server


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, stub: StubLLM) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("durable")
    server = Server(review_workflow(tmp, stub_llm_config(stub)), tmp / "runs.db", server_env(tmp))
    yield server
    assert server.stop() == 0, "".join(server.log)
    assert "Traceback" not in "".join(server.log), "".join(server.log)


def _stream(client: httpx.Client, method: str, url: str, **kwargs: Any) -> list[Event]:
    with client.stream(method, url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return parse_sse(response.iter_lines())


def _final_answer_arguments(stub: StubLLM, node_prompt: str) -> str:
    """The ``final_answer`` arguments the stub sent for the call whose prompt starts so."""
    for request in stub.requests:
        if node_prompt in json.dumps(request["messages"]):
            assert request.get("stream") is True  # a final node streams to a live listener
            reply = default_responder(request)
            (_, arguments), *_ = reply.calls
            return arguments
    raise AssertionError(f"no call with {node_prompt!r}")


def test_streamed_run_waits_then_its_resume_streams_tokens(api: Server, stub: StubLLM) -> None:
    stub.reset()
    stub.responder = default_responder
    body = {"inputs": {"topic": "owls"}, "stream": True, "session_id": "s-owls"}
    first = _stream(api.client, "POST", "/runs", json=body)
    assert _types(first) == [
        "run_started", "node_started", "node_finished", "node_started", "waiting", "run_finished",
    ]  # fmt: skip
    assert [number for number, _, _ in first] == [1, 2, 3, 4, 5, 6]
    run_id = first[0][2]["run_id"]
    assert first[0][2]["session_id"] == "s-owls" and first[-1][2]["status"] == "waiting"
    assert first[2][2]["node"] == "write" and first[4][2]["waiting"][0]["label"] == "Editor review"
    view = api.client.get(f"/runs/{run_id}").json()
    assert view["status"] == "waiting"
    waiting = api.client.get("/runs", params={"status": "waiting"}).json()["runs"]
    assert run_id in [r["run_id"] for r in waiting]

    answer = {"inputs": {"verdict": "fine", "score": 3}, "stream": True}
    second = _stream(api.client, "POST", f"/runs/{run_id}/resume", json=answer)
    assert [number for number, _, _ in second] == list(range(7, 7 + len(second)))
    kinds = _types(second)
    assert kinds[:4] == ["run_started", "node_started", "node_finished", "node_started"]
    assert kinds[-2:] == ["node_finished", "run_finished"]
    tokens = [data for _, kind, data in second if kind == "token"]
    assert len(tokens) >= 2 and {t["node"] for t in tokens} == {"finish"}
    assert kinds.index("token") > kinds.index("node_started", 3)  # inside finish's execution
    assert "".join(t["text"] for t in tokens) == _final_answer_arguments(stub, "Finish")
    assert second[-1][2]["status"] == "success" and second[-1][2]["tokens"]["total"] > 0
    assert api.client.get(f"/runs/{run_id}").json()["status"] == "success"
    replay = _stream(api.client, "GET", f"/runs/{run_id}/events")
    assert replay == first + second


def test_a_client_that_reconnects_with_last_event_id_misses_nothing(
    api: Server, stub: StubLLM
) -> None:
    gate = Gate()
    stub.responder = gate
    accepted = api.client.post("/runs", json={"inputs": {"topic": "moths"}, "wait_seconds": 0})
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    assert gate.arrived.wait(30)  # write's model call is held: the run is live
    url = f"/runs/{run_id}/events"
    with api.client.stream("GET", url) as response:
        seen = parse_sse(response.iter_lines(), limit=2)  # then the connection drops
    assert _types(seen) == ["run_started", "node_started"]
    rest: list[Event] = []

    def reconnect() -> None:
        rest.extend(_stream(api.client, "GET", url, headers={"Last-Event-ID": str(seen[-1][0])}))

    reader = threading.Thread(target=reconnect)
    reader.start()
    conflict = api.client.post(f"/runs/{run_id}/resume", json={})
    assert conflict.status_code == 409, conflict.text  # running: not resumable
    gate.release()
    reader.join(30)
    assert not reader.is_alive()
    assert [number for number, _, _ in rest] == [3, 4, 5, 6]
    assert _types(rest) == ["node_finished", "node_started", "waiting", "run_finished"]
    assert seen + rest == _stream(api.client, "GET", url)
    stub.responder = default_responder


# --- the queue: a worker adds events to Redis, the API streams them ----------------------------


class _Process:
    """A `configurable-agents` subprocess; ready once its stderr says ``ready``."""

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

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def test_queued_runs_stream_wait_and_resume_through_redis(
    tmp_path: Path, stub: StubLLM, redis_db: str
) -> None:
    stub.reset()
    stub.responder = default_responder
    workflow = review_workflow(tmp_path, stub_llm_config(stub))
    env = {**server_env(tmp_path), "CONFIGURABLE_AGENTS_FLUSH_TIMEOUT": "0"}
    worker = _Process(
        ["worker", str(workflow), "--queue", redis_db, "-c", "2"],
        env,
        "worker for review",
        tmp_path,
    )
    api = _Process(
        ["serve", str(workflow), "--port", "0", "--queue", redis_db],
        env, "Application startup complete", tmp_path,
    )  # fmt: skip
    try:
        url = re.search(r"on (http://\S+)", "".join(api.log)).group(1)  # type: ignore[union-attr]
        client = httpx.Client(base_url=url, timeout=60)
        body = {"inputs": {"topic": "bats"}, "stream": True, "session_id": "s-bats"}
        headers = {"traceparent": TRACEPARENT}
        first = _stream(client, "POST", "/runs", json=body, headers=headers)
        assert [number for number, _, _ in first] == [1, 2, 3, 4, 5, 6]
        assert _types(first)[-2:] == ["waiting", "run_finished"]
        run_id = first[0][2]["run_id"]
        listed = client.get("/runs", params={"status": "waiting"}).json()["runs"]
        assert [(r["run_id"], r["session_id"]) for r in listed] == [(run_id, "s-bats")]
        assert listed[0]["waiting"][0]["node"] == "review"

        resume = f"/runs/{run_id}/resume"
        refused = client.post(resume, json={"inputs": {"score": "high"}})
        assert refused.status_code == 422, refused.text
        located = {tuple(e["loc"]) for e in refused.json()["detail"]}
        assert ("body", "inputs", "score") in located and ("body", "inputs", "verdict") in located
        assert client.get(f"/runs/{run_id}").json()["status"] == "waiting"  # nothing changed
        assert client.post("/runs/nope/resume", json={}).status_code == 404

        answer = {"inputs": {"verdict": "good", "score": 5}, "stream": True}
        second = _stream(client, "POST", resume, json=answer, headers=headers)
        assert [number for number, _, _ in second] == list(range(7, 7 + len(second)))
        assert "token" in _types(second) and second[-1][2]["status"] == "success"
        assert second[0][2]["attempt"] == 2
        done = client.get(f"/runs/{run_id}").json()
        assert (done["status"], done["attempt"], done["session_id"]) == ("success", 2, "s-bats")
        assert client.post(resume, json={}).status_code == 409

        everything = _stream(client, "GET", f"/runs/{run_id}/events")
        assert everything == first + second
        tail = _stream(client, "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "6"})
        assert tail == second
        client.close()
    finally:
        stopped = [api.stop(), worker.stop()]
    logs = "".join(api.log + worker.log)
    assert stopped == [0, 0] and "Traceback" not in logs, logs
