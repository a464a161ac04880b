"""What `autolog_enabled` adds to a traced run: LangChain's runs captured, built and spooled.

    python bench/bench_autolog.py [--rounds 15] [--runs 20]

A 3-node workflow on the offline mock provider (a LangChain chat model, so LangChain reports its
runs as for any provider), traced to a store that refuses connections: each run's trace is built
and committed to the spool, and no writer process competes for the CPU, so what is measured is
the run's own process (capture, trace building, scrubbing, spooling). In one process, rounds of
``--runs`` runs alternate between autolog off and on. Printed: the median CPU ms per run of
each (process time, so that other load on the machine does not count), the difference per model
call, and the size of a spooled trace (the writer's work grows with it). Target: <= 0.5 ms of CPU
per model call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 0.5

MODE = r"""
import asyncio, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from configurable_agents import load_workflow
from configurable_agents import prepare_workflow
from configurable_agents.observability.spans import build_trace
uri, rounds, runs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ids = ["a", "b", "c"]
def workflow(autolog):
    return load_workflow({
        "schema_version": "1.0", "flow": {"name": "autolog"},
        "config": {"observability": {"mlflow": {
            "enabled": True, "tracking_uri": uri, "autolog_enabled": autolog}}},
        "state": {"fields": {"topic": {"type": "str"}}},
        "nodes": [{"id": i, "prompt": "{topic}", "outputs": [f"out_{i}"]} for i in ids],
        "edges": [{"from": x, "to": y} for x, y in zip(["START", *ids], [*ids, "END"])],
    })
async def main():
    prepared = {f: prepare_workflow(workflow(f), llm="mock", trace=True) for f in (False, True)}
    times = {False: [], True: []}
    for flag in (False, True):
        for _ in range(10):
            await prepared[flag].arun({"topic": "t"})
    for _ in range(rounds):
        for flag in (False, True):
            start = time.process_time()
            for _ in range(runs):
                result = await prepared[flag].arun({"topic": "t"})
            times[flag].append((time.process_time() - start) / runs)
    size = {}
    for flag in (False, True):
        result = await prepared[flag].arun({"topic": "t"})
        _, spans = build_trace(result, prepared[flag].workflow)
        size[flag] = (len(spans), len(json.dumps(spans)))
    off, on = (statistics.median(times[f]) * 1000 for f in (False, True))
    print(json.dumps({"off_ms": off, "on_ms": on, "per_call_ms": (on - off) / 3,
                      "spans": size[False][0], "spans_autolog": size[True][0],
                      "bytes": size[False][1], "bytes_autolog": size[True][1]}))
asyncio.run(main())
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": "", "CONFIGURABLE_AGENTS_TRACING": "",
               "CONFIGURABLE_AGENTS_SPOOL": f"{tmp}/spool.db"}  # fmt: skip
        argv = [str(ROOT / "src"), "http://127.0.0.1:9", str(args.rounds), str(args.runs)]
        out = subprocess.run(
            [sys.executable, "-c", MODE, *argv], capture_output=True, text=True, env=env, check=True
        )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"3-node mock run, traced: {r['off_ms']:.2f} CPU ms autolog off, {r['on_ms']:.2f} on")
    print(
        f"trace: {r['spans']} spans / {r['bytes']} B off, "
        f"{r['spans_autolog']} spans / {r['bytes_autolog']} B on"
    )
    verdict = "PASS" if r["per_call_ms"] <= TARGET_MS else "FAIL"
    print(
        f"autolog adds {r['per_call_ms']:.3f} ms per model call (target <= {TARGET_MS}): {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
