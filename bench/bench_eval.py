"""`eval` with deterministic scorers against `batch` on the same rows, measured in the same run:
the Python API and the command line, traced into MLflow and untraced.

    python bench/bench_eval.py [--rows 300] [--concurrency 16] [--pairs 4] [--traced-pairs 1]
                               [--no-api] [--no-cli] [--profile]

A 2-node workflow on the offline `mock` provider (one node offers the `calculator` tool, never
called) runs once per row. `eval` scores every run with 8 deterministic scorers (equals, contains,
regex, in_range, max_cost, max_latency, max_tokens, tool_called; no LLM judge); `batch` runs the
same rows (the same ids and inputs, without the expected column) at the same concurrency.

Every repetition runs in a fresh temporary folder with its own workflow file pointing at its own
``sqlite:///`` store and its own spool, as a user's first command in a project folder does (so
MLflow's schema migration is part of the traced figures, for both commands alike). eval and
batch alternate (ABBA over the pairs) so that drift hits both. Modes:

- ``api``: ``configurable_agents.evaluate(...)`` (``configurable_agents.evaluation.evaluate``
  where the top level does not export it) against ``prepare_workflow`` + ``read_rows`` +
  ``asyncio.run(run_batch(...))`` in this process (imports warmed up first).
  Traced, the call returns once its runs are spooled; ``flush`` is then the wait until the
  background writer has put everything in the store (traces, batch or evaluation run, and eval's
  assessments).
- ``cli``: ``configurable-agents eval FILE --dataset D -c N -o results.jsonl`` against
  ``configurable-agents batch FILE --inputs I -c N -o results.jsonl``, the console entry point run
  in a child process with ``CONFIGURABLE_AGENTS_WRITER_IDLE=1``. The wall time is the whole
  command; ``flush`` is the command's own final wait (eval's ``_wait_for_the_run``: for its
  evaluation run, which comes after the traces, not for the assessments after it, up to 60 s;
  batch's ``flush_recording``, 10 s), ``shutdown`` the interpreter's exit after the command is
  done, its ``exit wait`` (``flush_all``, up to 10 s) included, all timed in the child (by
  wrapping those functions); ``store complete`` is how long after exit the store took to hold
  everything.

Printed per mode: median seconds of each command, the eval/batch ratio (the median of the
pairs' ratios) against the target (<= 1.15x), and, traced, the flush parts and what the store
holds. The default run takes 2.5 to 3 minutes on 2 cores; ``--traced-pairs 2`` alternates the
traced commands too (about 2 minutes more). The untraced pairs' ratios spread widely on a busy
machine: look at them, and at the CPU ratio printed under each mode. ``--profile`` then profiles
eval against batch in this process with cProfile (untraced, then traced with no writer running:
eval's own steps and the functions it calls more often than batch), and times the background
writer's work on one eval's records, done in this process: the traces, then the evaluation run
and its assessments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.15
SCORERS = 8  # in the workflow below; each traced row also gets one expectation
EXPERIMENT = "configurable_agents"
CLIENT_CALLS = ("create_run", "log_batch", "log_text", "link_traces_to_run", "set_terminated")
"""The MlflowClient calls the writer makes for an evaluation run, timed by ``--profile``."""

WORKFLOW = """\
schema_version: "1.0"
flow: {{name: bench_eval}}
config:
  llm: {{provider: mock, model: mock}}
  observability:
    mlflow: {{enabled: true, tracking_uri: "{uri}"}}
state:
  fields:
    topic: {{type: str, required: true}}
nodes:
  - id: outline
    prompt: "Outline an article about {{topic}}"
    outputs: [outline]
    tools: [calculator]
  - id: write
    prompt: "Write an article about {{topic}} from {{outline}}"
    outputs: [article, words]
    output_schema:
      type: object
      fields:
        - {{name: article, type: str}}
        - {{name: words, type: int}}
edges:
  - {{from: START, to: outline}}
  - {{from: outline, to: write}}
  - {{from: write, to: END}}
evaluation:
  scorers:
    - {{name: exact, type: equals, output: article, expected: expected_article}}
    - {{name: mentions, type: contains, output: article, value: mock}}
    - {{name: shaped, type: regex, output: article, pattern: "^mock \\\\w+$"}}
    - {{name: length, type: in_range, output: words, min: 0, max: 5000}}
    - {{name: cheap, type: max_cost, usd: 0.01}}
    - {{name: fast, type: max_latency, seconds: 60}}
    - {{name: small, type: max_tokens, tokens: 100000}}
    - {{name: no_math, type: tool_called, tool: calculator, min_calls: 0, max_calls: 0}}
