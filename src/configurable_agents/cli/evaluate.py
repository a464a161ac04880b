"""`configurable-agents eval`: run a workflow on a dataset and score every run, or score the
runs already recorded (`--traces`); exit by the `pass_if` gate."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..reports.query import PERIODS
from .common import FILE, fail_input, no_exit_wait, parse_tags, recorder_of, runnable

if TYPE_CHECKING:
    from ..evaluation import EvaluationResult, Scoring
    from ..observability.recorder import Recorder

__all__ = ["evaluate"]


@click.command("eval")
@click.argument("file", type=FILE)
@click.option("--dataset", type=click.Path(path_type=Path),
              help="Rows with inputs and expected columns (.jsonl, .csv, .json). "
                   "Default: evaluation.dataset.")  # fmt: skip
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=16, show_default=True,
              help="Rows running at once.")  # fmt: skip
@click.option("--llm", metavar="PROVIDER[:MODEL]", help="Use this model for every node.")
@click.option("--judge-llm", metavar="PROVIDER[:MODEL]", help="Use this model for every judge.")
@click.option("--baseline", metavar="RUN_ID|latest",
              help="Compare with this evaluation run, or the latest of this workflow and "
                   "dataset.")  # fmt: skip
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Write one JSON line per row: outputs, scores, rationales.",
)
@click.option("--resume", is_flag=True, help="Continue OUTPUT: skip rows that succeeded there.")
@click.option("--max-cost-usd", type=click.FloatRange(min=0),
              help="Stop starting rows once the runs and judges cost this.")  # fmt: skip
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Label the runs and the evaluation run (with --traces: only traces with it).",
)
@click.option("--trace", is_flag=True, help="Record in MLflow (whatever the file says).")
@click.option(
    "--wait",
    is_flag=True,
    help="Also wait for the assessments to be written (a CI runner that goes away).",
)
@click.option("--traces", is_flag=True, help="Score runs already recorded instead of running.")
@click.option(
    "--period",
    type=click.Choice(PERIODS),
    default=None,
    help="With --traces: only traces of this UTC period.",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="With --traces: most traces scored (newest first).")  # fmt: skip
def evaluate(
    file: Path,
    dataset: Path | None,
    concurrency: int,
    llm: str | None,
    judge_llm: str | None,
    baseline: str | None,
    output: Path | None,
    resume: bool,
    max_cost_usd: float | None,
    tags: tuple[str, ...],
    trace: bool,
    wait: bool,
    traces: bool,
    period: str | None,
    limit: int,
) -> None:
    """Score a workflow FILE with its `evaluation:` scorers, on every row of a dataset (or on
    its recorded runs with --traces), and gate on `pass_if`.

    Exit codes: 0 pass_if holds (without one: every row ran and succeeded), 1 it does not,
    2 bad input, 3 budget reached, 130 interrupted.
    """
    from ..evaluation import EvaluationSetupError, Scoring
    from ..llm import parse_llm_override

    workflow = runnable(file, llm)
    if judge_llm is not None:
        try:
            parse_llm_override(judge_llm)
        except ValueError as exc:
            fail_input(f"--judge-llm: {exc}")
    labels = parse_tags(tags)
    explicit = click.get_current_context().get_parameter_source("concurrency")
    given = explicit is not click.core.ParameterSource.DEFAULT
    if traces and (dataset or resume or output or baseline or llm or max_cost_usd or given):
        fail_input("--traces scores recorded runs without running anything: --dataset, "
                   "--output, --resume, --baseline, --llm, --concurrency and --max-cost-usd do "
                   "not apply")  # fmt: skip
    if not traces and period is not None:
        fail_input("--period applies only with --traces")
    try:
        scoring = Scoring(workflow, judge_llm=judge_llm, trace=True if traces or trace else None)
    except EvaluationSetupError as exc:
        fail_input(str(exc))
    recorder: Recorder | None
    if traces:
        result, recorder = _score_recorded(workflow, scoring, period, labels, limit)
    else:
        result, recorder = _run_dataset(workflow, scoring, dataset, llm, concurrency, baseline,
                                        output, resume, max_cost_usd, labels, trace)  # fmt: skip
    from .eval_display import show_evaluation

    show_evaluation(result)
    if recorder is not None and result.record_key is not None:
        _wait_for_the_run(recorder, result, everything=traces or wait)
    elif recorder is None:
        click.echo("tracing is off: the scores are not recorded in MLflow (--trace, or "
                   "observability.mlflow.enabled, records them)", err=True)  # fmt: skip
    sys.exit(result.exit_code)


def _wait_for_the_run(recorder: Recorder, result: EvaluationResult, *, everything: bool) -> None:
    """Wait for the evaluation run to be written (the traces before it are) and say its id.

    Its assessments follow in the background writer, which outlives this command, unless
    ``everything`` (``--wait``, and scoring recorded traces, whose next call skips the traces
    they score): then the assessments are waited for too, within the same timeout.
    """
    from ..observability.recorder import FLUSH_TIMEOUT_ENV

    assert result.record_key is not None
    timeout = float(os.environ.get(FLUSH_TIMEOUT_ENV, "60"))
    deadline = time.monotonic() + timeout
    run_id = recorder.flush_run(result.record_key, timeout)
    where = recorder.destination
    if run_id is None:
        click.echo(f"The evaluation run is spooled for {where}; `configurable-agents "
                   "observability flush` writes it", err=True)  # fmt: skip
        return
    click.echo(f"Evaluation run {run_id} written to {where} (--baseline {run_id} compares "
               "with it)", err=True)  # fmt: skip
    if not everything:
        click.echo("The background writer attaches the assessments to the traces", err=True)
        no_exit_wait()  # the spool is durable and the writer outlives this process
    elif recorder.flush(max(0.0, deadline - time.monotonic())):
        click.echo("The assessments are attached to the traces", err=True)
    else:
        click.echo("Some assessments are still spooled; `configurable-agents observability "
                   "flush` writes them", err=True)  # fmt: skip


def _score_recorded(
    workflow: Any, scoring: Scoring, period: str | None, labels: dict[str, str], limit: int
) -> tuple[EvaluationResult, Recorder]:
    """Score the workflow's recorded traces (``--traces``)."""
    import asyncio

    from ..api import observers_for
    from ..evaluation.traces import score_traces
    from ..observability.recorder import Recorder
    from ..reports import ReportError, date_range

    try:
        start, end = date_range(period, None, None)
    except ReportError as exc:
        fail_input(str(exc))
    recorder = next(
        o for o in observers_for(workflow, env={}, trace=True) if isinstance(o, Recorder)
    )
    result = asyncio.run(score_traces(recorder, scoring, start_ms=start, end_ms=end, tags=labels,
                                      limit=limit))  # fmt: skip
    if not result.rows:
        click.echo(f"no unscored trace of {workflow.name!r} in {recorder.destination} matches: "
                   "nothing to score", err=True)  # fmt: skip
    elif result.pass_if is None and workflow.config.evaluation.pass_if is not None:
        click.echo("pass_if reads a scorer that needs a dataset column (or the baseline), "
                   "which recorded traces do not have: no gate", err=True)  # fmt: skip
    return result, recorder


