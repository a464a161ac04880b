"""`configurable-agents versions FILE`: the workflow's versions recorded in MLflow, one MLflow
model each (see :mod:`configurable_agents.observability.models`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import FILE, fail_input, runnable

if TYPE_CHECKING:
    from ..config.loader import Workflow

__all__ = ["versions"]


def _current_hash(workflow: Workflow) -> str | None:
    """The version FILE is now: its hash once its registry prompts are resolved (None when they
    cannot be)."""
    from ..observability.models import workflow_hash
    from ..prompts import PromptResolutionError, resolve_prompts

    try:
        return workflow_hash(resolve_prompts(workflow))
    except PromptResolutionError:
        return None


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


@click.command()
@click.argument("file", type=FILE)
@click.option(
    "--tracking-uri", default=None, metavar="URI",
    help="MLflow store. Default: the workflow's (config.observability.mlflow.tracking_uri, "
    "else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)  # fmt: skip
def versions(file: Path, tracking_uri: str | None, fmt: str) -> None:
    """List the versions of FILE's workflow recorded in MLflow, oldest first: each distinct
    `flow.version` and content (the hash of the file with its registry prompts resolved) is one
    MLflow model, on the experiment's "Agent versions" page. For each: when it first ran, its
    runs (traces), their cost, and the mean scores of its latest evaluation. `*` marks the
    version FILE is now.

    Exit codes: 0 listed, 2 bad input (an invalid FILE, or a store or experiment that cannot be
    read).
    """
    from mlflow.exceptions import MlflowException

    from ..observability.models import list_versions
    from ..prompts import store_of
    from ..reports import ReportError, ReportQuery
    from ..reports.query import open_store

    workflow = runnable(file, None)
    uri = tracking_uri or store_of(workflow)
    experiment = workflow.config.config.observability.mlflow.experiment_name
    try:
        store = open_store(ReportQuery(tracking_uri=uri, experiment=experiment))
        found = list_versions(store.client, store.experiment_ids[0], workflow.name)
    except ReportError as exc:
        fail_input(str(exc))
    except MlflowException as exc:
        fail_input(f"cannot read {uri}: {exc.message.splitlines()[0]}")
    current = _current_hash(workflow)
    rows = [{**summary.to_dict(), "current": summary.hash == current} for summary in found]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no version of {workflow.name} recorded in {uri} (experiment {experiment})")
        return
    _table(rows)


def _table(rows: list[dict[str, Any]]) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table("", "version", "hash", "created (UTC)", "runs", "cost", "latest evaluation",
                  "model", title=f"{rows[0]['name']}: {len(rows)} version(s)")  # fmt: skip
    for row in rows:
        scores = ", ".join(f"{name} {value:.2f}" for name, value in row["scores"].items())
        if row["evaluated_ms"] is not None:
            scores = f"{_when(row['evaluated_ms'])}: {scores or 'no means'}"
        table.add_row(
            "*" if row["current"] else "", row["version"] or "-", row["hash"],
            _when(row["created_ms"]), str(row["traces"]), f"${row['cost_usd']:.6f}", scores,
            row["model_id"],
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)
