"""Tools: settings validation, the built-in tools (against local servers only) and custom tools."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from configurable_agents import validate_workflow
from configurable_agents.config.checks import BUILTIN_TOOLS
from configurable_agents.config.schema import ToolRef
from configurable_agents.config.settings import ToolsConfig
from configurable_agents.config.tool_settings import validate_tool_config
from configurable_agents.tools import BUILTIN_TOOL_CONFIGS, ToolError, build_tools
from configurable_agents.tools.calculator import evaluate

NO_KEYS: dict[str, str] = {}


def tool(name: str, config: dict[str, Any] | None = None, env: dict[str, str] = NO_KEYS, **kw: Any):
    """Build one built-in tool."""
    return build_tools([ToolRef(name=name, config=config or {}, **kw)], ToolsConfig(), env=env)[0]


# -- local HTTP server -----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ok":
            self._reply(200, "héllo".encode())
        elif self.path == "/big":
            self._reply(200, b"x" * 50_000)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._reply(404, b"not found")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        if self.path == "/serper":
            reply = {
                "organic": [
                    {
                        "title": f"S{i}",
                        "link": f"https://s{i}.test",
                        "snippet": f"s{i}",
                        "position": i,
                    }
                    for i in range(6)
                ]
            }
        elif self.path == "/tavily":
            reply = {
                "results": [
                    {"title": f"T{i}", "url": f"https://t{i}.test", "content": f"t{i}", "score": 1}
                    for i in range(6)
                ]
            }
        else:
            self._reply(500, b"boom")
            return
        self._reply(200, json.dumps(reply).encode(), "application/json")


class _Server(ThreadingHTTPServer):
    requests: list[tuple[str, dict[str, str], Any]]


@pytest.fixture(scope="module")
def _running_server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def server(_running_server: _Server) -> _Server:
    """The local server, with no requests recorded yet."""
    _running_server.requests.clear()
    return _running_server


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_port}"


# -- settings ---------------------------------------------------------------------------------


def test_builtin_tools_have_one_source_of_truth() -> None:
    assert tuple(BUILTIN_TOOL_CONFIGS) == BUILTIN_TOOLS
    assert set(BUILTIN_TOOLS) >= {"web_search", "serper_search", "http_get", "calculator"}


def test_validate_tool_config_reports_unknown_keys_and_types() -> None:
    assert validate_tool_config("http_get", {"timeout": 5, "max_bytes": 10}) == []
    [(path, message)] = validate_tool_config("http_get", {"timout": 5})
    assert path == ("timout",)
    assert "timeout, max_bytes, allowed_hosts" in message
    [(path, message)] = validate_tool_config("web_search", {"max_results": "3"})
    assert path == ("max_results",) and "integer" in message
    assert validate_tool_config("web_search", {"max_results": 21})[0][0] == ("max_results",)
    assert validate_tool_config("write_file", {"overwrite": "yes"})[0][0] == ("overwrite",)
    assert validate_tool_config("calculator", {"x": 1}) == [
        ((), "calculator takes no config; remove it")
    ]


def test_workflow_check_locates_tool_config_errors(tmp_path: Path) -> None:
    source = tmp_path / "flow.yaml"
    source.write_text(
        "schema_version: '1.0'\n"
        "flow: {name: t}\n"
        "nodes:\n"
        "  - id: a\n"
        "    prompt: hi\n"
        "    outputs: [answer]\n"
        "    tools:\n"
        "      - calculator\n"
        "      - name: http_get\n"
        "        config: {timout: 5}\n"
        "edges: [{from: START, to: a}, {from: a, to: END}]\n"
    )
    workflow, diagnostics = validate_workflow(source)
    assert workflow is None
    [error] = diagnostics
    assert error.path == "nodes[0].tools[1].config.timout"
    assert error.suggestion == "timeout"
    assert error.line == 10


def test_workflow_check_on_a_mapping() -> None:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "t"},
        "nodes": [
            {
                "id": "a",
                "prompt": "hi",
                "outputs": ["answer"],
                "tools": [{"name": "http_get", "config": {"timout": 5}}],
            }
        ],
        "edges": [{"from": "START", "to": "a"}, {"from": "a", "to": "END"}],
    }
    _, diagnostics = validate_workflow(data)
    assert [(d.path, d.suggestion) for d in diagnostics] == [
        ("nodes[0].tools[0].config.timout", "timeout")
    ]
    data["nodes"][0]["tools"] = [{"name": "http_get", "config": {"timeout": 5}}]
    workflow, diagnostics = validate_workflow(data)
    assert workflow is not None and diagnostics == []


@pytest.mark.parametrize(
    "module",
    [
        "configurable_agents.config.tool_settings",
        "configurable_agents.tools",
        "configurable_agents",
    ],
)
def test_imports_stay_light(module: str) -> None:
    code = (
        f"import sys, {module}, configurable_agents.config;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'langchain_core', 'httpx'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_build_refuses_bad_config_unknown_tools_and_duplicates() -> None:
    with pytest.raises(ToolError, match=r"http_get: config\.timout: unknown key"):
        tool("http_get", {"timout": 5})
    with pytest.raises(ToolError, match="unknown tool 'calculater'"):
        tool("calculater")
    with pytest.raises(ToolError, match="both called 'calculator'"):
        build_tools(["calculator", "calculator"], ToolsConfig())


# -- http_get ---------------------------------------------------------------------------------


LOCAL = {"allowed_hosts": ["127.0.0.1", "localhost"]}
"""The test server is on loopback, refused unless named (see tests/test_tools_fetch_guard.py)."""


def test_http_get_reads_a_page(server: _Server) -> None:
    assert tool("http_get", LOCAL).invoke({"url": base(server) + "/ok"}) == "héllo"


def test_http_get_reports_http_errors(server: _Server) -> None:
    with pytest.raises(ToolError, match="returned HTTP 404"):
        tool("http_get", LOCAL).invoke({"url": base(server) + "/nothing"})


def test_http_get_truncates_at_max_bytes(server: _Server) -> None:
    text = tool("http_get", {**LOCAL, "max_bytes": 100}).invoke({"url": base(server) + "/big"})
    first, note = text.split("\n", 1)
    assert first == "x" * 100
    assert "truncated" in note and "100 bytes" in note


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "127.0.0.1/ok"])
def test_http_get_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ToolError, match="only http and https"):
        tool("http_get").invoke({"url": url})


def test_http_get_allowed_hosts(server: _Server) -> None:
    fetch = tool("http_get", {"allowed_hosts": ["127.0.0.1"]})
    assert fetch.invoke({"url": base(server) + "/ok"}) == "héllo"
    with pytest.raises(ToolError, match="'localhost' is not in allowed_hosts"):
        fetch.invoke({"url": f"http://localhost:{server.server_port}/ok"})
    with pytest.raises(ToolError, match="'localhost' is not in allowed_hosts"):
        fetch.invoke({"url": base(server) + "/redirect"})  # the redirect is checked too
    assert tool("http_get", LOCAL).invoke({"url": base(server) + "/redirect"}) == "héllo"


# -- web_search -------------------------------------------------------------------------------


def test_web_search_serper(server: _Server) -> None:
    config = {"endpoint": base(server) + "/serper", "max_results": 3}
    search = tool("web_search", config, env={"SERPER_API_KEY": "sk", "TAVILY_API_KEY": "tk"})
    results = json.loads(search.invoke({"query": "llm agents"}))
    assert results == [
        {"title": f"S{i}", "url": f"https://s{i}.test", "snippet": f"s{i}"} for i in range(3)
    ]
    [(path, headers, body)] = server.requests
    assert path == "/serper"
    assert headers["X-API-KEY"] == "sk"
    assert body == {"q": "llm agents", "num": 3}


def test_web_search_tavily(server: _Server) -> None:
    config = {"endpoint": base(server) + "/tavily", "max_results": 2}
    search = tool("web_search", config, env={"TAVILY_API_KEY": "tk"})
    results = json.loads(search.invoke({"query": "q"}))
    assert results == [{"title": "T0", "url": "https://t0.test", "snippet": "t0"}, results[1]]
    assert len(results) == 2
    [(_, headers, body)] = server.requests
    assert headers["Authorization"] == "Bearer tk"
    assert body == {"query": "q", "max_results": 2}


def test_serper_search_is_an_alias(server: _Server) -> None:
    search = tool(
        "serper_search", {"endpoint": base(server) + "/serper"}, env={"SERPER_API_KEY": "k"}
    )
    assert search.name == "serper_search"
    assert len(json.loads(search.invoke({"query": "q"}))) == 5


def test_web_search_provider_errors_are_tool_errors(server: _Server) -> None:
    search = tool("web_search", {"endpoint": base(server) + "/down"}, env={"SERPER_API_KEY": "k"})
    with pytest.raises(ToolError, match="serper returned HTTP 500"):
        search.invoke({"query": "q"})


def test_web_search_without_key_fails_at_build_time() -> None:
    with pytest.raises(ToolError, match="set SERPER_API_KEY or TAVILY_API_KEY"):
        tool("web_search", env={"SERPER_API_KEY": " "})
    with pytest.raises(ToolError, match="set SERPER_API_KEY in"):
        tool("web_search", {"provider": "serper"}, env={"TAVILY_API_KEY": "k"})


# -- files ------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    return tmp_path / "root"


def test_write_then_read(root: Path) -> None:
    write = tool("write_file", {"root": str(root)})
    assert write.invoke({"path": "a/b/c.txt", "content": "hi ✓"}) == "wrote 6 bytes to a/b/c.txt"
    assert (root / "a" / "b" / "c.txt").read_text() == "hi ✓"
    read = tool("read_file", {"root": str(root)})
    assert read.invoke({"path": "a/b/c.txt"}) == "hi ✓"
    assert read.invoke({"path": str(root / "a" / "b" / "c.txt")}) == "hi ✓"  # absolute, inside


@pytest.mark.parametrize("name", ["read_file", "write_file"])
@pytest.mark.parametrize("path", ["../secret.txt", "a/../../secret.txt", "{tmp}/secret.txt"])
def test_files_outside_root_are_refused(root: Path, name: str, path: str) -> None:
    args = {"path": path.format(tmp=root.parent)}
    if name == "write_file":
        args["content"] = "pwned"
    with pytest.raises(ToolError, match="outside the allowed directory"):
        tool(name, {"root": str(root)}).invoke(args)
    assert (root.parent / "secret.txt").read_text() == "secret"


def test_symlinks_out_of_root_are_refused(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    (root / "out").symlink_to(root.parent, target_is_directory=True)
    with pytest.raises(ToolError, match="outside"):
        tool("read_file", {"root": str(root)}).invoke({"path": "link.txt"})
    with pytest.raises(ToolError, match="outside"):
        tool("write_file", {"root": str(root)}).invoke({"path": "out/new.txt", "content": "x"})
    assert not (root.parent / "new.txt").exists()


def test_file_size_caps_and_overwrite(root: Path) -> None:
    (root / "big.txt").write_text("y" * 50)
    text = tool("read_file", {"root": str(root), "max_bytes": 10}).invoke({"path": "big.txt"})
    assert text.startswith("y" * 10 + "\n[truncated")
    with pytest.raises(ToolError, match="11 bytes; the limit is 10"):
        tool("write_file", {"root": str(root), "max_bytes": 10}).invoke(
            {"path": "n.txt", "content": "z" * 11}
        )
    keep = tool("write_file", {"root": str(root), "overwrite": False})
    with pytest.raises(ToolError, match="exists and overwrite is off"):
        keep.invoke({"path": "big.txt", "content": "new"})
    assert (root / "big.txt").read_text() == "y" * 50


# -- calculator -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 // 2 + 7 % 2", "4"),
        ("-2 ** 2", "-4"),
        ("+3 - -2", "5"),
        ("10 / 4", "2.5"),
        ("2 ** 0.5", "1.4142135623730951"),
        ("2 ** 100", str(2**100)),
        ("1.5e3 / 3", "500"),
    ],
)
def test_calculator(expression: str, expected: str) -> None:
    assert tool("calculator").invoke({"expression": expression}) == expected


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("__import__('os').system('true')", "function call"),
        ("x + 1", "the name 'x'"),
        ("abs(-1)", "function call"),
        ("(1).real", "attribute"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1 << 3", "operator LShift"),
        ("[1, 2]", "List"),
        ("1 +", "not an arithmetic expression"),
        ("1 / 0", "division by zero"),
        ("(-8) ** 0.5", "not a real number"),
        ("10.0 ** 400", "cannot compute"),
        ("2 ** 10 ** 10", "exceed 4096 bits"),
        ("(10 ** 1000) * (10 ** 1000)", "exceed 4096 bits"),
        ("9" * 2000, "longer than 1000"),
    ],
)
def test_calculator_refuses(expression: str, problem: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ToolError, match=problem):
        evaluate(expression)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(
    "expression",
    [
        "1e308 * 10",
        "-1e308 * 10",
        "1e308 + 1e308",
        "1e309",
        "1e999 - 1e999",
        "1e308 * 10 - 1e308 * 10",
        "2 ** 1023 * 2.0",
        "1e-320 / 1e-320 * 1e308 * 1e308",
    ],
)
def test_calculator_never_answers_inf_or_nan(expression: str) -> None:
    with pytest.raises(ToolError, match=r"calculator: .*(too large|not a number)"):
        evaluate(expression)
    # the model reads the error (with on_error: continue), never a bare "inf" or "nan"
    with pytest.raises(ToolError, match="calculator: "):
        tool("calculator").invoke({"expression": expression})


# -- custom tools and on_error ----------------------------------------------------------------

CUSTOM = '''
def lookup(key: str, times: int = 1, table: str = "default") -> str:
    """Look a key up in a table.

    Args:
        key: The key to look up.
        times: How often to repeat it.
        table: Which table.
    """
    return f"{table}:{key * times}"


def broken(x: int) -> int:
    """Always fails."""
    raise ValueError("bad x")


NOT_CALLABLE = 3
'''


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "ca_custom_tools"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "things.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield "ca_custom_tools.things"
    for name in ("ca_custom_tools", "ca_custom_tools.things"):
        sys.modules.pop(name, None)


def test_custom_tool_from_allowed_module(custom_module: str) -> None:
    ref = ToolRef(name=f"{custom_module}:lookup", config={"table": "prices"})
    [lookup] = build_tools([ref], ToolsConfig(allowed_modules=["ca_custom_tools"]))
    assert lookup.name == "lookup"
    assert lookup.description == "Look a key up in a table."
    assert set(lookup.args) == {"key", "times"}  # the bound config is hidden from the model
    assert lookup.args["key"]["description"] == "The key to look up."
    assert lookup.invoke({"key": "ab", "times": 2}) == "prices:abab"
    assert lookup.invoke({"key": "a", "table": "evil"}) == "prices:a"
    assert lookup.metadata == {"tool": ref.name, "on_error": "fail"}


@pytest.mark.parametrize(
    ("name", "allowed", "problem"),
    [
        ("ca_custom_tools.things:lookup", ["ca_custom"], "not in config.tools.allowed_modules"),
        ("ca_custom_tools.things:lookup", [], "not in config.tools.allowed_modules"),
        ("ca_custom_tools.things:missing", ["ca_custom_tools"], "has no attribute 'missing'"),
        ("ca_custom_tools.things:NOT_CALLABLE", ["ca_custom_tools"], "is not callable"),
        ("ca_custom_tools.nothere:f", ["ca_custom_tools"], "cannot import module"),
        ("ca_custom_tools.things:", ["ca_custom_tools"], "module:function"),
    ],
)
def test_custom_tool_refused(
    custom_module: str, name: str, allowed: list[str], problem: str
) -> None:
    with pytest.raises(ToolError, match=problem):
        build_tools([name], ToolsConfig(allowed_modules=allowed))
    if "allowed_modules" in problem:
        assert custom_module not in sys.modules  # refused before importing anything


def test_custom_tool_config_must_name_parameters(custom_module: str) -> None:
    ref = ToolRef(name=f"{custom_module}:lookup", config={"tabel": "x"})
    with pytest.raises(ToolError, match="config key 'tabel' is not a parameter"):
        build_tools([ref], ToolsConfig(allowed_modules=["ca_custom_tools"]))


def test_tools_raise_tool_errors_and_carry_on_error(custom_module: str) -> None:
    refs = [
        ToolRef(name=f"{custom_module}:broken", on_error="continue"),
        ToolRef(name="calculator"),
    ]
    broken, calculator = build_tools(refs, ToolsConfig(allowed_modules=["ca_custom_tools"]))
    with pytest.raises(ToolError, match="broken failed: ValueError: bad x"):
        broken.invoke({"x": 1})
    with pytest.raises(ToolError, match="calculator: division by zero"):
        calculator.invoke({"expression": "1/0"})
    assert broken.metadata == {"tool": f"{custom_module}:broken", "on_error": "continue"}
    assert calculator.metadata == {"tool": "calculator", "on_error": "fail"}


async def _ainvoke(tool: Any, args: dict[str, Any]) -> Any:
    return await tool.ainvoke(args)


def test_async_invocation_raises_tool_errors_too(custom_module: str) -> None:
    [broken] = build_tools(
        [f"{custom_module}:broken"], ToolsConfig(allowed_modules=["ca_custom_tools"])
    )
    with pytest.raises(ToolError, match="bad x"):
        asyncio.run(_ainvoke(broken, {"x": 1}))
    assert asyncio.run(_ainvoke(tool("calculator"), {"expression": "6*7"})) == "42"
