"""Tools of MCP servers (`config.tools.mcp_servers`, `mcp:SERVER/TOOL`) against real servers
written with the MCP SDK (tests/mcp_server.py): on stdio, run with this interpreter, and on
streamable HTTP over 127.0.0.1, driven by the stub model through the real OpenAI client.

No test measures wall-clock time: a stalled or dead server is bounded by the server's `timeout`
and the test asserts the status and the error.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from configurable_agents import RunStatus, prepare_workflow, run_workflow, validate_workflow
from configurable_agents.cli import app
from configurable_agents.engine import SetupError

from .stub_llm import Reply, StubLLM

pytest.importorskip("mcp")

SERVER = Path(__file__).resolve().parent / "mcp_server.py"
FINAL = "final_answer"
SECRET = "s3cr3t-handle-4711"  # in a variable whose name does not say "secret"


def _stdio(**extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER)], **extra}


def _workflow(
    tmp_path: Path,
    stub: StubLLM,
    tools: list[Any],
    servers: dict[str, Any],
    **config: Any,
) -> Path:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "triage"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "tools": {"mcp_servers": servers},
            **config,
        },
        "state": {"fields": {"ticket": {"type": "str", "required": True}}},
        "nodes": [
            {"id": "triage", "prompt": "Triage {ticket}", "outputs": ["answer"], "tools": tools}
        ],
        "edges": [{"from": "START", "to": "triage"}, {"from": "triage", "to": "END"}],
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _final(answer: str = "done") -> Reply:
    return Reply.tool_calls([(FINAL, {"answer": answer})])


def _tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


ENV = {"OPENAI_API_KEY": "sk-test", "MCP_TICKETS_HANDLE": SECRET}


# -- stdio -------------------------------------------------------------------------------------


def test_the_model_calls_a_stdio_tool_and_its_result_reaches_the_next_request(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    (tmp_path / "prices.yaml").write_text(
        "tools:\n  - {name: 'mcp:tickets/lookup_ticket', per_call_usd: 0.01}\n"
    )
    servers = {"tickets": _stdio(timeout=20), "archive": _stdio(timeout=20)}
    tools = [
        "mcp:tickets/lookup_ticket",
        "mcp:archive/lookup_ticket",  # the same tool name on another server
        {"name": "mcp:tickets/whoami", "config": {}},
    ]
    path = _workflow(
        tmp_path, stub_llm, tools, servers, observability={"pricing_file": "prices.yaml"}
    )
    stub_llm.script(
        Reply.tool_calls([("lookup_ticket", {"ticket_id": "T-1"})]),
        Reply.tool_calls([("archive_lookup_ticket", {"ticket_id": "T-0"})]),
        _final("printer"),
    )
    result = run_workflow(path, {"ticket": "T-1"}, env=ENV)
    assert result.status is RunStatus.SUCCESS, result.error
    offered = {t["function"]["name"]: t["function"] for t in stub_llm.requests[0]["tools"]}
    assert set(offered) == {"lookup_ticket", "archive_lookup_ticket", "whoami", FINAL}
    parameters = offered["lookup_ticket"]["parameters"]
    assert parameters["required"] == ["ticket_id"]
    assert offered["lookup_ticket"]["description"].startswith("Look a ticket up by its id.")
    assert _tool_messages(stub_llm.requests[1]) == ["ticket T-1: printer on fire, priority high"]
    assert _tool_messages(stub_llm.requests[2])[-1] == "ticket T-0: printer on fire, priority high"
    first, second = result.records[0].tool_calls
    assert first.attributes == {"mcp.server": "tickets", "mcp.tool": "lookup_ticket"}
    assert second.attributes == {"mcp.server": "archive", "mcp.tool": "lookup_ticket"}
    assert float(first.cost_usd) == 0.01 and float(second.cost_usd) == 0  # priced by mcp: name


def test_fixed_arguments_error_results_and_on_error_continue(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    tools = [
        {"name": "mcp:tickets/lookup_ticket", "config": {"ticket_id": "T-9"}},
        {"name": "mcp:tickets/fail", "on_error": "continue"},
    ]
    path = _workflow(tmp_path, stub_llm, tools, {"tickets": _stdio(timeout=20)})
    stub_llm.script(Reply.tool_calls([("lookup_ticket", {}), ("fail", {})]), _final())
    result = run_workflow(path, {"ticket": "T-9"}, env=ENV)
    assert result.status is RunStatus.SUCCESS, result.error
    offered = {t["function"]["name"]: t["function"] for t in stub_llm.requests[0]["tools"]}
    assert offered["lookup_ticket"]["parameters"]["properties"] == {}  # the model cannot set it
    assert _tool_messages(stub_llm.requests[1]) == [
        "ticket T-9: printer on fire, priority high",
        "error: ToolError: mcp:tickets/fail: Error executing tool fail: the ticket database is "
        "down",
    ]


def test_a_server_that_exits_mid_call_fails_the_node(tmp_path: Path, stub_llm: StubLLM) -> None:
    path = _workflow(tmp_path, stub_llm, ["mcp:tickets/die"], {"tickets": _stdio(timeout=20)})
    stub_llm.script(Reply.tool_calls([("die", {})]))
    result = run_workflow(path, {"ticket": "T-1"}, env=ENV)
    assert result.status is RunStatus.FAILED
    assert "tool 'die' failed" in result.error
    assert "MCP server 'tickets' closed the connection; its stderr ends: dying now" in result.error


def test_a_stalled_call_is_a_tool_error_the_model_is_given(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    tools = [{"name": "mcp:tickets/stall", "on_error": "continue"}, "mcp:tickets/lookup_ticket"]
    path = _workflow(tmp_path, stub_llm, tools, {"tickets": _stdio(timeout=0.5)})
    stub_llm.script(
        Reply.tool_calls([("stall", {})]),
        Reply.tool_calls([("lookup_ticket", {"ticket_id": "T-2"})]),  # the server still answers
        _final(),
    )
    result = run_workflow(path, {"ticket": "T-1"}, env=ENV)
    assert result.status is RunStatus.SUCCESS, result.error
    stalled, answered = result.records[0].tool_calls
    assert stalled.error == (
        "ToolError: mcp:tickets/stall: no answer within 0.5 s (the server's timeout)"
    )
    assert _tool_messages(stub_llm.requests[1]) == [f"error: {stalled.error}"]
    assert answered.result == "ticket T-2: printer on fire, priority high"


def test_a_server_is_started_once_per_prepared_workflow_and_stopped_with_it(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    path = _workflow(tmp_path, stub_llm, ["mcp:tickets/pid"], {"tickets": _stdio(timeout=20)})

    async def two_runs(prepared: Any) -> list[str | None]:
        results = []
        for _ in range(2):
            stub_llm.script(Reply.tool_calls([("pid", {})]), _final())
            result = await prepared.arun({"ticket": "T-1"})
            assert result.status is RunStatus.SUCCESS, result.error
            results.append(result.records[0].tool_calls[0].result)
        return results

    prepared = prepare_workflow(path, env=ENV)
    first = asyncio.run(two_runs(prepared))
    second = asyncio.run(two_runs(prepared))  # another event loop: the same server
    assert first[0] == first[1] == second[0] == second[1]
    pid = int(first[0] or 0)
    os.kill(pid, 0)  # alive

    async def closing() -> None:
        async with prepared:
            pass

    asyncio.run(closing())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    again = asyncio.run(two_runs(prepared))  # a run after aclose starts it again
    assert again[0] == again[1] != first[0]
    prepared.close()


# -- streamable HTTP ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """tests/mcp_server.py on streamable HTTP at 127.0.0.1; expects the bearer token SECRET."""
    port = _free_port()
    env = {**os.environ, "EXPECTED_TOKEN": SECRET}
    env.pop("TICKETS_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "the HTTP MCP server exited"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


def test_the_model_calls_a_tool_over_streamable_http_with_a_bearer_token(
    tmp_path: Path, stub_llm: StubLLM, http_server: str
) -> None:
    servers = {
        "search": {
            "url": http_server,
            "headers": {"Authorization": "Bearer ${MCP_TICKETS_HANDLE}"},
            "timeout": 20,
        }
    }
    path = _workflow(tmp_path, stub_llm, ["mcp:search/whoami", "mcp:search/leak"], servers)
    stub_llm.script(Reply.tool_calls([("whoami", {})]), _final())
    result = run_workflow(path, {"ticket": "T-1"}, env=ENV)
    assert result.status is RunStatus.SUCCESS, result.error
    assert _tool_messages(stub_llm.requests[1]) == ["authorized"]
    assert result.records[0].tool_calls[0].attributes["mcp.server"] == "search"


def test_a_stalled_http_call_fails_the_node_at_the_timeout(
    tmp_path: Path, stub_llm: StubLLM, http_server: str
) -> None:
    servers = {"search": {"url": http_server, "timeout": 0.5}}
    path = _workflow(tmp_path, stub_llm, ["mcp:search/stall"], servers)
    stub_llm.script(Reply.tool_calls([("stall", {})]))
    result = run_workflow(path, {"ticket": "T-1"}, env=ENV)
    assert result.status is RunStatus.FAILED
    assert "mcp:search/stall: no answer within 0.5 s" in result.error


# -- secrets -----------------------------------------------------------------------------------


def test_secrets_from_variables_appear_nowhere_in_the_store(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    variable = "${MCP_TICKETS_HANDLE}"
    servers = {
        "tickets": _stdio(
            env={"TICKETS_TOKEN": variable, "EXPECTED_TOKEN": variable},
            args=[str(SERVER), f"--token={variable}"],  # in its argv too (the script ignores it)
            timeout=20,
        )
    }
    mlflow = {
        "enabled": True,
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "async_logging": False,
        "artifact_level": "full",
    }
    tools = ["mcp:tickets/whoami", "mcp:tickets/leak"]
    path = _workflow(tmp_path, stub_llm, tools, servers, observability={"mlflow": mlflow})
    stub_llm.script(Reply.tool_calls([("whoami", {}), ("leak", {})]), _final())
    result = run_workflow(path, {"ticket": "T-1"}, env=ENV)
    assert result.status is RunStatus.SUCCESS, result.error
    whoami, leak = result.records[0].tool_calls
    assert whoami.result == "authorized"  # the server got it
    assert leak.result == "my token is [REDACTED]"  # and the careless tool's answer is masked
    assert result.trace_id
    from mlflow.tracking import MlflowClient

    spans = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_trace(result.trace_id).data
    tool_spans = [s for s in spans.spans if s.span_type == "TOOL"]
    assert {s.attributes.get("mcp.server") for s in tool_spans} == {"tickets"}
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written) and any("spool" in p.name for p in written)
    contents = {str(p): p.read_bytes() for p in written}
    assert any(b"my token is [REDACTED]" in data for data in contents.values())  # spans are read
    assert [name for name, data in contents.items() if SECRET.encode() in data] == []


def test_an_unset_variable_is_a_setup_error_naming_it(tmp_path: Path, stub_llm: StubLLM) -> None:
    servers = {"tickets": _stdio(env={"TICKETS_TOKEN": "${MCP_NOT_SET_HERE}"})}
    path = _workflow(tmp_path, stub_llm, ["mcp:tickets/whoami"], servers)
    with pytest.raises(SetupError) as caught:
        prepare_workflow(path, env={"OPENAI_API_KEY": "sk-test"})
    assert str(caught.value) == (
        "MCP server 'tickets': environment variable MCP_NOT_SET_HERE is not set "
        "(config.tools.mcp_servers.tickets.env.TICKETS_TOKEN) (nodes: triage)"
    )
    assert stub_llm.calls == 0


# -- validate ----------------------------------------------------------------------------------


def _lines(text: str, path: Path) -> list[str]:
    return [line.replace(str(path), "wf.yaml") for line in text.splitlines()]


def _at(path: Path, needle: str, after: str = "") -> tuple[int, int]:
    """Line and column (1-based) of the first ``needle`` in the file on a line after the first
    that holds ``after``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) + bool(after)
    for number, line in enumerate(lines[start:], start + 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


def test_validate_checks_names_and_servers_offline(tmp_path: Path, stub_llm: StubLLM) -> None:
    servers = {"tickets": _stdio(), "search": {"url": "http://127.0.0.1:1/mcp", "args": ["x"]}}
    tools = ["mcp:tikets/lookup_ticket", "mcp:tickets", {"name": "mcp:nope/x"}]
    path = _workflow(tmp_path, stub_llm, tools, servers)
    workflow, diagnostics = validate_workflow(path)
    assert workflow is None
    found = [(d.line, d.path, d.message, d.suggestion) for d in diagnostics]
    assert found == [
        (
            _at(path, "args:", after="search:")[0],
            "config.tools.mcp_servers.search.args",
            "unknown key 'args'",
            None,
        ),
        (
            _at(path, "mcp:tikets/")[0],
            "nodes[0].tools[0]",
            "MCP tool 'mcp:tikets/lookup_ticket': no server 'tikets' in "
            "config.tools.mcp_servers (declared: tickets, search)",
            "tickets",
        ),
        (
            _at(path, "mcp:tickets", after="mcp:tikets/")[0],
            "nodes[0].tools[1]",
            "MCP tool 'mcp:tickets' must be written mcp:SERVER/TOOL",
            None,
        ),
        (
            _at(path, "mcp:nope/x")[0],
            "nodes[0].tools[2]",
            "MCP tool 'mcp:nope/x': no server 'nope' in config.tools.mcp_servers "
            "(declared: tickets, search)",
            None,
        ),
    ]


def test_validate_resolve_starts_the_servers_and_checks_the_tools(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    servers = {
        "tickets": _stdio(),
        "broken": {"command": sys.executable, "args": ["-c", "import sys; sys.exit('no db')"]},
    }
    tools = [
        "mcp:tickets/lookup_tiket",
        {"name": "mcp:tickets/lookup_ticket", "config": {"ticket": "T-1"}},
        "mcp:broken/anything",
        "mcp:tickets/whoami",
    ]
    path = _workflow(tmp_path, stub_llm, tools, servers)
    offline = CliRunner().invoke(app, ["validate", str(path)])
    assert offline.exit_code == 0, offline.output
    result = CliRunner().invoke(app, ["validate", "--resolve", str(path)])
    assert result.exit_code == 1
    broken, missing, config = (
        _at(path, n) for n in ("broken:", "mcp:tickets/lookup_t", "ticket: T-1")
    )
    assert _lines(result.output, path) == [
        f"wf.yaml:{broken[0]}:{broken[1]}: error: config.tools.mcp_servers.broken: MCP server "
        "'broken' could not start: it closed the connection before it answered; its stderr "
        "ends: no db",
        f"wf.yaml:{missing[0]}:{missing[1]}: error: nodes[0].tools[0]: MCP server 'tickets' has "
        "no tool 'lookup_tiket'; its tools: add, die, fail, leak, lookup_ticket, pid, stall, "
        "whoami (did you mean 'lookup_ticket'?)",
        f"wf.yaml:{config[0]}:{config[1]}: error: nodes[0].tools[1].config: "
        "mcp:tickets/lookup_ticket: config key 'ticket' is not an argument of the tool "
        "(arguments: ticket_id)",
        "✗ wf.yaml: 3 errors",
    ]
    as_json = CliRunner().invoke(app, ["validate", "--resolve", "-f", "json", str(path)])
    codes = [d["code"] for d in json.loads(as_json.output)[0]["diagnostics"]]
    assert codes == ["mcp", "mcp", "mcp"]