def _run_dataset(
    workflow: Any,
    scoring: Scoring,
    dataset: Path | None,
    llm: str | None,
    concurrency: int,
    baseline: str | None,
    output: Path | None,
    resume: bool,
    max_cost_usd: float | None,
    labels: dict[str, str],
    trace: bool,
) -> tuple[EvaluationResult, Recorder | None]:
    """Run and score every row of the dataset."""
    import asyncio

    from ..api import prepare_workflow
    from ..batch import DatasetError, read_rows
    from ..engine import SetupError
    from ..evaluation import BaselineError, EvaluationSetupError
    from ..evaluation.run import aevaluate, dataset_path
    from .batch import Progress

    if resume and output is None:
        fail_input("--resume continues an --output file: give -o")
    try:
        path = dataset_path(workflow, dataset)
        rows = read_rows(path, workflow)
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
        if max_cost_usd is not None:
            prepared.check_budget_enforceable("--max-cost-usd")
            for judge in scoring.judges.all_prepared(scoring.scorers):
                judge.check_budget_enforceable("--max-cost-usd (a judge's model)")
    except (DatasetError, SetupError, EvaluationSetupError) as exc:
        fail_input(str(exc))
    with Progress("eval") as progress:

        async def main() -> EvaluationResult:
            return await aevaluate(
                prepared, scoring, rows, dataset=path, output=output, resume=resume,
                concurrency=concurrency, max_cost_usd=max_cost_usd, baseline=baseline,
                tags=labels, on_progress=progress.update, on_start=progress.start,
            )  # fmt: skip

        try:
            result = asyncio.run(main())
        except (DatasetError, EvaluationSetupError, BaselineError) as exc:
            fail_input(str(exc))
        finally:
            prepared.close()  # its MCP servers
    return result, recorder_of(prepared)
