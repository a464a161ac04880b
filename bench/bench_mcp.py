"""Per-call overhead of an MCP tool over a local stdio server against the same function as a
custom tool.

    python bench/bench_mcp.py [--calls 500] [--run-calls 100]

One prepared workflow has a node with two tools that run the same Python function,
``tests.mcp_server:add``: as a custom tool (``module:function``, the module allow-listed) and as
``mcp:tickets/add`` on tests/mcp_server.py, started on stdio with this interpreter. Measured, in
the same process and the same prepared workflow:

- tool calls as the engine makes them (``await tool.ainvoke(args)`` on the prepared tools),
  ``--calls`` of each, interleaved in rounds so that machine noise falls on both;
- a real run against the stub model (tests/stub_llm.py) asking for ``--run-calls`` calls of each
  in one reply, timed by the engine's own tool-call records (what a trace shows).

Printed: median and mean per call of each tool, the MCP tool's overhead per call (median
difference) and the ratio of the medians, then the same from the run's records, how long
preparing took (starting the server and listing its tools, once per prepared workflow), and for
scale the SDK's own client calling the tool directly (``mcp.Client.call_tool`` on a connection of
its own, in the calling event loop): what the protocol and the server cost without us.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stub_llm import Reply, StubLLM  # noqa: E402

SERVER = ROOT / "tests" / "mcp_server.py"
ARGS = {"a": 20, "b": 22}


def _workflow(base_url: str, max_calls: int) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "flow": {"name": "bench_mcp"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": base_url},
            "tools": {
                "allowed_modules": ["tests.mcp_server"],
                "mcp_servers": {"tickets": {"command": sys.executable, "args": [str(SERVER)]}},
            },
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {
                "id": "sum",
                "prompt": "Add numbers about {topic}",
                "outputs": ["total"],
                "tools": ["tests.mcp_server:add", "mcp:tickets/add"],
                "max_tool_calls": 2 * max_calls + 2,
            }
        ],
        "edges": [{"from": "START", "to": "sum"}, {"from": "sum", "to": "END"}],
    }


async def _tool_calls(custom: Any, mcp: Any, calls: int) -> tuple[list[float], list[float]]:
    """Seconds per call of each tool, interleaved in rounds."""
    for _ in range(20):  # warm up
        assert str(await custom.ainvoke(ARGS)) == "42"
        assert str(await mcp.ainvoke(ARGS)) == "42"
    samples: dict[str, list[float]] = {"custom": [], "mcp": []}
    rounds = 10
    for _ in range(rounds):
        for name, tool in (("custom", custom), ("mcp", mcp)):
            for _ in range(calls // rounds):
                started = time.perf_counter()
                await tool.ainvoke(ARGS)
                samples[name].append(time.perf_counter() - started)
    return samples["custom"], samples["mcp"]


async def _in_a_run(
    prepared: Any, stub: StubLLM, calls: int, names: tuple[str, str]
) -> tuple[list[float], list[float]]:
    """Seconds per call of each tool as the engine records them in one run."""
    custom_name, mcp_name = names
    stub.script(
        Reply.tool_calls([(custom_name, ARGS)] * calls + [(mcp_name, ARGS)] * calls),
        Reply.tool_calls([("final_answer", {"total": "42"})]),
    )
    result = await prepared.arun({"topic": "bench"})
    assert result.status.value == "success", result.error
    records = result.records[0].tool_calls
    custom = [r.duration_s for r in records if r.name == custom_name and r.result == "42"]
    mcp = [r.duration_s for r in records if r.name == mcp_name and r.result == "42"]
    assert len(custom) == len(mcp) == calls, records[-1]
    return custom, mcp


async def _direct(calls: int) -> list[float]:
    """Seconds per call of the SDK's client, on its own connection to another server process."""
    from mcp import Client, StdioServerParameters

    parameters = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
    async with Client(parameters, cache=None) as client:
        for _ in range(20):
            await client.call_tool("add", ARGS)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool("add", ARGS)
            samples.append(time.perf_counter() - started)
    return samples


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.3f} ms"


def _report(title: str, custom: list[float], mcp: list[float]) -> None:
    c_median, m_median = statistics.median(custom), statistics.median(mcp)
    print(f"{title} ({len(custom)} calls of each)")
    print(f"  custom tool tests.mcp_server:add   median {_us(c_median)}   mean "
          f"{_us(statistics.fmean(custom))}")  # fmt: skip
    print(f"  MCP tool mcp:tickets/add (stdio)   median {_us(m_median)}   mean "
          f"{_us(statistics.fmean(mcp))}")  # fmt: skip
    print(f"  MCP overhead per call              median {_us(m_median - c_median)}   "
          f"ratio {m_median / c_median:,.1f}x")  # fmt: skip


async def _main(calls: int, run_calls: int) -> None:
    from configurable_agents import load_workflow
    from configurable_agents.engine import prepare_workflow

    with StubLLM() as stub:
        workflow = load_workflow(_workflow(stub.base_url, run_calls))
        started = time.perf_counter()
        prepared = prepare_workflow(workflow, env={"OPENAI_API_KEY": "x"})
        prepare_s = time.perf_counter() - started
        async with prepared:
            custom, mcp = prepared.plans["sum"].tools
            assert mcp.metadata["tool"] == "mcp:tickets/add", mcp.metadata
            _report("tool calls", *await _tool_calls(custom, mcp, calls))
            _report(
                "in a run", *await _in_a_run(prepared, stub, run_calls, (custom.name, mcp.name))
            )
    print(f"prepare (start the server and list its tools, once): {prepare_s * 1e3:.0f} ms")
    direct = await _direct(calls)
    median, mean = _us(statistics.median(direct)).strip(), _us(statistics.fmean(direct)).strip()
    print(f"for scale, the SDK's client calling add directly: median {median}, mean {mean}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="tool calls of each, direct")
    parser.add_argument("--run-calls", type=int, default=100, help="calls of each in the run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, MCP server: {SERVER.relative_to(ROOT)} on stdio")
    asyncio.run(_main(args.calls, args.run_calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