"""

# The console entry point, with the rows (run_batch), the final flush (eval: the wait for its
# evaluation run), the exit wait and the moment the command is done (before the interpreter's
# shutdown) printed on stderr.
# argv: the command's arguments.
CLI = r"""
import atexit, sys, time
from configurable_agents.cli import batch, evaluate, main
from configurable_agents.observability import recorder

def timed(function, label):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            sys.stderr.write(f"\nBENCH {label}={elapsed:.4f}\n")
    return wrapper

import configurable_agents.batch as rows
run_batch = rows.run_batch

async def timed_rows(*args, **kwargs):  # eval and batch both run their rows with run_batch
    started = time.perf_counter()
    try:
        return await run_batch(*args, **kwargs)
    finally:
        sys.stderr.write(f"\nBENCH rows={time.perf_counter() - started:.4f}\n")

rows.run_batch = timed_rows
evaluate._wait_for_the_run = timed(evaluate._wait_for_the_run, "flush")
batch.flush_recording = timed(batch.flush_recording, "flush")
atexit.unregister(recorder.flush_all)
recorder.flush_all = timed(recorder.flush_all, "exit")  # what `no_exit_wait` unregisters
atexit.register(recorder.flush_all)
sys.argv = ["configurable-agents", *sys.argv[1:]]
try:
    main()
finally:  # the command is done: what follows is the interpreter's shutdown
    sys.stderr.write(f"\nBENCH done={time.time():.4f}\n")
"""


@dataclass
class Sample:
    """One command: wall seconds, and the recording waits within and after it."""

    wall: float
    cpu: float = 0.0  # CPU seconds of the command's own process (not its writer's)
    flush: float = 0.0  # the command's final wait for its writer (traced)
    exit: float = 0.0  # the interpreter's exit wait (CLI, traced)
    shutdown: float = 0.0  # from the command's end to the process's, the exit wait included
    rows: float = 0.0  # running (and scoring) the rows: run_batch (CLI)
    left: float = 0.0  # after the command returned or exited, until the store held everything
    stored: str = ""  # what the store holds, checked on the first traced repetition


def _prepare(folder: Path, rows: int) -> tuple[Path, Path, Path, str]:
    """The workflow, eval's dataset and batch's inputs (the same rows without the expected
    column) in ``folder``; its own store's URI."""
    uri = f"sqlite:///{folder}/mlflow.db"
    workflow = folder / "workflow.yaml"
    workflow.write_text(WORKFLOW.format(uri=uri))
    dataset, inputs = folder / "dataset.jsonl", folder / "inputs.jsonl"
    with dataset.open("w") as scored, inputs.open("w") as plain:
        for i in range(rows):
            row = {"id": f"r{i}", "topic": f"topic {i}"}
            plain.write(json.dumps(row) + "\n")
            scored.write(json.dumps({**row, "expected_article": "mock article"}) + "\n")
    return workflow, dataset, inputs, uri


def _pending(spool: Path, uri: str) -> int:
    """Spooled records not yet in the store (SQL on the spool; no MLflow import here)."""
    if not spool.exists():
        return 0
    with contextlib.closing(sqlite3.connect(spool, timeout=30)) as connection:
        query = "SELECT COUNT(*) FROM items WHERE destination = ?"
        return int(connection.execute(query, (uri,)).fetchone()[0])


def _writer_alive(spool: Path, uri: str) -> bool:
    from configurable_agents.observability.spool import WriterLock

    return WriterLock(spool, uri).writer_alive()


def _drain_wait(spool: Path, uri: str, timeout: float = 600) -> float:
    """Seconds until every spooled record is in the store; then waits (untimed) for the idle
    writer to exit, so that it loads no later measurement."""
    started = time.perf_counter()
    while _pending(spool, uri) and time.perf_counter() - started < timeout:
        time.sleep(0.02)
    took = time.perf_counter() - started
    while _writer_alive(spool, uri) and time.perf_counter() - started < timeout:
        time.sleep(0.05)
    return took


def _stored(uri: str) -> str:
    """Traces, assessments and MLflow runs in the store at ``uri``."""
    with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=30)) as db:
        count = [
            int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("trace_info", "assessments", "runs")
        ]
    return f"{count[0]} traces, {count[1]} assessments, {count[2]} run(s)"


# --- the Python API, in this process ---------------------------------------------------------


