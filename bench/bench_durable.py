"""Durable runs: what checkpoints cost per node, and how soon a live listener hears of a node.

    python bench/bench_durable.py [--nodes 20] [--runs 30] [--rounds 5] [--postgres URI]

A chain of ``--nodes`` nodes on the offline `mock` provider runs ``--runs`` times without
checkpoints and ``--runs`` times with them (SQLite store in a temporary folder; with
``--postgres``, a PostgreSQL store too), alternating ABBA over ``--rounds`` so that drift hits
both. Printed: median milliseconds per run of each mode, the checkpointed/plain ratio, and the
overhead per node execution, ``(checkpointed - plain) / nodes``, against the target (<= 2 ms per
node on SQLite). Every checkpointed run opens the store, saves a checkpoint after each node and
notes its spend in the ledger beside it, as `run` does.

Then the live events: for each node of a plain run, the time from the node's start (the
event's ``at``) to the moment an in-process ``on_event`` listener has its ``node_started``
event, median and max in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

TARGET_MS_PER_NODE = 2.0


def _workflow(folder: Path, nodes: int, store: str | None) -> Path:
    ids = [f"n{i}" for i in range(nodes)]
    data: dict[str, Any] = {
        "schema_version": "1.0",
        "flow": {"name": "durable_bench"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": i, "prompt": f"{i} about {{topic}}", "outputs": [f"out_{i}"]} for i in ids
        ],
        "edges": [
            {"from": a, "to": b} for a, b in zip(["START", *ids], [*ids, "END"], strict=True)
        ],
        "config": {"llm": {"provider": "mock"}},
    }
    if store is not None:
        data["config"]["execution"] = {"checkpoints": {"enabled": True, "store": store}}
    path = folder / f"wf_{'plain' if store is None else store.split(':')[0]}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def _time_runs(prepared: Any, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await prepared.arun({"topic": "bees"})
        times.append((time.perf_counter() - started) * 1000)
        assert result.status.value == "success", result.error
    return times


async def _checkpoints(args: argparse.Namespace, folder: Path) -> None:
    from configurable_agents import prepare_workflow

    stores = {"sqlite": f"sqlite:///{folder / 'cp.db'}"}
    if args.postgres:
        stores["postgresql"] = args.postgres
    plain = prepare_workflow(_workflow(folder, args.nodes, None), trace=False)
    durable = {
        name: prepare_workflow(_workflow(folder, args.nodes, uri), trace=False)
        for name, uri in stores.items()
    }
    await _time_runs(plain, 3)  # warm up imports, models and the stores' tables
    for prepared in durable.values():
        await _time_runs(prepared, 3)
    for name, prepared in durable.items():
        base: list[float] = []
        with_cp: list[float] = []
        for round_ in range(args.rounds):
            order = [(plain, base), (prepared, with_cp)]
            for target, sink in order if round_ % 2 == 0 else reversed(order):
                sink.extend(await _time_runs(target, args.runs))
        plain_ms, cp_ms = statistics.median(base), statistics.median(with_cp)
        per_node = (cp_ms - plain_ms) / args.nodes
        verdict = "ok" if name != "sqlite" or per_node <= TARGET_MS_PER_NODE else "OVER TARGET"
        print(f"{name:10} plain {plain_ms:8.2f} ms/run  checkpointed {cp_ms:8.2f} ms/run  "
              f"ratio {cp_ms / plain_ms:5.2f}x  overhead {per_node:6.3f} ms/node "
              f"(target <= {TARGET_MS_PER_NODE} ms on SQLite: {verdict})")  # fmt: skip


async def _events(args: argparse.Namespace, folder: Path) -> None:
    from configurable_agents import prepare_workflow

    prepared = prepare_workflow(_workflow(folder, args.nodes, None), trace=False)
    heard: list[float] = []

    def listen(event: Any) -> None:
        if event.type == "node_started":
            heard.append((time.time() - event.at) * 1e6)

    for _ in range(args.runs):
        await prepared.arun({"topic": "bees"}, on_event=listen)
    print(
        f"events     node start -> node_started heard in-process: median "
        f"{statistics.median(heard):6.1f} us, max {max(heard):6.1f} us over {len(heard)} nodes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--postgres", metavar="URI", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{args.nodes}-node chain on the mock provider, {args.runs} runs x {args.rounds} "
              f"rounds per mode (ABBA), python {sys.version.split()[0]}")  # fmt: skip
        asyncio.run(_checkpoints(args, Path(folder)))
        asyncio.run(_events(args, Path(folder)))


if __name__ == "__main__":
    main()
