"""`configurable-agents resume`: go on with a run from its last checkpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import FILE, fail_input, parse_tags, runnable
from .run import finish, parse_inputs, run_live

if TYPE_CHECKING:
    from ..engine import NodeRecord, RunResult

__all__ = ["resume"]


@click.command()
@click.argument("file", type=FILE)
@click.argument("run_id")
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="The answer to what the run waits for: the waiting node's outputs (JSON for lists and "
    "objects, @path reads a file), or approved=false to decline an approval.",
)
@click.option("--input-file", type=click.Path(path_type=Path), help="The answer from JSON or YAML.")
@click.option(
    "--llm", metavar="PROVIDER[:MODEL]", help="Use this model for every node (mock: offline)."
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the result as JSON.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Label this attempt.")
@click.option("--trace", is_flag=True, help="Record this run in MLflow (whatever the file says).")
@click.option("--wait", is_flag=True, help="Wait until the trace is written to the store.")
@click.option("--verbose", "-v", is_flag=True, help="Show prompts, tool calls and outputs.")
def resume(
    file: Path,
    run_id: str,
    pairs: tuple[str, ...],
    input_file: Path | None,
    llm: str | None,
    output: Path | None,
    tags: tuple[str, ...],
    trace: bool,
    wait: bool,
    verbose: bool,
) -> None:
    """Go on with run RUN_ID of workflow FILE from its last completed node.

    A run that failed, timed out, reached its budget, was interrupted or waits for a person
    goes on from its checkpoint; calls that completed are not made again, and the result's cost
    and tokens are the whole run's.

    Exit codes: as `run` (0 success, 1 failed, 2 bad input or not resumable, 3 budget exceeded,
    4 timeout, 6 waiting, 130 interrupted).
    """
    import asyncio

    from ..api import prepare_workflow
    from ..config.state import StateField
    from ..engine import SetupError
    from ..engine.durable import ResumeError, ResumeInputError

    workflow = runnable(file, llm)
    answer = parse_inputs(workflow, pairs, input_file, {"approved": StateField(type="bool")})
    labels = parse_tags(tags)
    try:
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
    except (SetupError, ValueError) as exc:
        fail_input(str(exc))

    def start(on_record: Callable[[NodeRecord], None]) -> Awaitable[RunResult]:
        return prepared.aresume(run_id, answer, tags=labels, on_record=on_record)

    try:
        asyncio.run(prepared.acheck_resume(run_id, answer))
    except ResumeInputError as exc:
        for error in exc.errors:
            click.echo(f"--input {'.'.join(error['loc'])}: {error['msg']}", err=True)
        fail_input(f"{exc} (the run is unchanged)")
    except ResumeError as exc:
        fail_input(str(exc))
    finish(prepared, file, run_live(prepared, start, verbose), output, wait, llm)
