"""Durable runs: what checkpoints cost per node, and how soon a live listener hears of a node.

    python bench/bench_durable.py [--nodes 20] [--runs 30] [--rounds 4] [--postgres URI]
                                  [--serve-runs 20] [--no-serve]

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

Then the same end to end, over HTTP: the chain is served by ``configurable-agents serve`` in a
child process on a free 127.0.0.1 port (as ``bench/bench_serve.py`` starts it: ``--llm mock``,
untraced, a job table in the temporary folder), and after a few warm-up runs ``--serve-runs``
runs are started with ``POST /runs`` ``{"inputs": ..., "stream": true}`` and their Server-Sent
Events read with httpx. For each ``node_started`` event, the time from its ``at`` (set by the
engine in the server) to the moment its ``data:`` line is read in this process (the same machine's
clock), median, p95 and max in milliseconds, for all nodes and apart for the first node of each
run (the run may start before its stream does) and the later ones, beside the in-process median.
``--no-serve`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import Server

TARGET_MS_PER_NODE = 2.0
SERVE_WARMUP_RUNS = 3


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


async def _events(args: argparse.Namespace, folder: Path) -> list[float]:
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
    return heard


def _stream_run(client: Any, url: str, nodes: int) -> list[tuple[int, float]]:
    """One streamed run: for each ``node_started`` event, its place in the run (0: the first
    node) and the milliseconds from its ``at`` to the moment its ``data:`` line was read."""
    body = {"inputs": {"topic": "bees"}, "stream": True}
    delays: list[tuple[int, float]] = []
    finished: dict[str, Any] = {}
    with client.stream("POST", f"{url}/runs", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"POST /runs answered {response.status_code}: {response.read()!r}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # id:, event:, comments and the blank line between messages
            received = time.time()
            event = json.loads(line.removeprefix("data:"))
            if event["type"] == "node_started":
                delays.append((len(delays), (received - event["at"]) * 1000))
            elif event["type"] == "run_finished":
                finished = event
    if finished.get("status") != "success" or len(delays) != nodes:
        raise RuntimeError(f"streamed run: {len(delays)} node_started of {nodes}, end {finished}")
    return delays


def _summary(values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=20, method="inclusive")[18]
    return (
        f"median {statistics.median(values):6.2f} ms, p95 {p95:6.2f} ms, "
        f"max {max(values):6.2f} ms over {len(values):3d} nodes"
    )


def _serve_events(args: argparse.Namespace, folder: Path, in_process_us: list[float]) -> None:
    import httpx

    folder.mkdir()
    cli = shutil.which("configurable-agents") or str(
        Path(sys.executable).with_name("configurable-agents")
    )
    env = {k: v for k, v in os.environ.items() if k != "CONFIGURABLE_AGENTS_API_TOKEN"}
    env["CONFIGURABLE_AGENTS_TRACING"] = "off"
    server = Server(cli, folder, _workflow(folder, args.nodes, None), env)
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(SERVE_WARMUP_RUNS):
                _stream_run(client, server.url, args.nodes)
            delays: list[tuple[int, float]] = []
            for _ in range(args.serve_runs):
                delays += _stream_run(client, server.url, args.nodes)
    finally:
        server.stop()
    every = [ms for _, ms in delays]
    first = [ms for place, ms in delays if place == 0]
    later = [ms for place, ms in delays if place > 0]
    in_process_ms = statistics.median(in_process_us) / 1000
    print(f"events     node start -> node_started read over SSE (serve, {args.serve_runs} "
          f"streamed runs, httpx), in-process median {in_process_ms:.4f} ms:")  # fmt: skip
    print(f"           all nodes   {_summary(every)}")
    print(f"           first node  {_summary(first)}")
    print(f"           later nodes {_summary(later)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--postgres", metavar="URI", default=None)
    parser.add_argument("--serve-runs", type=int, default=20, help="streamed runs over HTTP")
    parser.add_argument("--no-serve", action="store_true", help="skip the events over HTTP")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{args.nodes}-node chain on the mock provider, {args.runs} runs x {args.rounds} "
              f"rounds per mode (ABBA), python {sys.version.split()[0]}")  # fmt: skip
        asyncio.run(_checkpoints(args, Path(folder)))
        heard = asyncio.run(_events(args, Path(folder)))
        if not args.no_serve:
            _serve_events(args, Path(folder) / "serve", heard)


if __name__ == "__main__":
    main()
