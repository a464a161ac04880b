"""`configurable-agents observability ...`: the spool of runs waiting for MLflow, and the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import FILE, fail_input

if TYPE_CHECKING:
    from ..config.settings import MlflowConfig

__all__ = ["observability"]


@click.group()
def observability() -> None:
    """The local spool of runs waiting for MLflow, and the tracking store."""


@observability.command()
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
def flush(timeout: float | None) -> None:
    """Write every spooled run to its MLflow store now."""
    import time

    from ..observability.spool import Spool
    from ..observability.writer import drain

    spool = Spool()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        written = drain(spool, deadline=deadline)
    except Exception as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}; runs stay spooled", err=True)
        sys.exit(1)
    left = spool.pending()
    click.echo(f"wrote {written} run(s); {left} left in {spool.path}")
    sys.exit(1 if left else 0)


@observability.command()
@click.option("--to", "target", required=True, help="The MLflow server to copy runs to.")
@click.option(
    "--from",
    "source",
    default="sqlite:///mlflow.db",  # observability.recorder.FALLBACK_URI, not imported for speed
    show_default=True,
    help="The local store runs were recorded to while the server was down.",
)
def sync(target: str, source: str) -> None:
    """Copy the runs recorded locally while the server TO was down to it, and write the runs
    still spooled for it. Runs already copied are not copied again."""
    from ..observability.spool import Spool
    from ..observability.sync import copy_fallback_runs
    from ..observability.writer import drain

    if source.startswith("sqlite:///") and not Path(source.removeprefix("sqlite:///")).exists():
        fail_input(f"--from {source}: no such store")
    try:
        traces, runs = copy_fallback_runs(source, target)
        written = drain(Spool(), destination=target)
    except Exception as exc:
        message = str(exc).splitlines()[0][:300] if str(exc) else ""
        click.echo(f"error: {type(exc).__name__}: {message}; copy again later", err=True)
        sys.exit(1)
    click.echo(
        f"copied {traces} trace(s) and {runs} run(s) from {source} to {target}; "
        f"wrote {written} spooled run(s)"
    )


@observability.command()
@click.argument("file", type=FILE, required=False)
def status(file: Path | None) -> None:
    """Show the spool's backlog and, for a workflow FILE, its store's health."""
    from ..observability.spool import Spool

    spool = Spool()
    backlog = spool.backlog()
    click.echo(f"spool: {spool.path}")
    click.echo(f"waiting: {backlog['items']} run(s)")
    if backlog["oldest_age_s"] is not None:
        click.echo(f"oldest: {backlog['oldest_age_s']} s")
    if backlog["last_error"]:
        click.echo(f"last error: {backlog['last_error']}")
    if file is None:
        return
    from ..observability.maintenance import store_status

    destination, mlflow = _store_of(file)
    health = store_status(destination, mlflow.experiment_name)
    click.echo(f"store: {destination} (experiment {mlflow.experiment_name})")
    if not health.reachable:
        click.echo(f"unreachable: {health.error}")
        sys.exit(1)
    click.echo(f"last 24 h: {health.runs_24h} run(s), {health.traces_24h} trace(s)")


@observability.command()
@click.argument("file", type=FILE)
@click.option("--days", type=click.IntRange(min=1), help="Override retention_days.")
def prune(file: Path, days: int | None) -> None:
    """Delete a workflow's traces and runs older than its `retention_days`."""
    from ..observability.maintenance import prune as prune_store

    destination, mlflow = _store_of(file)
    retention = days or mlflow.retention_days
    if retention is None:
        fail_input("no retention: set config.observability.mlflow.retention_days or --days")
    try:
        traces, runs = prune_store(destination, mlflow.experiment_name, retention)
    except Exception as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"deleted {traces} trace(s) and {runs} run(s) older than {retention} day(s)")


def _store_of(file: Path) -> tuple[str, MlflowConfig]:
    """The MLflow store of workflow ``file`` and its settings; exit 2 if the file is invalid.

    Args:
        file: The workflow file.

    Returns:
        The tracking URI (the config's, else $MLFLOW_TRACKING_URI, else the local default) and
        the workflow's ``config.observability.mlflow``.
    """
    from ..config import validate_workflow
    from ..observability.recorder import tracking_uri

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        sys.exit(2)
    mlflow = workflow.config.config.observability.mlflow
    return tracking_uri(mlflow, os.environ), mlflow
