"""Batch runs: one workflow over every row of a dataset, concurrently, resumable, one trace per row.

:func:`run_batch` reads the rows, skips those already done (``resume``), runs the rest with a
:class:`~configurable_agents.batch.runner.RowExecutor` and writes one result line per row; when
the workflow is traced, each row records its trace and the batch one parent MLflow run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .dataset import DatasetError, Row, read_rows
from .output import ResultsFile, read_results
from .runner import BatchRunner, BatchStats, LocalExecutor, RowExecutor

if TYPE_CHECKING:
    from ..engine import PreparedWorkflow
    from ..observability.recorder import Recorder

__all__ = ["BatchStats", "DatasetError", "Row", "pending_rows", "read_rows", "run_batch"]


def _recorder(prepared: PreparedWorkflow) -> Recorder | None:
    from ..observability.recorder import Recorder

    return prepared.observer(Recorder)


_DONE = ("success", "waiting")
"""Statuses of rows `--resume` leaves alone."""


def _runs_key(prepared: PreparedWorkflow, output: Path) -> str | None:
    """For a workflow that keeps checkpoints: what fixes its rows' run ids, so that
    ``--resume`` finds each row's run (the output file, absolute)."""
    from ..engine.durable import checkpoints_enabled

    if not checkpoints_enabled(prepared.workflow):
        return None
    return hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:12]


def pending_rows(rows: list[Row], output: Path, *, resume: bool) -> tuple[list[Row], int]:
    """The rows to run and how many are skipped: with ``resume``, rows whose latest line in
    ``output`` has status ``success`` or ``waiting`` (a person answers it with `resume`) are
    skipped; without it, ``output`` must not exist.

    Raises:
        DatasetError: ``output`` exists without ``resume``, or cannot be read.
    """
    if not resume:
        if output.exists():
            raise DatasetError(f"{output} exists; --resume continues it (or remove it)")
        return rows, 0
    try:
        done = {i for i, line in read_results(output).items() if line.get("status") in _DONE}
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{output}: cannot read: {exc}") from None
    todo = [row for row in rows if row.id not in done]
    return todo, len(rows) - len(todo)


async def run_batch(
    prepared: PreparedWorkflow,
    rows: list[Row],
    output: Path,
    *,
    inputs: Path,
    resume: bool = False,
    concurrency: int = 16,
    max_cost_usd: float | None = None,
    tags: Mapping[str, str] | None = None,
    on_progress: Callable[[BatchStats], None] | None = None,
    on_start: Callable[[BatchStats], None] | None = None,
    executor: Callable[[Mapping[str, str], str], RowExecutor] | None = None,
    parent_run: bool = True,
) -> BatchStats:
    """Run ``prepared`` once per pending row, writing ``output``; returns the totals.

    SIGINT (Ctrl-C) stops starting rows and cancels running ones; the output is completed either
    way and keeps one line per row id. ``stats.stopped`` says whether the budget or an interrupt
    ended the batch early. ``executor(tags, batch_id)`` makes the row executor (default: rows
    run in this process, :class:`~.runner.LocalExecutor`). Without ``parent_run`` the batch
    records no MLflow run of its own (an evaluation records its evaluation run instead).

    Raises:
        DatasetError: ``output`` exists without ``resume``, or cannot be read or written.
        SetupError: ``max_cost_usd`` is set but a model of the workflow has no known price.
    """
    if max_cost_usd is not None:
        prepared.check_budget_enforceable("max_cost_usd")
    todo, skipped = pending_rows(rows, output, resume=resume)
    batch_id = uuid.uuid4().hex
    tags = dict(tags or {})
    recorder = _recorder(prepared)
    if recorder is not None:
        recorder.run_records = False  # one trace per row, one MLflow run per batch
    try:
        results = ResultsFile(output, resume=resume)
    except OSError as exc:
        raise DatasetError(f"{output}: cannot write: {exc.strerror or exc}") from None
    if executor is None:
        local = LocalExecutor(
            prepared, tags, batch_id, runs_key=_runs_key(prepared, output), resume=resume
        )
    runner = BatchRunner(
        executor(tags, batch_id) if executor else local,
        todo,
        results,
        concurrency=concurrency,
        max_cost_usd=max_cost_usd,
        on_progress=on_progress,
        batch_id=batch_id,
    )
    runner.stats.skipped = skipped
    if on_start is not None:
        on_start(runner.stats)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(RuntimeError, ValueError):  # not the main thread: callers handle it
        loop.add_signal_handler(signal.SIGINT, runner.interrupt)
    try:
        stats = await runner.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        results.close(row.id for row in rows)
    if recorder is not None and parent_run:
        from .recording import record_batch_run

        record_batch_run(
            recorder,
            stats,
            batch_id=batch_id,
            inputs=inputs,
            output=output,
            concurrency=concurrency,
            tags=tags,
        )
    return stats
