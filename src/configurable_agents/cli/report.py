"""`configurable-agents report ...`: costs, recent runs and one run's profile, from MLflow."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..reports.query import PERIODS
from .common import fail_input, write

if TYPE_CHECKING:
    from rich.console import Console

    from ..reports import ReportQuery

__all__ = ["report"]

F = TypeVar("F", bound=Callable[..., Any])


def _filters(function: F) -> F:
    """Adds the options choosing the runs a report covers (store, experiment, period, status)."""
    options = [
        click.option("--tracking-uri", default=None, metavar="URI",
                     help="MLflow store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."),
        click.option("--experiment", default=None, help="Experiment name. Default: all."),
        click.option("--workflow", default=None, help="Only this workflow's runs."),
        click.option("--period", type=click.Choice(PERIODS), default=None,
                     help="A UTC period; --start-date/--end-date narrow it."),
        click.option("--start-date", default=None, metavar="YYYY-MM-DD",
                     help="First UTC day covered."),
        click.option("--end-date", default=None, metavar="YYYY-MM-DD",
                     help="Last UTC day covered (inclusive)."),
        click.option("--status", type=click.Choice(["success", "failure", "waiting"]),
                     default=None, help="Only runs that succeeded, only runs that did not, or "
                     "only runs waiting for a person (not resumed since)."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _query(options: dict[str, Any]) -> ReportQuery:
    """The query the ``_filters`` options describe; ReportError on bad dates."""
    from ..reports import ReportQuery, date_range, default_tracking_uri

    start, end = date_range(options["period"], options["start_date"], options["end_date"])
    return ReportQuery(
        tracking_uri=options["tracking_uri"] or default_tracking_uri(),
        experiment=options["experiment"],
        workflow=options["workflow"],
        start_ms=start,
        end_ms=end,
        status=options["status"],
    )


def _console() -> Console:
    """A terminal's own width; piped or redirected, wide enough that ids are never cut."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


@click.group()
def report() -> None:
    """Cost and run reports over the runs recorded in MLflow."""


def _breakdowns(given: tuple[str, ...]) -> tuple[str, ...]:
    """The breakdowns asked for; a bare ``--breakdown`` (or none) stands for the defaults."""
    from ..reports import DEFAULT_BREAKDOWNS

    named = tuple(b for b in given if b)
    defaults = DEFAULT_BREAKDOWNS if len(named) < len(given) or not given else ()
    return tuple(dict.fromkeys(defaults + named))


@report.command()
@_filters
@click.option(
    "--breakdown",
    "breakdowns",
    multiple=True,
    is_flag=False,
    flag_value="",
    metavar="[workflow|model|node|tag:KEY]",
    help="Break costs down by workflow, model, node and/or the value of any run tag "
    "(tag:user_id; runs without it as '(none)'). Repeatable; alone, or not given: workflow "
    "and model. By node and by tag read every run: slower.",
)
@click.option(
    "--aggregate-by",
    type=click.Choice(["daily", "weekly", "monthly"]),
    default=None,
    help="Also give costs and runs per UTC day, ISO week or month.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report to FILE instead of the terminal.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option(
    "--chart",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="Also draw cost over time to FILE.png or FILE.html.",
)
@click.option(
    "--chart-by",
    type=click.Choice(["workflow", "model"]),
    default="workflow",
    show_default=True,
    help="Stack the chart's bars by workflow or by model.",
)
def costs(breakdowns: tuple[str, ...], aggregate_by: str | None, output: Path | None, fmt: str,
          chart: Path | None, chart_by: str, **options: Any) -> None:  # fmt: skip
    """What runs cost: totals, breakdowns, periods; unpriced runs counted apart."""
    from ..reports import ReportError, cost_report, render, write_chart
    from ..reports.chart import CHART_SUFFIXES
    from ..reports.export import check_writable

    try:
        query = _query(options)
        for path, option in ((output, "--output"), (chart, "--chart")):
            if path is not None:
                check_writable(path, option)
        if chart is not None and chart.suffix.lower() not in CHART_SUFFIXES:
            raise ReportError(f"--chart {chart}: must end in .png or .html")
        result = cost_report(
            query,
            breakdown=_breakdowns(breakdowns),
            aggregate_by=aggregate_by or ("daily" if chart is not None else None),
        )
        if chart is not None:
            write_chart(result, chart, chart_by)
    except ReportError as exc:
        fail_input(str(exc))
    write(render(result, fmt), output)
    if chart is not None:
        click.echo(f"chart written to {chart}", err=True)


@report.command()
@_filters
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="How many runs, newest first.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def runs(limit: int, fmt: str, **options: Any) -> None:
    """Recent runs: id, workflow, status, start, duration, tokens, cost."""
    from dataclasses import asdict

    from ..reports import ReportError, list_runs

    try:
        found = list_runs(_query(options), limit)
    except ReportError as exc:
        fail_input(str(exc))
    if fmt == "json":
        click.echo(json.dumps([asdict(run) for run in found], indent=2))
        return
    from rich.table import Table

    table = Table("id", "workflow", "status", "start (UTC)", "duration", "tokens", "cost")
    for run in found:
        cost = f"${run.cost_usd:.6f}" + (" + unpriced" if run.unpriced else "")
        table.add_row(run.trace_id, run.workflow, run.status, run.start,
                      f"{run.duration_s:.2f} s", f"{run.tokens:,}", cost)  # fmt: skip
    _console().print(table)


@report.command()
@click.argument("run_id")
@click.option(
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="MLflow store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.",
)
@click.option("--experiment", default=None, help="Experiment name (for `latest`). Default: all.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def profile(run_id: str, tracking_uri: str | None, experiment: str | None, fmt: str) -> None:
    """Per-node waterfall of time and cost of RUN_ID (a trace id, an MLflow run id, or
    `latest`); nodes over half the run's time are flagged as bottlenecks."""
    from ..reports import ReportError, ReportQuery, default_tracking_uri, profile_run

    query = ReportQuery(tracking_uri or default_tracking_uri(), experiment)
    try:
        found = profile_run(query, run_id)
    except ReportError as exc:
        fail_input(str(exc))
    if fmt == "json":
        click.echo(json.dumps(found.to_dict(), indent=2))
        return
    from rich.table import Table

    cost = f"${found.cost_usd:.6f}" + (" + unpriced calls" if found.unpriced else "")
    click.echo(f"{found.trace_id}  {found.workflow}  {found.status}  {found.start}  "
               f"{found.duration_ms:.0f} ms  {found.tokens:,} tokens  {cost}")  # fmt: skip
    table = Table("node", "start ms", "time ms", "share", "waterfall", "tokens", "cost", "")
    width = 30
    for node in found.nodes:
        offset = int(node.start_ms / max(found.duration_ms, 1e-9) * width)
        bar = " " * offset + "█" * max(1, round(node.share * width))
        label = node.node + (f" #{node.iteration}" if node.iteration else "")
        label += f" [{node.item_index}]" if node.item_index is not None else ""
        table.add_row(
            label, f"{node.start_ms:.0f}", f"{node.duration_ms:.0f}", f"{node.share:.0%}",
            bar[:width], f"{node.tokens:,}",
            "unpriced" if node.cost_usd is None else f"${node.cost_usd:.6f}",
            "BOTTLENECK" if node.bottleneck else "",
        )  # fmt: skip
    _console().print(table)
