"""`configurable-agents batch`: one workflow over every row of a dataset, concurrently."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import FILE, fail_input, flush_recording, parse_tags, recorder_of, runnable

if TYPE_CHECKING:
    from ..batch import BatchStats
    from ..batch.runner import RowExecutor
    from ..engine import PreparedWorkflow

__all__ = ["BATCH_EXIT", "Progress", "batch"]

BATCH_EXIT = {None: 0, "budget": 3, "interrupted": 130}
"""Exit code of `batch` for each way it stops (``BatchStats.stopped``), before failed rows."""


class Progress:
    """A Rich progress bar on stderr (done, failed, running, cost, ETA) when it is a terminal.

    Args:
        label: What the bar is of (``batch``, ``eval``).
    """

    def __init__(self, label: str = "batch") -> None:
        from rich.console import Console

        self.label = label
        self.console = Console(stderr=True)
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[red]{task.fields[failed]} failed[/] · {task.fields[running]} running"),
                TextColumn("· ${task.fields[cost]:.6f} · ETA {task.fields[eta]}"),
                console=self.console,
                refresh_per_second=8,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, stats: BatchStats) -> None:
        """Batch callback: the rows are known; show the bar, or say how many rows run."""
        if self.bar is not None:
            self.task = self.bar.add_task(self.label, total=stats.total, failed=0, running=0,
                                          cost=0.0, eta="-")  # fmt: skip
        else:
            self.console.print(f"{stats.total} row(s) to run, {stats.skipped} already done")

    def update(self, stats: BatchStats) -> None:
        """Batch callback: a row started or ended."""
        if self.task is None:
            return
        eta = stats.eta_s
        self.bar.update(
            self.task,
            completed=stats.done,
            failed=stats.failed,
            running=stats.running,
            cost=stats.cost_usd + stats.scoring_cost_usd,
            eta="-" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}",
        )


@click.command()
@click.argument("file", type=FILE)
@click.option("--inputs", "inputs", required=True, type=click.Path(path_type=Path),
              help="Rows: .jsonl, .csv or .json (a list of objects).")  # fmt: skip
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=16, show_default=True,
              help="Rows running at once.")  # fmt: skip
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("results.jsonl"),
              show_default=True, help="Results, one JSON line per row.")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue OUTPUT: skip rows that succeeded there.")
@click.option("--max-cost-usd", type=click.FloatRange(min=0), help="Stop starting rows past this.")
@click.option("--llm", metavar="PROVIDER[:MODEL]", help="Use this model for every node.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Label every row's run.")
@click.option("--trace", is_flag=True, help="Record in MLflow (whatever the file says).")
@click.option("--queue", metavar="REDIS_URL",
              help="Run rows on `worker` processes via this Redis (docs/SCALING.md).")  # fmt: skip
def batch(
    file: Path,
    inputs: Path,
    concurrency: int,
    output: Path,
    resume: bool,
    max_cost_usd: float | None,
    llm: str | None,
    tags: tuple[str, ...],
    trace: bool,
    queue: str | None,
) -> None:
    """Run a workflow FILE once per row of --inputs; write one result line per row.

    Exit codes: 0 every row succeeded, 1 some failed, 2 bad input, 3 budget reached,
    130 interrupted (the output is complete for what ran; --resume continues it).
    """
    import asyncio

    from ..api import prepare_workflow
    from ..batch import DatasetError, read_rows, run_batch
    from ..engine import SetupError

    workflow = runnable(file, llm)
    labels = parse_tags(tags)
    try:
        rows = read_rows(inputs, workflow)
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
        if max_cost_usd is not None:
            prepared.check_budget_enforceable("--max-cost-usd")
    except (DatasetError, SetupError) as exc:
        fail_input(str(exc))
    executor = _queue_executor(prepared, queue) if queue else None
    with Progress() as progress:

        async def main() -> BatchStats:
            return await run_batch(
                prepared, rows, output, inputs=inputs, resume=resume, concurrency=concurrency,
                max_cost_usd=max_cost_usd, tags=labels, on_progress=progress.update,
                on_start=progress.start, executor=executor,
            )  # fmt: skip

        try:
            stats = asyncio.run(main())
        except DatasetError as exc:
            fail_input(str(exc))
        finally:
            prepared.close()  # its MCP servers
    _report(stats, output, prepared)
    code = BATCH_EXIT[stats.stopped] or (1 if stats.failed else 0)
    sys.exit(code)


def _queue_executor(
    prepared: PreparedWorkflow, url: str
) -> Callable[[Mapping[str, str], str], RowExecutor]:
    """Makes the row executor that hands rows to the workers of the queue at ``url``.

    Args:
        prepared: The workflow the rows run.
        url: The ``--queue`` Redis URL; exit 2 if it does not answer.

    Returns:
        ``executor(tags, batch_id)`` for :func:`~configurable_agents.batch.run_batch`.
    """
    from ..queue.app import QueueError, open_queue
    from ..queue.executors import QueueRowExecutor

    try:
        runs, celery = open_queue(url)
    except QueueError as exc:
        fail_input(str(exc))
    return lambda tags, batch_id: QueueRowExecutor(prepared, runs, celery, tags, batch_id)


def _report(stats: BatchStats, output: Path, prepared: PreparedWorkflow) -> None:
    """Say on stderr what ran, why it stopped, where the traces and results are, and the cost.

    Args:
        stats: The batch's totals.
        output: The results file.
        prepared: The workflow the rows ran (for its recorder).
    """
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(stats.statuses.items())) or "none run"
    click.echo(
        f"{stats.done} row(s) run in {stats.elapsed_s:.1f} s ({stats.rate:.1f}/s): {statuses}; "
        f"{stats.skipped} skipped (already done); {stats.total - stats.done} not started",
        err=True,
    )
    if stats.stopped == "budget":
        click.echo("budget reached: no more rows started (--resume runs the rest)", err=True)
    elif stats.stopped == "interrupted":
        click.echo("interrupted: running rows cancelled (--resume runs them again)", err=True)
    recorder = recorder_of(prepared)
    if recorder is not None:
        flush_recording(recorder, "Traces and the batch run")
    unpriced = " (some models unpriced)" if stats.unpriced else ""
    click.echo(f"Results: {output}", err=True)
    click.echo(f"Batch cost: ${stats.cost_usd:.6f}, {stats.tokens:,} tokens{unpriced}", err=True)
