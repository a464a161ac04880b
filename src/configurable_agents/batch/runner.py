"""Running a workflow once per row, ``concurrency`` rows at a time, in one event loop.

Running one row is behind :class:`RowExecutor` (an async callable from a row to its result line):
:class:`LocalExecutor` runs it in this process with a prepared workflow; another executor (a
queue of workers) can replace it without touching the scheduling, the budget or the results file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .dataset import Row
from .output import ResultsFile

if TYPE_CHECKING:
    from ..engine import PreparedWorkflow, RunResult

__all__ = [
    "BATCH_ID_TAG",
    "ROW_ID_TAG",
    "BatchRunner",
    "BatchStats",
    "LocalExecutor",
    "RowExecutor",
    "row_result",
]

_log = logging.getLogger(__name__)

BATCH_ID_TAG = "batch.id"
"""Trace tag naming the batch a row's trace belongs to (also a tag of the batch's MLflow run)."""

ROW_ID_TAG = "batch.row_id"
"""Trace tag holding the row's id."""


def row_result(
    row: Row, status: str, *, error: str | None = None, result: RunResult | None = None
) -> dict[str, Any]:
    """A row's line in the results file."""
    line: dict[str, Any] = {"id": row.id, "row": row.number, "status": status}
    if result is None:
        none = {"input": 0, "output": 0, "total": 0}
        line.update(outputs={}, tokens=none, cost_usd=0.0, unpriced=False, trace_id=None)
        line.update(duration_s=0.0, error=error)
        return line
    usage = result.usage
    line.update(
        outputs=result.outputs,
        tokens={"input": usage.input_tokens, "output": usage.output_tokens,
                "total": usage.total_tokens},
        cost_usd=float(result.cost_usd),
        unpriced=result.unpriced,
        trace_id=result.trace_id,
        run_id=result.run_id,
        duration_s=round(result.duration_s, 6),
        error=result.error,
    )  # fmt: skip
    if result.attempt > 1:  # what earlier attempts (an earlier batch) spent, included above
        earlier = result.earlier
        line["earlier"] = {"cost_usd": float(earlier.cost_usd),
                           "tokens": earlier.usage.total_tokens}  # fmt: skip
    return line


class RowExecutor(Protocol):
    """Runs one row to its result line (see :func:`row_result`); never raises for a bad row."""

    async def __call__(self, row: Row) -> dict[str, Any]:
        """The row's result line; a cancelled run reports status ``cancelled``."""
        ...


class LocalExecutor:
    """Runs rows in this process and event loop with one prepared (compiled once) workflow.

    With ``runs_key`` (a workflow that keeps checkpoints), each row's run id is fixed by the key
    and the row id, and with ``resume`` a row whose run did not succeed goes on from its last
    checkpoint instead of starting again: its completed calls are not made again.
    """

    def __init__(
        self,
        prepared: PreparedWorkflow,
        tags: Mapping[str, str],
        batch_id: str,
        *,
        runs_key: str | None = None,
        resume: bool = False,
    ) -> None:
        self.prepared = prepared
        self.tags = {**tags, BATCH_ID_TAG: batch_id}
        self.runs_key = runs_key
        self.resume = resume

    async def __call__(self, row: Row) -> dict[str, Any]:
        """Run ``row``; inputs that do not fit the state make a failed row, located."""
        return (await self.result_of(row))[0]

    async def result_of(self, row: Row) -> tuple[dict[str, Any], RunResult | None]:
        """Run ``row``: its result line, and the run's result when it could start."""
        from ..engine import InputError

        if row.problem is not None:
            return row_result(row, "failed", error=f"{row.where}: {row.problem}"), None
        tags = {**self.tags, ROW_ID_TAG: row.id}
        run_id = None
        if self.runs_key is not None:
            run_id = f"{self.runs_key}-{hashlib.sha256(row.id.encode()).hexdigest()[:16]}"
        try:
            result = await self._go_on(run_id, tags) if run_id and self.resume else None
            if result is None:
                result = await self.prepared.arun(row.inputs, tags=tags, run_id=run_id)
        except InputError as exc:
            return row_result(row, "failed", error=f"{row.where}: {exc}"), None
        return row_result(row, result.status.value, result=result), result

    async def _go_on(self, run_id: str, tags: dict[str, str]) -> RunResult | None:
        """The row's run resumed from its checkpoint; None if it has none to go on from."""
        from ..engine import ResumeError

        try:
            return await self.prepared.aresume(run_id, tags=tags)
        except ResumeError:
            return None


