"""Batch throughput with full tracing, against the stub server answering in 100 ms.

    python bench/bench_batch.py [--rows 2000] [--concurrency 64] [--delay 0.1]

A 3-node workflow (3 model calls in a row per run) runs once per row through
``configurable-agents batch --concurrency 64`` with tracing into a fresh local SQLite store, then
the same rows untraced, for comparison. The stub server (``tests/stub_llm.py``) runs in its own
process, so it does not share the batch's interpreter lock. The ceiling is concurrency /
(3 x delay): 64 / 0.3 s = 213 runs/s; the target is >= 80 % of it (170 runs/s) with every trace
in the store after the flush (0 lost). In the same run, MLflow's own synchronous export
(``mlflow.start_span``, six-span traces, from ``bench_recording.py``) is measured into another
fresh store, and the CPU time per run of the batch process and of the stub is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recording import MLFLOW_MODE, _run  # noqa: E402

TARGET_SHARE = 0.8

STUB = r"""
import dataclasses, sys
sys.path.insert(0, sys.argv[1])
from tests.stub_llm import StubLLM, default_responder
delay = float(sys.argv[2])
stub = StubLLM().start()
stub.responder = lambda request: dataclasses.replace(default_responder(request), delay=delay)
print(stub.base_url, flush=True)
sys.stdin.read()  # serve until the bench closes our stdin
stub.stop()
"""


def _workflow(path: Path, base_url: str, uri: str) -> None:
    ids = ["outline", "draft", "polish"]
    path.write_text(
        yaml.safe_dump(
            {
                "schema_version": "1.0",
                "flow": {"name": "bench_batch"},
                "config": {
                    "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": base_url},
                    "observability": {"mlflow": {"enabled": True, "tracking_uri": uri}},
                },
                "state": {"fields": {"topic": {"type": "str", "required": True}}},
                "nodes": [
                    {"id": i, "prompt": f"Write the {i} about {{topic}}", "outputs": [f"{i}_out"]}
                    for i in ids
                ],
                "edges": [
                    {"from": a, "to": b}
                    for a, b in zip(["START", *ids], [*ids, "END"], strict=True)
                ],
            }
        )
    )


def _store_counts(uri: str) -> tuple[int, dict[str, float]]:
    """Traces in the store and the batch run's metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    traces = client.search_traces(locations=[experiment], max_results=50_000, include_spans=False)
    (run,) = client.search_runs([experiment])
    return len(traces), run.data.metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.1, help="Seconds per stub reply.")
    parser.add_argument("--mlflow-sync-traces", type=int, default=50)
    args = parser.parse_args()
    # a writer process may still be finishing its last batch in there when the run ends
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        base = {**os.environ, "MLFLOW_TRACKING_URI": "", "CONFIGURABLE_AGENTS_TRACING": ""}
        sync_uri = f"sqlite:///{tmp}/mlflow-sync.db"
        sync = _run(MLFLOW_MODE, [str(args.mlflow_sync_traces), sync_uri],
                    {**base, "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"})  # fmt: skip
        stub = subprocess.Popen(
            [sys.executable, "-c", STUB, str(ROOT), str(args.delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            base_url = stub.stdout.readline().strip()  # type: ignore[union-attr]
            uri = f"sqlite:///{tmp}/mlflow.db"
            workflow = Path(tmp) / "wf.yaml"
            _workflow(workflow, base_url, uri)
            rows = Path(tmp) / "rows.jsonl"
            lines = (json.dumps({"topic": f"t{i}"}) + "\n" for i in range(args.rows))
            rows.write_text("".join(lines))
            env = {**base, "CONFIGURABLE_AGENTS_SPOOL": f"{tmp}/spool.db",
                   "CONFIGURABLE_AGENTS_FLUSH_TIMEOUT": "600"}  # fmt: skip
            started = time.perf_counter()
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            batch = _batch(args, workflow, rows, Path(tmp) / "out.jsonl", env)
            wall = time.perf_counter() - started
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            untraced = _batch(args, workflow, rows, Path(tmp) / "untraced.jsonl",
                              {**env, "CONFIGURABLE_AGENTS_TRACING": "off"})  # fmt: skip
            untraced_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            stub.communicate("")
        stub_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for done in (batch, untraced):
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
        untraced_rate = float(re.search(r"\(([\d.]+)/s\)", untraced.stderr).group(1))
        results = [json.loads(line) for line in Path(f"{tmp}/out.jsonl").read_text().splitlines()]
        traces, metrics = _store_counts(uri)
    # the stub is reaped last: its CPU is what the children used after the untraced batch
    cpu = (_cpu(cpu_after) - _cpu(cpu_before), (_cpu(stub_after) - _cpu(untraced_after)) / 2)
    rates = (metrics["runs_per_second"], untraced_rate)
    return _report(args, results, traces, rates, sync, wall, cpu)


def _batch(
    args: argparse.Namespace, workflow: Path, rows: Path, out: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "configurable_agents", "batch", str(workflow), "--inputs",
         str(rows), "-o", str(out), "--concurrency", str(args.concurrency)],
        capture_output=True, text=True, env=env, cwd=out.parent,
    )  # fmt: skip


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    traces: int,
    rates: tuple[float, float],
    sync: dict[str, float],
    wall: float,
    cpu_s: tuple[float, float],
) -> int:
    rate, untraced = rates
    ceiling = args.concurrency / (3 * args.delay)
    target = TARGET_SHARE * ceiling
    succeeded = sum(r["status"] == "success" for r in results)
    batch_ms, stub_ms = (seconds * 1000 / args.rows for seconds in cpu_s)
    cores = os.cpu_count() or 1
    lines = [
        f"{args.rows} rows, 3 model calls each, stub {args.delay * 1000:.0f} ms per call, "
        f"concurrency {args.concurrency}: {succeeded} succeeded",
        f"batch: {rate:.1f} runs/s = {rate / ceiling:.0%} of the {ceiling:.0f} runs/s ceiling "
        f"(target >= {target:.0f}); the same rows untraced: {untraced:.1f} runs/s",
        f"traces in the store after the flush: {traces} of {args.rows} "
        f"({args.rows - traces} lost); wall time with start-up and flush: {wall:.1f} s",
        f"MLflow sync export, same machine and run: {sync['per_s']:.1f} traces/s "
        f"({sync['caller_ms']:.0f} ms per trace); batch/MLflow: {rate / sync['per_s']:.1f}x",
        f"CPU per run: batch process {batch_ms:.1f} ms (start-up included; alone on one core "
        f"at most {1000 / batch_ms:.0f} runs/s), stub {stub_ms:.1f} ms; both on {cores} cores "
        f"at most {cores * 1000 / (batch_ms + stub_ms):.0f} runs/s (the writer not counted); "
        f"load average {os.getloadavg()[0]:.1f}",
    ]
    ok = rate >= target and traces == args.rows and succeeded == args.rows
    print("\n".join([*lines, "PASS" if ok else "FAIL"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
