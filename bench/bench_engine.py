"""Engine overhead per node against a hand-written LangGraph graph making the same calls.

    python bench/bench_engine.py [--runs 300] [--nodes 3]

Both sides run a linear graph of N nodes; each node sends the same request (same messages, same
`final_answer` tool schema) through `langchain-openai` to the same OpenAI-compatible stub server on
127.0.0.1, and validates the reply with pydantic. The baseline is the minimum a person would write
by hand; ours adds templates, budgets, pricing, records and retries. Printed: median milliseconds
per run for each, their ratio (target <= 1.10x) and our overhead per node.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stub_llm import StubLLM  # noqa: E402

TARGET_RATIO = 1.10


def _workflow(nodes: int, base_url: str) -> dict[str, Any]:
    ids = [f"step{i}" for i in range(nodes)]
    return {
        "schema_version": "1.0",
        "flow": {"name": "bench"},
        "config": {"llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": base_url}},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": i, "prompt": f"Write part {i} about {{topic}}", "outputs": [f"out_{i}"]}
            for i in ids
        ],
        "edges": [
            {"from": a, "to": b} for a, b in zip(["START", *ids], [*ids, "END"], strict=True)
        ],
    }


def _baseline(nodes: int, base_url: str) -> Any:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph
    from pydantic import ConfigDict, create_model

    model = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="x", max_retries=0)
    state_type = TypedDict(  # type: ignore[misc]
        "State", {"topic": str, **{f"out_step{i}": str for i in range(nodes)}}, total=False
    )
    graph = StateGraph(state_type)

    def make(index: int) -> Any:
        # The same request ours sends: system prompt, tool name, description and field schema.
        answer = create_model(
            "final_answer",
            __config__=ConfigDict(extra="forbid"),
            **{f"out_step{index}": (str, ...)},
        )
        answer.__doc__ = f"The result of step 'step{index}'."
        system = (
            f"You are step 'step{index}' of the workflow 'bench'. "
            "Give your result by calling the `final_answer` tool."
        )
        bound = model.bind_tools([answer], tool_choice="final_answer")

        async def node(state: dict[str, Any]) -> dict[str, Any]:
            prompt = f"Write part step{index} about {state['topic']}"
            reply = await bound.ainvoke([SystemMessage(system), HumanMessage(prompt)])
            return answer.model_validate(reply.tool_calls[0]["args"]).model_dump()

        return node

    previous = START
    for i in range(nodes):
        graph.add_node(f"step{i}", make(i))
        graph.add_edge(previous, f"step{i}")
        previous = f"step{i}"
    graph.add_edge(previous, END)
    return graph.compile()


async def _time(run: Any, runs: int) -> list[float]:
    for _ in range(10):  # warm up connections and caches
        await run()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - started)
    return samples


async def _measure(runs: int, nodes: int) -> tuple[list[float], list[float]]:
    from configurable_agents import load_workflow
    from configurable_agents.engine import prepare_workflow

    with StubLLM() as stub:
        baseline = _baseline(nodes, stub.base_url)
        prepared = prepare_workflow(load_workflow(_workflow(nodes, stub.base_url)), env={})

        async def ours() -> None:
            result = await prepared.arun({"topic": "bees"})
            assert result.status.value == "success", result.error

        async def theirs() -> None:
            await baseline.ainvoke({"topic": "bees"})

        ours_samples: list[float] = []
        base_samples: list[float] = []
        for _ in range(3):  # interleave to spread machine noise over both
            base_samples += await _time(theirs, runs // 3)
            ours_samples += await _time(ours, runs // 3)
    return ours_samples, base_samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    ours, base = asyncio.run(_measure(args.runs, args.nodes))
    ours_ms, base_ms = statistics.median(ours) * 1000, statistics.median(base) * 1000
    ratio = ours_ms / base_ms
    print(f"runs per side: {len(ours)}, nodes per run: {args.nodes}")
    print(f"hand-written LangGraph: {base_ms:8.2f} ms/run (median)")
    print(f"configurable-agents:    {ours_ms:8.2f} ms/run (median)")
    print(f"overhead per node:      {(ours_ms - base_ms) / args.nodes:8.2f} ms")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"ratio: {ratio:.3f}x (target <= {TARGET_RATIO:.2f}x): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