def _evaluate() -> Callable[..., Any]:
    import configurable_agents

    try:
        return configurable_agents.evaluate  # type: ignore[attr-defined, no-any-return]
    except AttributeError:  # not exported at the top level
        from configurable_agents.evaluation import evaluate

        return evaluate


def _api(
    kind: str, folder: Path, rows: int, concurrency: int, traced: bool, writer: bool = True
) -> Sample:
    """One call; without ``writer``, no writer process starts (the records stay spooled)."""
    from configurable_agents.observability.spool import WriterLock

    workflow, dataset, inputs, uri = _prepare(folder, rows)
    spool = folder / "spool.db"
    os.environ["CONFIGURABLE_AGENTS_SPOOL"] = str(spool)  # the recorder's spool, read at start
    output = folder / "results.jsonl"
    lock = WriterLock(spool, uri)
    if not writer:
        assert lock.acquire()  # held: the recorder sees a writer alive and starts none
    started, cpu = time.perf_counter(), time.process_time()
    if kind == "eval":
        result = _evaluate()(
            workflow, dataset, concurrency=concurrency, output=output, trace=traced
        )
        assert result.rows == rows and result.rows_failed == 0, result
    else:
        from configurable_agents import prepare_workflow, read_rows, run_batch

        prepared = prepare_workflow(workflow, trace=traced)
        todo = read_rows(inputs, prepared.workflow)
        stats = asyncio.run(
            run_batch(prepared, todo, output, inputs=inputs, concurrency=concurrency)
        )
        assert stats.done == rows and stats.failed == 0, stats
    sample = Sample(time.perf_counter() - started, time.process_time() - cpu)
    if traced and writer:
        sample.flush = _drain_wait(spool, uri)
    lock.release()
    return sample


# --- the command line, in child processes ----------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(kind: str, folder: Path, rows: int, concurrency: int, traced: bool) -> Sample:
    workflow, dataset, inputs, uri = _prepare(folder, rows)
    spool = folder / "spool.db"
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "CONFIGURABLE_AGENTS_FLUSH_TIMEOUT")}  # fmt: skip
    env.update(CONFIGURABLE_AGENTS_SPOOL=str(spool), CONFIGURABLE_AGENTS_WRITER_IDLE="1",
               CONFIGURABLE_AGENTS_TRACING="on" if traced else "off")  # fmt: skip
    data = ["--dataset", str(dataset)] if kind == "eval" else ["--inputs", str(inputs)]
    command = [sys.executable, "-c", CLI, kind, str(workflow), *data,
               "-c", str(concurrency), "-o", str(folder / "results.jsonl")]  # fmt: skip
    started, before = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall, ended = time.perf_counter() - started, time.time()
    cpu = _children_cpu() - before  # the command's process: its writer is not its waited child
    if done.returncode != 0:
        raise SystemExit(f"{kind} exited {done.returncode}:\n{done.stderr[-2000:]}")
    waits = dict(re.findall(r"^BENCH (\w+)=([\d.]+)$", done.stderr, re.MULTILINE))
    sample = Sample(wall, cpu, *(float(waits.get(k, 0)) for k in ("flush", "exit")))
    sample.shutdown = ended - float(waits["done"])
    sample.rows = float(waits["rows"])
    if traced:
        sample.left = _drain_wait(spool, uri)
    return sample


# --- pairs, alternating ----------------------------------------------------------------------

Measure = Callable[[str, Path, int, int, bool], Sample]
_turn = [0]  # eval first in even pairs, batch first in odd ones, counted across the modes


def _pairs(
    measure: Measure, args: argparse.Namespace, traced: bool, pairs: int
) -> dict[str, list[Sample]]:
    """``pairs`` eval/batch pairs in alternating order (ABBA), each command in a fresh folder."""
    samples: dict[str, list[Sample]] = {"eval": [], "batch": []}
    for _ in range(pairs):
        _turn[0] += 1
        for kind in ("eval", "batch") if _turn[0] % 2 else ("batch", "eval"):
            with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as folder:
                sample = measure(kind, Path(folder), args.rows, args.concurrency, traced)
                if traced and not samples[kind]:
                    sample.stored = _stored(f"sqlite:///{folder}/mlflow.db")
                samples[kind].append(sample)
    return samples


def _median(samples: list[Sample], part: str) -> float:
    return statistics.median(getattr(s, part) for s in samples)


