"""`report costs` over 100,000 recorded runs: MLflow's trace-metric queries against paging.

Generates (once, cached under ``~/.cache/configurable-agents-bench/`` or ``$BENCH_CACHE``) a
SQLite store holding 100,000 runs exactly as the recorder writes them: each run's trace built
by ``build_trace`` and written with ``log_spans`` many traces per call (as the writer does), and
its MLflow run (params, metrics, tags; no artifacts, left RUNNING) from the recorder's own run
record. Runs of three workflows on three priced
models and one unpriced model, spread over 90 days, 10 % of them failed.

Then, in the same process, times the naive answer (page every run with ``search_runs`` and sum
its metrics: ``cost_report(source="runs")``) against ours (``query_trace_metrics`` aggregated in
the store: ``cost_report(source="traces")``), checks that both agree to the micro-dollar, and
prints whether ours is within 2 s; then the whole command in a fresh process, MLflow's import
included.

    python bench/bench_reports.py [--runs 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ("article_writer", "routing", "loop")
MODELS = (
    ("openai", "gpt-4o-mini"),
    ("google", "gemini-1.5-flash"),
    ("anthropic", "claude-3-5-haiku-latest"),
)
UNPRICED = ("openai", "house-model-7b")
DAY_MS = 86_400_000
BATCH = 1_000
TARGET_S = 2.0


def _results(count: int, seed: int, now_ms: int) -> Any:
    """Synthetic finished runs (RunResult) with their workflows, deterministic per seed."""
    from decimal import Decimal

    from configurable_agents import load_workflow
    from configurable_agents.engine.records import ModelCallRecord, NodeRecord, RunResult, RunStatus
    from configurable_agents.pricing import Price, price_call
    from configurable_agents.pricing.usage import TokenUsage

    rng = random.Random(seed)
    workflows = {name: load_workflow(ROOT / "examples" / f"{name}.yaml") for name in WORKFLOWS}
    prices: dict[tuple[str, str], Any] = {}

    def pricer(provider: str, model: str) -> Any:
        def price(usage: TokenUsage) -> Price:
            key = (provider, model, usage.input_tokens, usage.output_tokens)
            if key not in prices:
                prices[key] = price_call(provider, model, usage)
            return prices[key]

        return price

    for index in range(count):
        name = WORKFLOWS[index % len(WORKFLOWS)]
        workflow = workflows[name]
        start_ns = (now_ms - rng.randrange(90 * DAY_MS)) * 1_000_000
        records = []
        offset = 0
        for node in workflow.config.nodes[:2]:
            provider, model = UNPRICED if rng.random() < 0.01 else rng.choice(MODELS)
            usage = TokenUsage(rng.randrange(200, 4_000, 50), rng.randrange(50, 800, 10))
            duration = rng.uniform(0.2, 3.0)
            call = ModelCallRecord(
                start_ns + offset, duration, usage, pricer=pricer(provider, model)
            )
            records.append(
                NodeRecord(node.id, provider, model, duration_s=duration,
                           started_ns=start_ns + offset, calls=[call], output={"x": "y"})
            )  # fmt: skip
            offset += int(duration * 1e9)
        failed = rng.random() < 0.1
        result = RunResult(
            run_id=f"bench-{seed}-{index}",
            workflow=name,
            status=RunStatus.FAILED if failed else RunStatus.SUCCESS,
            state={},
            outputs={},
            records=records,
            error="stub failure" if failed else None,
            duration_s=offset / 1e9,
            started_ns=start_ns,
            inputs={"topic": "bench"},
        )
        assert result.cost_usd >= Decimal(0)
        yield workflow, result


def generate(uri: str, count: int, workers: int = 1) -> None:
    """Write ``count`` runs to the store at ``uri``: ``workers`` processes, batches of traces."""
    import multiprocessing

    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(uri).create_experiment("configurable_agents")  # schema first
    share = -(-count // workers)
    parts = [(uri, min(share, count - i * share), i, experiment_id) for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.starmap(_generate_part, parts)


def _generate_part(uri: str, count: int, seed: int, experiment_id: str) -> None:
    from mlflow.entities import Metric, Param, RunTag, Span
    from mlflow.tracking import MlflowClient

    from configurable_agents.config.settings import MlflowConfig
    from configurable_agents.observability.recorder import Recorder
    from configurable_agents.observability.spans import build_trace
    from configurable_agents.observability.spool import Spool

    store = MlflowClient(uri)._tracking_client.store
    spool = Spool(Path(uri.removeprefix("sqlite:///")).with_suffix(f".{seed}.spool"))
    config = MlflowConfig(enabled=True, tracking_uri=uri, log_artifacts=False)
    recorders: dict[str, Recorder] = {}
    now_ms = int(time.time() * 1000)
    batch: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    started = time.perf_counter()

    def flush() -> None:
        spans = [Span.from_dict(span) for _, trace, _ in batch for span in trace]
        store.log_spans(experiment_id, spans)
        for trace_id, _, record in batch:
            run = store.create_run(
                experiment_id, "bench", record["start_ms"],
                [RunTag(k, str(v)) for k, v in record["tags"].items()], record["name"],
            )  # fmt: skip
            store.log_batch(
                run.info.run_id,
                metrics=[Metric(k, float(v), record["end_ms"], 0)
                         for k, v in record["metrics"].items()],
                params=[Param(k, str(v)) for k, v in record["params"].items()],
                tags=[RunTag("mlflow.trace_id", trace_id)],
            )  # fmt: skip
        batch.clear()

    for index, (workflow, result) in enumerate(_results(count, seed, now_ms)):
        name = workflow.config.flow.name
        if name not in recorders:
            recorders[name] = Recorder(workflow, config, env={}, spool=spool)
        trace_id, spans = build_trace(result, workflow)
        batch.append((trace_id, spans, recorders[name]._run_record(result, trace_id)))
        if len(batch) == BATCH:
            flush()
            elapsed = time.perf_counter() - started
            print(f"  worker {seed}: {index + 1:,} runs in {elapsed:.0f} s", file=sys.stderr)
    if batch:
        flush()


def _timed(function: Any, repeat: int) -> tuple[float, Any]:
    times = []
    value = None
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def cached_store(runs: int) -> str:
    """The URI of the cached store of ``runs`` runs, generated first if missing."""
    cache = Path(
        os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "configurable-agents-bench")
    )
    cache.mkdir(parents=True, exist_ok=True)
    database = cache / f"reports-{runs}.db"
    if not database.exists():
        print(f"generating {runs:,} runs in {database} (once; cached)", file=sys.stderr)
        # Written in memory-backed /dev/shm when there is one (no fsync per commit), then moved.
        scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else cache
        partial = scratch / f"reports-{runs}.partial.db"
        partial.unlink(missing_ok=True)
        generate(f"sqlite:///{partial}", runs)
        shutil.move(partial, database)
    return f"sqlite:///{database}"


def main() -> None:
    """Generate (or reuse) the store, then time both ways of answering `report costs`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    uri = cached_store(args.runs)

    from configurable_agents.reports import ReportQuery, cost_report

    query = ReportQuery(tracking_uri=uri)
    started = time.perf_counter()
    cost_report(query, source="traces")  # first call: opens the store (schema check)
    first = time.perf_counter() - started
    ours_s, ours = _timed(lambda: cost_report(query, source="traces"), args.repeat)
    naive_s, naive = _timed(lambda: cost_report(query, source="runs"), 1)
    for figure in ("total_cost_usd", "total_runs", "successful", "failed", "total_tokens"):
        a, b = getattr(ours, figure), getattr(naive, figure)
        assert abs(a - b) < 1e-6, f"{figure}: {a} (trace metrics) != {b} (search_runs)"
    print(f"runs in store:                      {ours.total_runs:,}")
    print(f"naive search_runs paging:           {naive_s:8.3f} s")
    print(f"report costs (query_trace_metrics): {ours_s:8.3f} s (first call {first:.3f} s)")
    print(f"speed-up:                           {naive_s / ours_s:8.1f} x")
    verdict = "yes" if ours_s <= TARGET_S else "NO"
    print(f"within {TARGET_S:.0f} s:                        {verdict}")
    command = [sys.executable, "-m", "configurable_agents", "report", "costs", "--tracking-uri",
               uri, "--format", "json"]  # fmt: skip
    cli_s, _ = _timed(lambda: subprocess.run(command, capture_output=True, check=True), 1)
    import_s, _ = _timed(
        lambda: subprocess.run([sys.executable, "-c", "import mlflow.tracking"], check=True), 1
    )
    print(f"whole command, fresh process:       {cli_s:8.3f} s "
          f"(of which `import mlflow.tracking` alone: {import_s:.3f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
