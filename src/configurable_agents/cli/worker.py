"""`configurable-agents worker`: run the queue's runs of one or more workflows (Celery, Redis)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import FILE, fail_input, runnable

__all__ = ["worker"]


@click.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
@click.option("--queue", metavar="REDIS_URL", required=True,
              help="The Redis `serve --queue` and `batch --queue` enqueue runs in.")  # fmt: skip
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=8, show_default=True,
              help="Runs at once (threads).")  # fmt: skip
@click.option("--llm", metavar="PROVIDER[:MODEL]",
              help="Model for every node; producers must use the same --llm.")  # fmt: skip
@click.option("--trace", is_flag=True, help="Record in MLflow (whatever the files say).")
@click.option("--visibility-timeout", type=click.FloatRange(min=1), default=3600.0,
              show_default=True,
              help="Seconds after which a run a worker took but did not end is run again (by "
              "any worker); keep it above the workflows' execution.timeout.")  # fmt: skip
def worker(
    files: tuple[Path, ...],
    queue: str,
    concurrency: int,
    llm: str | None,
    trace: bool,
    visibility_timeout: float,
) -> None:
    """Run the runs that `serve --queue` and `batch --queue` enqueue for the workflow FILES.

    Any number of workers, on any machines, may consume the same queue. Runs are acknowledged
    once they end, so the runs of a worker that dies are run again by another. SIGTERM or Ctrl-C
    stops taking runs and lets running ones finish.
    """
    from ..api import prepare_workflow
    from ..engine import SetupError
    from ..evaluation import EvaluationSetupError
    from ..queue.app import QueueError, open_queue, workflow_key
    from ..queue.worker import run_worker

    prepared = []
    for file in files:
        try:
            prepared.append(prepare_workflow(runnable(file, llm), llm=llm, trace=trace or None))
        except SetupError as exc:
            fail_input(f"{file}: {exc}")
    try:
        runs, celery = open_queue(queue, visibility_timeout=visibility_timeout)
    except QueueError as exc:
        fail_input(str(exc))
    keys = ", ".join(workflow_key(p) for p in prepared)
    click.echo(f"worker for {keys} on {runs.path} ({concurrency} at once)", err=True)
    try:
        run_worker(prepared, runs, celery, concurrency=concurrency)
    except EvaluationSetupError as exc:  # online scoring's judge or function cannot be set up
        fail_input(f"evaluation.online: {exc}")
    finally:
        for each in prepared:
            each.close()  # its MCP servers