def _report(mode: str, samples: dict[str, list[Sample]], traced: bool) -> bool:
    ev, ba = samples["eval"], samples["batch"]
    e, b = _median(ev, "wall"), _median(ba, "wall")
    ratios = [x.wall / y.wall for x, y in zip(ev, ba, strict=True)]
    ratio = statistics.median(ratios)  # of the pairs: one slow command moves it least
    pairs = " ".join(f"{r:.2f}" for r in ratios)
    ok = ratio <= TARGET_RATIO
    cpu = statistics.median(x.cpu / y.cpu for x, y in zip(ev, ba, strict=True))
    print(f"{mode:22} eval {e:7.2f} s  batch {b:7.2f} s  ratio {ratio:5.2f}x "
          f"(pairs: {pairs})  target <= {TARGET_RATIO}x: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    print(f"{'':22}   CPU of the command's process: eval {_median(ev, 'cpu'):.2f} s, batch "
          f"{_median(ba, 'cpu'):.2f} s, ratio {cpu:.2f}x")  # fmt: skip
    if traced:
        for kind, got in samples.items():
            parts = [f"flush {_median(got, 'flush'):6.2f} s"]
            if mode.startswith("cli"):
                parts += [f"shutdown {_median(got, 'shutdown'):5.2f} s "
                          f"(exit wait {_median(got, 'exit'):5.2f} s)",
                          f"store complete {_median(got, 'left'):5.2f} s after exit"]  # fmt: skip
            wall = _median(got, "wall")
            if mode.startswith("api"):
                parts.append(f"call + flush {wall + _median(got, 'flush'):6.2f} s")
            else:
                waited = statistics.median(x.rows + x.flush + x.shutdown for x in got)
                parts[:0] = [f"rows {_median(got, 'rows'):5.2f} s"]
                parts.append(f"the rest (start-up, set-up, summary) {wall - waited:5.2f} s")
            print(f"{'':22}   {kind:5}: " + ", ".join(parts) + f"; store: {got[0].stored}")
        if mode.startswith("api"):
            whole = [(x.wall + x.flush) / (y.wall + y.flush) for x, y in zip(ev, ba, strict=True)]
            print(f"{'':22}   call + flush ratio: {statistics.median(whole):.2f}x")
        else:
            bare = [(x.wall - x.flush - x.shutdown) / (y.wall - y.flush - y.shutdown)
                    for x, y in zip(ev, ba, strict=True)]  # fmt: skip
            rows = statistics.median(x.rows / y.rows for x, y in zip(ev, ba, strict=True))
            print(f"{'':22}   ratio of the rows alone (run_batch): {rows:.2f}x")
            print(f"{'':22}   ratio without the flush and shutdown: "
                  f"{statistics.median(bare):.2f}x")  # fmt: skip
    return ok


# --- --profile -------------------------------------------------------------------------------


def _profile_calls(args: argparse.Namespace, traced: bool) -> None:
    """cProfile of eval and batch in this process (warm; traced: recorded to the spool, with no
    writer process running): eval's own steps, and the functions eval calls more often than
    batch, by the time that added."""
    totals: dict[str, float] = {}
    found: dict[str, dict[str, tuple[int, float, float]]] = {}
    for kind in ("batch", "eval"):
        with tempfile.TemporaryDirectory() as folder:
            profile = cProfile.Profile()
            profile.enable()
            sample = _api(kind, Path(folder), args.rows, args.concurrency, traced, writer=False)
            profile.disable()
            if traced:  # left unwritten: the exit wait must not look for them
                with contextlib.closing(sqlite3.connect(Path(folder, "spool.db"))) as spool:
                    spool.execute("DELETE FROM items")
                    spool.commit()
            totals[kind] = sample.wall
        found[kind] = {}
        entries = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        for (file, line, name), row in entries.items():
            short = file.split("site-packages/")[-1].split("/src/")[-1]
            found[kind][f"{short}:{line}({name})"] = (row[1], row[2], row[3])
    ev, ba = found["eval"], found["batch"]
    how = "traced, no writer running" if traced else "untraced"
    print(f"\nprofile, api {how}, warm (cProfile on): eval {totals['eval']:.2f} s, batch "
          f"{totals['batch']:.2f} s; eval's own steps (cumulative):")  # fmt: skip
    own = [key for key in ev if key.startswith("configurable_agents/evaluation/")]
    # the row's whole run (executor __call__) and the entry points are not eval's own steps
    steps = [key for key in own if not key.endswith(("(<module>)", "(evaluate)", "(__call__)"))]
    for key in sorted(steps, key=lambda k: -ev[k][2])[:10]:
        calls, _, cumulative = ev[key]
        print(f"  {cumulative * 1000:8.0f} ms  {calls:7d} calls  {key}")
    print("functions eval calls more often, by the own time that added (eval - batch):")
    none = (0, 0.0, 0.0)
    more = {key: (calls - ba.get(key, none)[0], own_s - ba.get(key, none)[1])
            for key, (calls, own_s, _) in ev.items() if calls != ba.get(key, none)[0]}  # fmt: skip
    for key in sorted(more, key=lambda k: -more[k][1])[:10]:
        calls, grew = more[key]
        print(f"  {grew * 1000:+8.0f} ms  {calls:+7d} calls  {key}")