@dataclass
class BatchStats:
    """Progress and totals of a batch (of the rows this invocation runs)."""

    total: int
    batch_id: str = ""
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    cost_usd: float = 0.0
    scoring_cost_usd: float = 0.0
    """What scoring the rows cost (an evaluation's judges), apart from the runs' own cost."""
    tokens: int = 0
    unpriced: bool = False
    statuses: Counter[str] = field(default_factory=Counter)
    trace_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    stopped: str | None = None  # "budget" or "interrupted"

    @property
    def elapsed_s(self) -> float:
        """Seconds since the batch started (until it ended)."""
        return (self.ended or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Finished rows per second so far."""
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, if there is one."""
        rate = self.rate
        return (self.total - self.done) / rate if rate else None


class BatchRunner:
    """Runs rows with an executor, writing each result line as its row finishes.

    At most ``concurrency`` rows run at once. Once ``max_cost_usd`` is reached no row starts and
    running ones finish; :meth:`interrupt` stops starting rows and cancels running ones (they are
    written with status ``cancelled``). Rows never started are not written, so ``--resume`` runs
    them.
    """

    def __init__(
        self,
        execute: RowExecutor,
        rows: list[Row],
        results: ResultsFile,
        *,
        concurrency: int,
        max_cost_usd: float | None = None,
        on_progress: Callable[[BatchStats], None] | None = None,
        batch_id: str = "",
    ) -> None:
        self.execute = execute
        self.rows = rows
        self.results = results
        self.concurrency = concurrency
        self.max_cost_usd = max_cost_usd
        self.on_progress = on_progress or (lambda stats: None)
        self.stats = BatchStats(total=len(rows), batch_id=batch_id)
        self._next = 0
        self._running: set[asyncio.Task[dict[str, Any]]] = set()

    def interrupt(self) -> None:
        """Start no more rows and cancel the running ones."""
        self.stats.stopped = "interrupted"
        for task in self._running:
            task.cancel()

    async def run(self) -> BatchStats:
        """Run every row (or until stopped); returns the totals."""
        workers = [self._worker() for _ in range(min(self.concurrency, len(self.rows)))]
        await asyncio.gather(*workers)
        self.stats.ended = time.monotonic()
        self.on_progress(self.stats)
        return self.stats

    async def _worker(self) -> None:
        while self.stats.stopped is None and self._next < len(self.rows):
            row = self.rows[self._next]
            self._next += 1
            task = asyncio.ensure_future(self.execute(row))
            self._running.add(task)
            self.stats.running += 1
            self.on_progress(self.stats)
            try:
                line = await task
            except asyncio.CancelledError:  # cancelled before the run began
                line = row_result(row, "cancelled", error="batch interrupted")
            except Exception as exc:  # an executor's bug must not stop the other rows
                _log.warning("row %s: %s: %s", row.id, type(exc).__name__, exc)
                line = row_result(row, "failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._running.discard(task)
                self.stats.running -= 1
            self._finish(line)

    def _finish(self, line: dict[str, Any]) -> None:
        stats = self.stats
        self.results.write(line)
        stats.done += 1
        stats.statuses[line["status"]] += 1
        stats.failed += line["status"] != "success"
        # a resumed row's line is its whole run; this batch spent only its last attempt
        earlier = line.get("earlier") or {"cost_usd": 0.0, "tokens": 0}
        stats.cost_usd += line["cost_usd"] - earlier["cost_usd"]
        stats.scoring_cost_usd += line.get("scoring_cost_usd", 0.0)
        stats.tokens += line["tokens"]["total"] - earlier["tokens"]
        stats.unpriced |= line["unpriced"]
        if line["trace_id"]:
            stats.trace_ids.append(line["trace_id"])
        budget = self.max_cost_usd
        spent = stats.cost_usd + stats.scoring_cost_usd
        if budget is not None and spent >= budget and stats.stopped is None:
            stats.stopped = "budget"
        self.on_progress(stats)
