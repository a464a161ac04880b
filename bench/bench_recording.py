"""Six-span traces per second into a local SQLite MLflow store: MLflow's own export, and ours.

    python bench/bench_recording.py [--traces 2000]

Each mode runs in a fresh process on a fresh store, in the same run of this script:
- ``mlflow-sync``: ``mlflow.start_span`` (1 root + 5 children), synchronous export;
- ``mlflow-async``: the same with MLflow's async export, a burst, then counting what was stored;
- ``ours``: our spool + batched writer (traces only, then traces with their MLflow run records).
Printed per mode: the caller's cost per trace, sustained traces/s into the store, traces lost.
Target for ours: >= 500 traces/s with 0 lost. Then the wall time a traced 3-node run (offline
mock provider) adds per node against the same run untraced, the background writer included;
target <= 1 ms.
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
TARGET = 500

MLFLOW_MODE = r"""
import os, sys, time, json
import mlflow
from mlflow.tracking import MlflowClient
n = int(sys.argv[1]); uri = sys.argv[2]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("bench")
def one(i):
    with mlflow.start_span(name="workflow") as root:
        root.set_inputs({"i": i})
        for k in range(5):
            with mlflow.start_span(name=f"node{k}", span_type="CHAT_MODEL") as span:
                span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
one(-1)
mlflow.flush_trace_async_logging() if hasattr(mlflow, "flush_trace_async_logging") else None
start = time.perf_counter()
for i in range(n):
    one(i)
caller = time.perf_counter() - start
if hasattr(mlflow, "flush_trace_async_logging"):
    mlflow.flush_trace_async_logging(terminate=True)
total = time.perf_counter() - start
exp = MlflowClient(uri).get_experiment_by_name("bench").experiment_id
stored = len(MlflowClient(uri).search_traces(locations=[exp], max_results=50000, include_spans=False)) - 1
print(json.dumps({"caller_ms": caller / n * 1000, "per_s": stored / total, "lost": n - stored}))
"""

OUR_MODE = r"""
import sys, time, json, secrets
sys.path.insert(0, sys.argv[4])
from configurable_agents.observability.spool import Spool
from configurable_agents.observability.writer import drain, MlflowWriter
from configurable_agents.observability.spans import _Builder
n = int(sys.argv[1]); uri = sys.argv[2]; with_runs = sys.argv[3] == "runs"
spool = Spool(sys.argv[5])
MlflowWriter(uri).experiment_id("bench")  # store and experiment exist before timing
def payload(i):
    b = _Builder(secrets.token_hex(16), lambda v: v, True)
    now = time.time_ns()
    root = b.add("workflow", "CHAIN", now, 0.01, None, {"mlflow.spanInputs": {"i": i}})
    for k in range(5):
        b.add(f"node{k}", "CHAT_MODEL", now, 0.001, root, {"mlflow.chat.tokenUsage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}})
    run = None
    if with_runs:
        run = {"name": f"run{i}", "start_ms": now // 10**6, "end_ms": now // 10**6 + 10, "status": "FINISHED",
               "params": {"workflow_name": "bench"}, "metrics": {"total_tokens": 75}, "tags": {}, "artifacts": {}}
    return {"trace_id": b.trace_id, "spans": b.spans, "run": run}
start = time.perf_counter()
for i in range(n):
    spool.put(uri, "bench", payload(i))
caller = time.perf_counter() - start
written = drain(spool)
total = time.perf_counter() - start
from mlflow.tracking import MlflowClient
exp = MlflowClient(uri).get_experiment_by_name("bench").experiment_id
stored = len(MlflowClient(uri).search_traces(locations=[exp], max_results=50000, include_spans=False))
print(json.dumps({"caller_ms": caller / n * 1000, "per_s": stored / total, "lost": n - stored}))
"""


OVERHEAD_MODE = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[3])
from configurable_agents import load_workflow
from configurable_agents.engine import prepare_workflow
uri = sys.argv[1]; runs = int(sys.argv[2])
ids = ["a", "b", "c"]
workflow = load_workflow({
    "schema_version": "1.0", "flow": {"name": "overhead"},
    "config": {"observability": {"mlflow": {"enabled": True, "tracking_uri": uri}}},
    "state": {"fields": {"topic": {"type": "str"}}},
    "nodes": [{"id": i, "prompt": "{topic}", "outputs": [f"out_{i}"]} for i in ids],
    "edges": [{"from": x, "to": y} for x, y in zip(["START", *ids], [*ids, "END"])],
})
async def timed(prepared):
    for _ in range(20):
        await prepared.arun({"topic": "t"})
    start = time.perf_counter()
    for _ in range(runs):
        await prepared.arun({"topic": "t"})
    return (time.perf_counter() - start) / runs
async def main():
    off = await timed(prepare_workflow(workflow, llm="mock", trace=False))
    on = await timed(prepare_workflow(workflow, llm="mock", trace=True))
    print(json.dumps({"off_ms": off * 1000, "on_ms": on * 1000, "per_node_ms": (on - off) * 1000 / 3}))
asyncio.run(main())
"""


def _run(code: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--mlflow-sync-traces", type=int, default=100)
    args = parser.parse_args()
    results = {}
    # a writer process may still be finishing its last batch in there when the run ends
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        base = {**os.environ, "MLFLOW_TRACKING_URI": ""}
        for name, async_flag, count in (
            ("mlflow sync export", "false", args.mlflow_sync_traces),
            ("mlflow async export", "true", args.traces),
        ):
            uri = f"sqlite:///{tmp}/{name.replace(' ', '_')}.db"
            env = {**base, "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": async_flag}
            results[name] = _run(MLFLOW_MODE, [str(count), uri], env)
        for name, mode in (("ours, traces", "traces"), ("ours, traces + runs", "runs")):
            uri = f"sqlite:///{tmp}/{mode}.db"
            code_args = [str(args.traces if mode == "traces" else 200), uri, mode,
                         str(ROOT / "src"), f"{tmp}/{mode}-spool.db"]  # fmt: skip
            results[name] = _run(OUR_MODE, code_args, base)
        overhead = _run(
            OVERHEAD_MODE,
            [f"sqlite:///{tmp}/overhead.db", "300", str(ROOT / "src")],
            {**base, "CONFIGURABLE_AGENTS_SPOOL": f"{tmp}/overhead-spool.db"},
        )
    print(f"{'mode':24} {'caller ms/trace':>16} {'traces/s':>10} {'lost':>6}")
    for name, r in results.items():
        print(f"{name:24} {r['caller_ms']:16.2f} {r['per_s']:10.1f} {int(r['lost']):6d}")
    print(
        f"3-node mock run: {overhead['off_ms']:.2f} ms untraced, {overhead['on_ms']:.2f} ms traced: "
        f"{overhead['per_node_ms']:.3f} ms per traced node (target <= 1 ms)"
    )
    ours = results["ours, traces"]
    verdict = "PASS" if ours["per_s"] >= TARGET and ours["lost"] == 0 else "FAIL"
    ratio = ours["per_s"] / results["mlflow sync export"]["per_s"]
    print(f"ours vs MLflow sync: {ratio:.1f}x; target >= {TARGET} traces/s, 0 lost: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