def _profile_writer(args: argparse.Namespace) -> None:
    """The background writer's work on eval's records, done here: traces, then the evaluation
    run, with its parts timed."""
    from configurable_agents.observability.spool import Spool
    from configurable_agents.observability.writer import MlflowWriter

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _api("eval", folder, args.rows, args.concurrency, True, writer=False)
        uri = f"sqlite:///{folder}/mlflow.db"
        spool = Spool(folder / "spool.db")
        items = spool.claim(100_000, uri)
        sizes = [len(json.dumps(item.payload)) for item in items]
        started = time.perf_counter()
        writer = MlflowWriter(uri)
        writer.experiment_id(EXPERIMENT)
        opened = time.perf_counter() - started
        timings: dict[str, list[float]] = {}

        def timer(label: str, function: Callable[..., object]) -> Callable[..., object]:
            def wrapper(*a: object, **k: object) -> object:
                began = time.perf_counter()
                try:
                    return function(*a, **k)
                finally:
                    timings.setdefault(label, []).append(time.perf_counter() - began)

            return wrapper

        for method in ("_assess", "_log_dataset"):
            setattr(writer, method, timer(method, getattr(writer, method)))
        for method in CLIENT_CALLS:
            setattr(writer.client, method, timer(method, getattr(writer.client, method)))
        traces, last = items[:-1], items[-1]
        started = time.perf_counter()
        for first in range(0, len(traces), 200):
            writer.write(traces[first : first + 200])
        wrote_traces = time.perf_counter() - started
        timings.clear()
        started = time.perf_counter()
        writer.write([last])
        wrote_run = time.perf_counter() - started
        spool.done([item.id for item in items])
        count = len(last.payload.get("assessments", []))
        print(f"\nwriter, in this process, on one traced eval of {args.rows} rows: open the new "
              f"store {opened:.2f} s; {len(traces)} traces {wrote_traces:.2f} s; the evaluation "
              f"run ({sizes[-1] / 1e6:.2f} MB spooled) {wrote_run:.2f} s, of which:")  # fmt: skip
        for label, took in sorted(timings.items(), key=lambda item: -sum(item[1])):
            each = (
                f", {sum(took) / count * 1000:.2f} ms per assessment" if label == "_assess" else ""
            )
            print(f"  {sum(took):7.2f} s  {len(took):4d} call(s)  {label}{each}")
        print(f"  ({count} assessments: {SCORERS} feedbacks + 1 expectation per row)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=4, help="eval/batch pairs, untraced")
    parser.add_argument("--traced-pairs", type=int, default=1, help="eval/batch pairs, traced")
    parser.add_argument("--no-api", action="store_true", help="skip the Python API")
    parser.add_argument("--no-cli", action="store_true", help="skip the command line")
    parser.add_argument("--profile", action="store_true", help="then profile eval's extra time")
    args = parser.parse_args()
    os.environ["CONFIGURABLE_AGENTS_WRITER_IDLE"] = "1"  # the writers this process starts
    os.environ.pop("CONFIGURABLE_AGENTS_TRACING", None)
    began = time.perf_counter()
    print(f"{args.rows} rows, concurrency {args.concurrency}, mock provider, {SCORERS} "
          f"deterministic scorers; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    ok = True
    if not args.no_api or args.profile:
        with tempfile.TemporaryDirectory() as folder:  # imports and first-call costs, untimed
            for kind in ("eval", "batch"):
                Path(folder, kind).mkdir()
                _api(kind, Path(folder, kind), 20, args.concurrency, False)
    modes = [("api", _api, not args.no_api), ("cli", _cli, not args.no_cli)]
    for name, measure, wanted in modes:
        for traced, pairs in ((False, args.pairs), (True, args.traced_pairs)):
            if wanted and pairs > 0:
                mode = f"{name}, {'traced' if traced else 'untraced'}"
                ok &= _report(mode, _pairs(measure, args, traced, pairs), traced)
    print(f"(bench wall time {time.perf_counter() - began:.0f} s)")
    if args.profile:
        _profile_calls(args, traced=False)
        _profile_calls(args, traced=True)
        _profile_writer(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
