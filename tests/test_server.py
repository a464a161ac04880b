"""`configurable-agents serve` as a real process on 127.0.0.1, driven over HTTP with httpx.

The workflow calls the stub LLM server through the real OpenAI client; the stub counts calls, so
"exactly one execution" is checked, and a gate holds a call open for as long as a test needs.
"""

from __future__ import annotations

import json
import os
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

from configurable_agents.server.jobs import JobStore

from .stub_llm import Reply, StubLLM, default_responder

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token-for-tests"

SIMPLE = {
    "schema_version": "1.0",
    "flow": {"name": "simple", "version": "2.0.0"},
    "state": {"fields": {"topic": {"type": "str", "required": True}}},
    "nodes": [{"id": "write", "prompt": "Write about {topic}", "outputs": ["article"]}],
    "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
}


def write_workflow(path: Path, stub: StubLLM, **observability: Any) -> Path:
    """``SIMPLE`` pointed at the stub, written to ``path``."""
    data = json.loads(json.dumps(SIMPLE))
    llm = {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url, "timeout": 30}
    data["config"] = {"llm": llm, "execution": {"max_retries": 0}}
    if observability:
        data["config"]["observability"] = observability
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def answer(article: str = "An article") -> Reply:
    """A final answer using 1,000 input and 100 output tokens ($0.00021 on gpt-4o-mini)."""
    usage = {"prompt_tokens": 1_000, "completion_tokens": 100}
    return Reply.tool_calls([("final_answer", {"article": article})], usage=usage)


class Gate:
    """A stub responder that holds each call until ``release()``, then answers ``reply`` (else
    a schema-valid default); ``arrived`` is set when a call comes in."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.reply = reply
        self.arrived = threading.Event()
        self._open = threading.Event()

    def __call__(self, request: dict[str, Any]) -> Reply:
        self.arrived.set()
        self._open.wait(60)
        return self.reply or default_responder(request)

    def release(self) -> None:
        self._open.set()


class Server:
    """A `serve` subprocess; ``url`` once its application has started."""

    def __init__(self, workflow: Path, db: Path, env: dict[str, str], *args: str) -> None:
        self.db = db
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "configurable_agents", "serve", str(workflow),
             "--port", "0", "--db", str(db), *args],
            cwd=workflow.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started = threading.Event()
        self.url = ""
        self._logged = threading.Condition()

        def drain() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                with self._logged:
                    self.log.append(line)
                    self._logged.notify_all()
                if line.startswith("serving "):
                    self.url = line.split(" on ", 1)[1].split(" ", 1)[0]
                if "Application startup complete" in line:
                    started.set()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        started.wait(60)
        assert self.url and self.process.poll() is None, "".join(self.log)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def hold_run(self, stub: StubLLM, topic: str, reply: Reply | None = None) -> tuple[str, Gate]:
        """Start a run whose model call the stub holds: its id, and the gate that lets it go."""
        gate = Gate(reply)
        stub.responder = gate
        response = self.client.post("/runs", json={"inputs": {"topic": topic}, "wait_seconds": 0})
        assert response.status_code == 202, response.text
        assert gate.arrived.wait(30)
        return response.json()["run_id"], gate

    def wait_for_log(self, text: str, timeout: float = 60) -> bool:
        """Wait until the server has logged a line containing ``text``."""
        with self._logged:
            return self._logged.wait_for(lambda: any(text in line for line in self.log), timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the process to end; its exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(60)


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment, recording off, spool in ``tmp``, no token unless given."""
    env = {k: v for k, v in os.environ.items() if k != "CONFIGURABLE_AGENTS_API_TOKEN"}
    env.update(CONFIGURABLE_AGENTS_TRACING="off", CONFIGURABLE_AGENTS_SPOOL=str(tmp / "spool.db"))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with StubLLM() as server:
        yield server


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, stub: StubLLM) -> Iterator[Server]:
    """One server for the module, with a bearer token, a 4 KiB body limit and one run at once."""
    tmp = tmp_path_factory.mktemp("serve")
    server = Server(
        write_workflow(tmp / "wf.yaml", stub),
        tmp / "runs.db",
        server_env(tmp, CONFIGURABLE_AGENTS_API_TOKEN=TOKEN),
        "--max-body-bytes", "4096", "--max-runs", "1",
    )  # fmt: skip
    server.client.headers["Authorization"] = f"Bearer {TOKEN}"
    yield server
    assert server.stop() == 0
    assert "Traceback" not in "".join(server.log)


@pytest.fixture
def client(api: Server, stub: StubLLM) -> httpx.Client:
    stub.reset()
    return api.client


def test_sync_run_returns_the_result(client: httpx.Client, stub: StubLLM) -> None:
    stub.script(answer("Bees dance."))
    response = client.post("/runs", json={"inputs": {"topic": "bees"}, "tags": {"user": "u1"}})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "success" and run["error"] is None
    assert run["outputs"] == {"article": "Bees dance."}
    assert run["tokens"]["input"] == 1_000 and run["tokens"]["output"] == 100
    assert run["cost_usd"] == pytest.approx(0.00021)
    assert run["tags"] == {"user": "u1"} and run["inputs"] == {"topic": "bees"}
    assert stub.calls == 1
    assert client.get(f"/runs/{run['run_id']}").json() == run
    listed = client.get("/runs", params={"tag": "user=u1"}).json()["runs"]
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert client.get("/runs", params={"tag": "user=nobody"}).json()["runs"] == []


