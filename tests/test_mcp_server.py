"""`configurable-agents mcp`: workflows served as MCP tools, driven by the MCP SDK's own client.

The command runs as a real process, on stdio and on streamable HTTP over 127.0.0.1 with a bearer
token, on the offline `mock` provider: the tools' schemas, a call's outputs, tool errors for a
run that does not succeed (budget), waits for a person or gets bad arguments, and the call's
trace in a SQLite MLflow store. Bad files and options exit 2 before anything is served.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from click.testing import CliRunner
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from configurable_agents import cli
from configurable_agents.server.mcp import META_KEY

TOKEN = "mcp-test-token-0123"

WRITER = {
    "schema_version": "1.0",
    "flow": {"name": "writer", "description": "Writes a short article about a topic."},
    "state": {
        "fields": {
            "topic": {"type": "str", "required": True, "description": "What to write about."},
            "tone": {"type": "str", "default": "plain"},
            "keywords": {"type": "list[str]", "default": []},
            "article": {"type": "str", "default": "", "description": "The article."},
        }
    },
    "nodes": [
        {"id": "write", "prompt": "Write about {topic} in a {tone} tone", "outputs": ["article"]},
        {"id": "title", "prompt": "A title for {article}", "outputs": ["headline"]},
    ],
    "edges": [
        {"from": "START", "to": "write"},
        {"from": "write", "to": "title"},
        {"from": "title", "to": "END"},
    ],
}

OVER_BUDGET = {
    "schema_version": "1.0",
    "flow": {"name": "over_budget"},
    "config": {"execution": {"max_tokens": 1}},
    "state": {"fields": {"topic": {"type": "str", "required": True}}},
    "nodes": [{"id": "write", "prompt": "About {topic}", "outputs": ["text"]}],
    "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
}

APPROVAL = {
    "schema_version": "1.0",
    "flow": {"name": "approval", "description": "Drafts a note a person approves."},
    "state": {"fields": {"ticket": {"type": "str", "required": True}}},
    "nodes": [
        {"id": "draft", "prompt": "Draft a note for {ticket}", "outputs": ["note"]},
        {
            "id": "review",
            "type": "human",
            "prompt": "Send this note? {note}",
            "outputs": ["approved"],
            "output_schema": {"type": "object", "fields": [{"name": "approved", "type": "bool"}]},
        },
    ],
    "edges": [
        {"from": "START", "to": "draft"},
        {"from": "draft", "to": "review"},
        {"from": "review", "to": "END"},
    ],
}


def _write(path: Path, data: dict[str, Any], **config: Any) -> Path:
    data = json.loads(json.dumps(data))
    data.setdefault("config", {}).update(config)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """The three workflows; the writer recorded in a SQLite store of the test's own."""
    mlflow = {"enabled": True, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return [
        _write(tmp_path / "writer.yaml", WRITER, observability={"mlflow": mlflow}),
        _write(tmp_path / "over_budget.yaml", OVER_BUDGET),
        _write(tmp_path / "approval.yaml", APPROVAL),
    ]


def _env(**extra: str) -> dict[str, str]:
    """This environment (the conftest's spool and checkpoint store, recording off unless a file
    asks), without a token unless given."""
    env = {k: v for k, v in os.environ.items() if k != "CONFIGURABLE_AGENTS_API_TOKEN"}
    env.pop("CONFIGURABLE_AGENTS_TRACING", None)  # the writer's file asks for recording
    return {**env, **extra}


def _text(result: Any) -> list[str]:
    return [block.text for block in result.content]


def _recorded(store: str, trace_id: str, limit: float = 30) -> tuple[Any, list[Any]]:
    """The trace, and the experiment's MLflow runs, once the background writer has written what
    the server spooled (the spool is the conftest's) to ``store``."""
    from mlflow.tracking import MlflowClient

    from configurable_agents.observability.spool import Spool

    spool, deadline = Spool(), time.monotonic() + limit
    while spool.pending(store) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not spool.pending(store), f"still spooled for {store} after {limit} s"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("configurable_agents")
    assert experiment is not None
    trace = client.get_trace(trace_id)
    return trace, client.search_runs([experiment.experiment_id])


def test_stdio_lists_and_calls_the_workflows(files: list[Path], tmp_path: Path) -> None:
    command = [sys.executable, "-m", "configurable_agents", "mcp", *map(str, files)]
    params = StdioServerParameters(
        command=command[0], args=[*command[1:], "--llm", "mock"], env=_env(), cwd=tmp_path
    )
    log = tmp_path / "server.log"

    async def session() -> dict[str, Any]:
        with log.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                listed = (await client.list_tools()).tools
                return {
                    "tools": {tool.name: tool for tool in listed},
                    "ok": await client.call_tool("writer", {"topic": "bees", "tone": "dry"}),
                    "budget": await client.call_tool("over_budget", {"topic": "bees"}),
                    "waiting": await client.call_tool("approval", {"ticket": "refund 12"}),
                    "typo": await client.call_tool("writer", {"topik": "bees"}),
                    "missing": await client.call_tool("writer", {}),
                    "unknown": await _error_of(client.call_tool("writter", {"topic": "x"})),
                }

    answers = anyio.run(session)
    tools = answers["tools"]
    assert list(tools) == ["writer", "over_budget", "approval"], log.read_text()
    writer = tools["writer"]
    assert writer.description == "Writes a short article about a topic."
    assert tools["over_budget"].description == "Runs the workflow over_budget."
    # inputs: the required field and those no node writes, typed, with their defaults
    assert writer.input_schema == {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "description": "What to write about."},
            "tone": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "plain"},
            "keywords": {
                "anyOf": [
                    {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                    {"type": "null"},
                ],
                "default": [],
            },
        },
        "required": ["topic"],
        "additionalProperties": False,
    }
    assert writer.output_schema is not None
    assert set(writer.output_schema["properties"]) == {"article", "headline"}
    assert writer.output_schema["additionalProperties"] is False

    ok = answers["ok"]
    outputs = {"article": "mock article", "headline": "mock headline"}
    assert not ok.is_error
    assert ok.structured_content == outputs
    assert [json.loads(text) for text in _text(ok)] == [outputs]
    run = ok.meta[META_KEY]
    assert run["status"] == "success" and run["tokens"]["total"] > 0
    assert run["run_id"] and run["trace_id"]

    budget = answers["budget"]
    assert budget.is_error and budget.structured_content is None
    details = json.loads(_text(budget)[1])
    assert details["status"] == "budget_exceeded" and "token budget of 1" in details["error"]
    assert details["run_id"] == budget.meta[META_KEY]["run_id"]
    assert "ended with status budget_exceeded" in _text(budget)[0]

    waiting = answers["waiting"]
    assert waiting.is_error
    details = json.loads(_text(waiting)[1])
    assert details["status"] == "waiting"
    assert [(w["node"], w["kind"]) for w in details["waiting"]] == [("review", "input")]
    assert f"resume {files[2]} {details['run_id']} --llm mock -i approved=..." in _text(waiting)[0]

    typo = answers["typo"]
    assert typo.is_error
    assert "unknown input 'topik' (did you mean 'topic'?)" in _text(typo)[0]
    assert "missing required input 'topic'" in _text(answers["missing"])[0]
    assert "unknown tool 'writter' (did you mean 'writer'?)" in answers["unknown"]

    # the call is a trace in the file's store; a served call is no MLflow run of its own
    trace, runs = _recorded(f"sqlite:///{tmp_path / 'mlflow.db'}", run["trace_id"])
    assert trace.info.trace_id == run["trace_id"]
    assert {span.name for span in trace.data.spans} >= {"write", "title"}
    assert runs == []
    assert "serving MCP tools writer, over_budget, approval on stdio" in log.read_text()


