"""What `configurable-agents eval` prints: a table per scorer, the regressions, the verdict."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..evaluation import Comparison, EvaluationResult

__all__ = ["show_evaluation"]

_SHOWN_REGRESSIONS = 10
"""Row ids listed per scorer that regressed (the rest are counted)."""


def _delta(comparison: Comparison | None) -> str:
    if comparison is None or comparison.delta is None:
        return "-"
    mark = " *" if comparison.significant else ""
    p = f" (p={comparison.p_value:.3f})" if comparison.p_value is not None else ""
    return f"{comparison.delta * 100:+.1f} pts{p}{mark}"


def show_evaluation(result: EvaluationResult) -> None:
    """Print the scorers' table and the totals on stdout, then the gate's verdict.

    Args:
        result: The evaluation's result.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)
    table = Table(title=f"{result.workflow}: {result.rows} row(s) of {result.dataset}")
    for column in ("scorer", "type", "mean", "passed", "failed", "skipped", "errors"):
        table.add_column(column, justify="left" if column in ("scorer", "type") else "right")
    if result.baseline_run_id:
        table.add_column("Δ baseline", justify="right")
    for name, summary in result.scorers.items():
        mean = "-" if summary.mean is None else f"{summary.mean:.3f}"
        failed = f"{summary.failed}" + (
            f" ({summary.run_failed} run)" if summary.run_failed else ""
        )
        cells = [name, summary.type, mean, str(summary.passed), failed, str(summary.skipped),
                 str(summary.errors)]  # fmt: skip
        if result.baseline_run_id:
            cells.append(_delta(result.comparisons.get(name)))
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"rows: {result.rows}, runs failed: {result.rows_failed}; workflow cost "
        f"${result.workflow_cost_usd:.6f}, judge cost ${result.judge_cost_usd:.6f}",
        highlight=False,
    )
    if result.baseline_note:
        console.print(f"baseline: {result.baseline_note}", highlight=False)
    if result.baseline_run_id:
        console.print(f"baseline: run {result.baseline_run_id} (* = beyond noise, sign test "
                      "p < 0.05)", highlight=False)  # fmt: skip
        for name, comparison in result.comparisons.items():
            if comparison.regressions:
                shown = ", ".join(comparison.regressions[:_SHOWN_REGRESSIONS])
                more = len(comparison.regressions) - _SHOWN_REGRESSIONS
                extra = f" and {more} more" if more > 0 else ""
                console.print(f"  {name}: passed before, fail now: {shown}{extra}",
                              highlight=False)  # fmt: skip
    _verdict(result)


def _verdict(result: EvaluationResult) -> None:
    if result.stopped == "budget":
        click.echo("budget reached: no more rows started (--resume runs the rest)", err=True)
    elif result.stopped == "interrupted":
        click.echo("interrupted: running rows cancelled (--resume runs them again)", err=True)
    if result.gate_error:
        click.echo(f"FAIL: {result.gate_error}")
    elif result.pass_if is None and result.dataset == "traces":
        click.echo(f"PASS: no gate; {result.rows} recorded run(s) scored")
    elif result.pass_if is None:
        word = "PASS" if result.passed else "FAIL"
        click.echo(f"{word}: no pass_if; {result.rows_failed} run(s) failed")
    else:
        word = "PASS" if result.passed else "FAIL"
        holds = "holds" if result.passed else "does not hold"
        click.echo(f"{word}: pass_if {holds}: {result.pass_if}")