def test_slow_run_answers_202_and_executes_exactly_once(
    client: httpx.Client, stub: StubLLM
) -> None:
    gate = Gate()
    stub.responder = gate
    try:
        response = client.post("/runs", json={"inputs": {"topic": "x"}, "wait_seconds": 0.2})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "running"
        assert response.headers["location"] == accepted["status_url"]
        assert gate.arrived.wait(30)
        assert client.get(accepted["status_url"]).json()["status"] == "running"
        running = client.get("/runs", params={"status": "running"}).json()["runs"]
        assert [r["run_id"] for r in running] == [accepted["run_id"]]
    finally:
        gate.release()
    done = client.get(accepted["status_url"], params={"wait_seconds": 30}).json()
    assert done["status"] == "success", done
    assert done["outputs"] == {"article": "stub"}
    assert stub.calls == 1  # the same execution went on: never a second one


def test_delete_cancels_a_running_run(api: Server, client: httpx.Client, stub: StubLLM) -> None:
    run_id, gate = api.hold_run(stub, "x")
    try:
        response = client.delete(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        cancelled = response.json()
        assert cancelled["status"] == "cancelled" and cancelled["error"] == "run cancelled"
        assert cancelled["state"] == {"topic": "x"}
        assert client.get(f"/runs/{run_id}").json()["status"] == "cancelled"
        assert client.delete(f"/runs/{run_id}").status_code == 409
    finally:
        gate.release()
    assert client.delete("/runs/no-such-run").status_code == 404
    assert stub.calls == 1


def test_runs_over_the_cap_wait_queued(api: Server, client: httpx.Client, stub: StubLLM) -> None:
    first, gate = api.hold_run(stub, "first")
    try:
        response = client.post("/runs", json={"inputs": {"topic": "second"}, "wait_seconds": 0})
        assert response.status_code == 202
        second = response.json()
        assert second["status"] == "queued"
        assert client.get(second["status_url"]).json()["status"] == "queued"
        queued = client.get("/runs", params={"status": "queued"}).json()["runs"]
        assert [run["run_id"] for run in queued] == [second["run_id"]]
        assert stub.calls == 1  # the second run has not started
        third = client.post("/runs", json={"inputs": {"topic": "third"}, "wait_seconds": 0})
        cancelled = client.delete(third.json()["status_url"]).json()
        assert cancelled["status"] == "cancelled" and cancelled["error"] == "run cancelled"
    finally:
        gate.release()
    done = client.get(second["status_url"], params={"wait_seconds": 30}).json()
    assert done["status"] == "success"
    assert client.get(f"/runs/{first}").json()["status"] == "success"
    assert stub.calls == 2  # the cancelled third run never called the model


def test_bearer_token_is_required(api: Server) -> None:
    bare = httpx.Client(base_url=api.url, timeout=10)
    with bare:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for method, path in (("GET", "/runs"), ("POST", "/runs"), ("GET", "/metrics")):
                response = bare.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        assert bare.get("/health").json() == {"status": "ok"}
        assert bare.get("/ready").status_code == 200
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert bare.get("/schema", headers=good).status_code == 200


def test_token_is_compared_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from configurable_agents import prepare_workflow
    from configurable_agents.server import app as server_app
    from configurable_agents.server import guard
    from configurable_agents.server.jobs import JobStore

    seen: list[tuple[bytes, bytes]] = []

    def spy(given: bytes, wanted: bytes) -> bool:
        seen.append((given, wanted))
        return given == wanted

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    prepared = prepare_workflow(ROOT / "examples" / "article_writer.yaml", llm="mock")
    app = server_app.create_app(prepared, jobs=JobStore(tmp_path / "runs.db"), token="t0k")

    async def call(header: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return (await http.get("/schema", headers={"Authorization": header})).status_code

    assert asyncio.run(call("Bearer nope")) == 401
    assert asyncio.run(call("Bearer t0k")) == 200
    assert seen == [(b"nope", b"t0k"), (b"t0k", b"t0k")]


def test_bad_inputs_get_422_with_field_errors(client: httpx.Client, stub: StubLLM) -> None:
    response = client.post("/runs", json={"inputs": {"topc": "x"}})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "inputs", "topc"], "type": "value_error",
         "msg": "unknown input 'topc' (did you mean 'topic'?)"},
        {"loc": ["body", "inputs", "topic"], "type": "value_error",
         "msg": "missing required input 'topic' (str)"},
    ]  # fmt: skip
    wrong_type = client.post("/runs", json={"inputs": {"topic": 5}}).json()["detail"]
    assert wrong_type[0]["loc"] == ["body", "inputs", "topic"]
    assert "str" in wrong_type[0]["msg"]
    for body in ({"inputs": {"topic": "x"}, "wait_seconds": -1}, {"input": {}}):
        response = client.post("/runs", json=body)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][0] == "body"
    malformed = client.post(
        "/runs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert "Traceback" not in malformed.text
    assert stub.calls == 0


def test_body_over_the_limit_gets_413(client: httpx.Client, stub: StubLLM) -> None:
    for size in (5_000, 3_000_000):  # small enough to be buffered, or not
        big = {"inputs": {"topic": "x" * size}}
        assert client.post("/runs", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as it arrives
        yield b'{"inputs": {"topic": "'
        for _ in range(10):
            yield b"x" * 1_000
        yield b'"}}'

    response = client.post("/runs", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert stub.calls == 0


def test_schema_ready_and_docs(client: httpx.Client) -> None:
    schema = client.get("/schema").json()
    assert (schema["workflow"], schema["version"]) == ("simple", "2.0.0")
    assert schema["input"]["required"] == ["topic"]
    assert schema["input"]["properties"]["topic"]["type"] == "string"
    assert list(schema["output"]["properties"]) == ["article"]
    assert client.get("/ready").json() == {"status": "ready", "workflow": "simple"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/runs", "/runs/{run_id}", "/schema", "/health", "/ready", "/metrics"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_shutdown_lets_running_runs_finish(api: Server, stub: StubLLM) -> None:
    """Stops the module's server: SIGTERM, and the held run is let go only once the server is
    already shutting down; it still ends with its result."""
    stub.reset()
    run_id, gate = api.hold_run(stub, "x", answer("Finished late."))
    try:
        api.process.send_signal(signal.SIGTERM)
        assert api.wait_for_log("Waiting for application shutdown")
    finally:
        gate.release()
    api.client.close()
    assert api.process.wait(60) == 0
    finished = JobStore(api.db).get(run_id)
    assert finished is not None and finished["status"] == "success"
    assert finished["outputs"] == {"article": "Finished late."}


def test_restart_reports_interrupted_and_shutdown_cancels(tmp_path: Path, stub: StubLLM) -> None:
    stub.reset()
    workflow, db = write_workflow(tmp_path / "wf.yaml", stub), tmp_path / "runs.db"
    env = server_env(tmp_path)
    first = Server(workflow, db, env)
    try:
        in_flight, gate = first.hold_run(stub, "x")
    finally:
        first.stop(signal.SIGKILL)
        gate.release()

    stub.responder = default_responder
    second = Server(workflow, db, env, "--shutdown-timeout", "0.5")
    try:
        lost = second.client.get(f"/runs/{in_flight}").json()
        assert lost["status"] == "failed"
        assert lost["error"] == "interrupted: the server stopped before the run finished"
        fresh = second.client.post("/runs", json={"inputs": {"topic": "z"}}).json()
        assert fresh["status"] == "success"
        stopped, gate = second.hold_run(stub, "y")
    finally:
        assert second.stop() == 0  # SIGTERM: the held run is cancelled after 0.5 s
        gate.release()
    assert "Traceback" not in "".join(second.log)
    cancelled = JobStore(db).get(stopped)  # what any replica reads in the job table
    assert cancelled is not None and cancelled["status"] == "cancelled"
    assert cancelled["error"] == "run cancelled: the server shut down"
    assert cancelled["state"] == {"topic": "y"}


def test_bad_command_lines_are_located_errors_exit_2(tmp_path: Path, stub: StubLLM) -> None:
    workflow = write_workflow(tmp_path / "wf.yaml", stub)
    busy = socket.create_server(("127.0.0.1", 0))
    port = str(busy.getsockname()[1])
    cases = [
        ([str(ROOT / "tests" / "data" / "broken.yaml")], "unknown key 'versoin'"),
        ([str(workflow), "--llm", "nope"], "--llm"),
        ([str(workflow), "--db", str(workflow / "runs.db")], f"--db {workflow / 'runs.db'}: "),
        (
            [str(workflow), "--port", port],
            f"cannot listen on 127.0.0.1:{port}: Address already in use\n",
        ),
    ]
    with busy:
        for args, message in cases:
            result = subprocess.run(
                [sys.executable, "-m", "configurable_agents", "serve", "--port", "0", *args],
                capture_output=True, text=True, env=server_env(tmp_path), timeout=60,
            )  # fmt: skip
            assert result.returncode == 2, result.stderr
            assert message in result.stderr, result.stderr
            assert all("error: " in line for line in result.stderr.strip().splitlines())


def test_connections_to_the_listener_send_without_delay() -> None:
    """asyncio sets TCP_NODELAY only on connections of an IPPROTO_TCP listener; without it each
    response waited ~40 ms for a delayed ACK."""
    import asyncio

    from configurable_agents.server.process import listen

    async def nodelay_of_accepted_connection() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connection(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listen("127.0.0.1", 0))
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            result = await asyncio.wait_for(accepted, 10)
            writer.close()
        return result

    assert asyncio.run(nodelay_of_accepted_connection()) != 0