async def _error_of(call: Any) -> str:
    try:
        await call
    except MCPError as exc:
        return exc.message
    raise AssertionError("the call did not fail")


class HttpServer:
    """`configurable-agents mcp --http` on 127.0.0.1; ``url`` once uvicorn has started."""

    def __init__(self, files: list[Path], env: dict[str, str]) -> None:
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "configurable_agents", "mcp", *map(str, files),
             "--http", "--port", "0", "--llm", "mock"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started = threading.Event()
        self.url = ""

        def drain() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line)
                if line.startswith("serving "):
                    self.url = line.split(" on ", 1)[1].split(" ", 1)[0]
                if "Application startup complete" in line:
                    started.set()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        started.wait(60)
        assert self.url and self.process.poll() is None, "".join(self.log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def http_server(files: list[Path]) -> Iterator[HttpServer]:
    server = HttpServer(files[:2], _env(CONFIGURABLE_AGENTS_API_TOKEN=TOKEN))
    yield server
    server.stop()


def test_http_needs_the_bearer_token_and_serves_the_tools(http_server: HttpServer) -> None:
    url = http_server.url
    assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
    assert "(bearer token required)" in "".join(http_server.log)
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = httpx.post(url, json=hello, headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"

    async def session() -> tuple[list[str], Any, Any]:
        import httpx2

        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            names = [tool.name for tool in (await client.list_tools()).tools]
            ok = await client.call_tool("writer", {"topic": "bees"})
            budget = await client.call_tool("over_budget", {"topic": "bees"})
            return names, ok, budget

    names, ok, budget = anyio.run(session)
    assert names == ["writer", "over_budget"]
    assert ok.structured_content == {"article": "mock article", "headline": "mock headline"}
    assert budget.is_error and json.loads(_text(budget)[1])["status"] == "budget_exceeded"
    assert http_server.stop() == 0


def _invoke(*args: str, **env: str | None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, ["mcp", *args], env=env)
    return result.exit_code, result.output


def test_two_workflows_with_one_name_exit_2_located(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", OVER_BUDGET)
    second = _write(tmp_path / "b.yaml", OVER_BUDGET)
    code, output = _invoke(str(first), str(second))
    assert code == 2
    assert output == (
        f"{second}:3:9: error: flow.name: 'over_budget' is also the name of {first}; the tools "
        "served together need distinct names\n"
    )


def test_a_name_mcp_cannot_use_exits_2(tmp_path: Path) -> None:
    data = {**OVER_BUDGET, "flow": {"name": "write an article"}}
    code, output = _invoke(str(_write(tmp_path / "a.yaml", data)))
    assert code == 2 and "'write an article' cannot name an MCP tool" in output


def test_a_non_loopback_host_needs_a_token(files: list[Path]) -> None:
    args = [str(files[1]), "--http", "--host", "0.0.0.0", "--port", "0"]
    code, output = _invoke(*args, CONFIGURABLE_AGENTS_API_TOKEN=None)
    assert code == 2
    assert output.startswith("error: --host 0.0.0.0 is not a loopback address")
    assert output.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "9000"], "--host and --port go with --http"),
        (["--llm", "nope"], "--llm: unknown provider 'nope'"),
    ],
)
def test_bad_options_exit_2(files: list[Path], args: list[str], message: str) -> None:
    code, output = _invoke(str(files[1]), *args)
    assert code == 2 and message in output


def test_an_invalid_file_exits_2_with_its_problems(files: list[Path]) -> None:
    broken = Path(__file__).parent / "data" / "broken.yaml"
    code, output = _invoke(str(files[1]), str(broken))
    assert code == 2 and "broken.yaml:2:20: error: flow.versoin" in output


def test_help_imports_nothing_heavy() -> None:
    from .test_imports import HEAVY, PROBE

    result = subprocess.run(
        [sys.executable, "-c", PROBE % ((*HEAVY, "mcp"),), "mcp", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.splitlines()[-1] == "HEAVY:"
