"""`configurable-agents run`: one run of a workflow, shown live, its outputs printed as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import (
    EXIT_CODES,
    FILE,
    fail_input,
    flush_recording,
    no_exit_wait,
    parse_tags,
    recorder_of,
    runnable,
    say_where,
    write,
)

if TYPE_CHECKING:
    from ..config.loader import Workflow
    from ..engine import NodeRecord, PreparedWorkflow, RunResult

__all__ = ["finish", "parse_inputs", "run", "run_live", "run_metrics"]

Start = Callable[["Callable[[NodeRecord], None]"], Awaitable["RunResult"]]
"""Starts the run, given the display's record listener."""


@click.command()
@click.argument("file", type=FILE)
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A state field's value (JSON for lists and objects, @path reads a file).",
)
@click.option("--input-file", type=click.Path(path_type=Path), help="Inputs from JSON or YAML.")
@click.option(
    "--llm", metavar="PROVIDER[:MODEL]", help="Use this model for every node (mock: offline)."
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the result as JSON.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Label the run.")
@click.option(
    "--session",
    metavar="ID",
    help="Put the run in this session: MLflow groups its traces, and `scope: session` fields "
    "carry over from the session's previous run.",
)
@click.option("--trace", is_flag=True, help="Record this run in MLflow (whatever the file says).")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the trace is written to the store, up to $CONFIGURABLE_AGENTS_FLUSH_TIMEOUT "
    "seconds (default 60). Without it the trace is spooled on disk and the background writer "
    "writes it after the command ends.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show prompts, tool calls and outputs.")
def run(
    file: Path,
    pairs: tuple[str, ...],
    input_file: Path | None,
    llm: str | None,
    output: Path | None,
    tags: tuple[str, ...],
    session: str | None,
    trace: bool,
    wait: bool,
    verbose: bool,
) -> None:
    """Run a workflow FILE and print its outputs as JSON.

    Exit codes: 0 success, 1 failed, 2 bad input, 3 budget exceeded, 4 timeout, 6 waiting for
    a person (`resume` goes on), 130 interrupted.
    """
    from ..api import prepare_workflow
    from ..engine import InputError, SetupError, check_inputs

    workflow = runnable(file, llm)
    inputs = parse_inputs(workflow, pairs, input_file)
    labels = parse_tags(tags)
    try:
        check_inputs(workflow, inputs)
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
    except (InputError, SetupError) as exc:
        fail_input(str(exc))

    def start(on_record: Callable[[NodeRecord], None]) -> Awaitable[RunResult]:
        return prepared.arun(inputs, tags=labels, on_record=on_record, session_id=session)

    finish(prepared, file, run_live(prepared, start, verbose), output, wait, llm)


def finish(
    prepared: PreparedWorkflow,
    file: Path,
    outcome: tuple[RunResult | None, bool],
    output: Path | None,
    wait: bool,
    llm: str | None,
) -> None:
    """Report a run (or a resumed attempt) and exit with its status's code; one that can go on
    says how (``llm``: the ``--llm`` it ran with, repeated in that command)."""
    from ..engine.durable import checkpoints_enabled

    result, interrupted = outcome
    if result is None:
        click.echo("interrupted before the run started", err=True)
        sys.exit(130)
    _report(result, prepared, output, wait)
    again = f"configurable-agents resume {file} {result.run_id}" + (f" --llm {llm}" if llm else "")
    if result.waiting:
        _say_waiting(result, again)
    elif result.status.value != "success" and checkpoints_enabled(prepared.workflow):
        click.echo(f"resume it: {again}", err=True)
    sys.exit(130 if interrupted else EXIT_CODES[result.status.value])


def _say_waiting(result: RunResult, again: str) -> None:
    """Tell the person what the run waits for and how to go on (``again`` resumes it); a
    resume answers the first question, and the run then asks the next."""
    for waiting in result.waiting:
        where = f" (item {waiting.item_index})" if waiting.item_index is not None else ""
        click.echo(f"waiting for {waiting.kind} at node {waiting.node!r}{where}: "
                   f"{waiting.prompt}", err=True)  # fmt: skip
    first = result.waiting[0]
    names = list(first.outputs.get("properties") or {})
    given = " ".join(f"-i {name}=..." for name in names)
    if first.kind == "approval":
        given = "(or -i approved=false to decline)"
    more = " (answers the first; the run then asks the next)" if len(result.waiting) > 1 else ""
    click.echo(f"resume it: {again} {given}".rstrip() + more, err=True)


def run_live(
    prepared: PreparedWorkflow, start: Start, verbose: bool
) -> tuple[RunResult | None, bool]:
    """Run ``start`` under the live display (and the metrics endpoint, if configured).

    Args:
        prepared: The workflow to run.
        start: Starts the run (or the resumed attempt) with the display's record listener.
        verbose: Show prompts, tool calls and outputs.

    Returns:
        The result (None if Ctrl-C came before the run started) and whether Ctrl-C came.
    """
    import asyncio

    from .display import RunDisplay

    holder: dict[str, RunResult] = {}
    interrupted = False
    active: AbstractContextManager[None] = nullcontext()
    if prepared.workflow.config.config.observability.prometheus.enabled:
        active = run_metrics(prepared)
    with active, RunDisplay(prepared.workflow.name, verbose=verbose) as display:

        async def main() -> None:
            holder["result"] = await start(display.on_record)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            interrupted = True
        finally:
            prepared.close()  # its MCP servers
    return holder.get("result"), interrupted


def _report(result: RunResult, prepared: PreparedWorkflow, output: Path | None, wait: bool) -> None:
    """Write the result (``--output``), print the outputs, the error, where the trace is, and
    the closing cost line.

    Args:
        result: The run's result.
        prepared: The workflow that ran (for its recorder).
        output: The ``--output`` file, if given.
        wait: Wait for the trace to reach the store (``--wait``).
    """
    from .display import closing_line

    if output is not None:
        write(json.dumps(result.to_dict(), indent=2, default=str) + "\n", output)
    click.echo(json.dumps(result.outputs, indent=2, ensure_ascii=False, default=str))
    if result.error:
        click.echo(f"{result.status.value}: {result.error}", err=True)
        if result.status.value != "success":
            click.echo("partial state: " + json.dumps(result.state, default=str), err=True)
    recorder = recorder_of(prepared)
    if result.trace_id and recorder is not None:
        if wait:
            flush_recording(recorder, f"Trace {result.trace_id}", default_timeout=60)
        else:
            say_where(recorder, f"Trace {result.trace_id}")
            no_exit_wait()  # the spool is durable and the writer outlives this process
    click.echo(closing_line(result), err=True)


def parse_inputs(
    workflow: Workflow,
    pairs: tuple[str, ...],
    input_file: Path | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``--input-file`` values, then the ``--input KEY=VALUE`` ones, coerced to the fields'
    types; exit 2 on a bad one.

    Args:
        workflow: The workflow whose state fields are given.
        pairs: The ``--input`` options.
        input_file: The ``--input-file`` option, if given.
        extra: Names that are not state fields but may be given, with their field spec.

    Returns:
        Each field's value.
    """
    from ..config.diagnostics import closest
    from ..engine import coerce_text

    values: dict[str, Any] = {}
    if input_file is not None:
        values.update(_read_mapping(input_file))
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            fail_input(f"--input {pair!r}: expected key=value")
        spec = workflow.fields.get(name) or (extra or {}).get(name)
        if spec is None:
            guess = closest(name, workflow.fields)
            fail_input(
                f"--input {name!r}: no such state field"
                + (f" (did you mean {guess!r}?)" if guess else "")
            )
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                fail_input(f"--input {name}: cannot read {raw[1:]}: {exc}")
        try:
            values[name] = coerce_text(spec, raw)
        except ValueError as exc:
            fail_input(f"--input {name}: {exc}")
    return values


def _read_mapping(path: Path) -> dict[str, Any]:
    """The field values of an ``--input-file`` (JSON or YAML); exit 2 if it is not a mapping.

    Args:
        path: The file.

    Returns:
        Its mapping of field names to values.
    """
    from ..config.source import SourceError, read_source

    try:
        document = read_source(path)
    except SourceError as exc:
        fail_input(f"--input-file {exc.diagnostic.format()}")
    if not isinstance(document.data, dict):
        fail_input(f"--input-file {path}: expected a mapping of field names to values")
    return document.data


def run_metrics(prepared: PreparedWorkflow) -> AbstractContextManager[None]:
    """For `run`: serve the workflow's metrics as `config.observability.prometheus` says.

    A missing package or a busy port is reported on stderr; the run goes on without metrics.

    Args:
        prepared: The workflow about to run.

    Returns:
        A context manager counting the run as active while it runs.
    """
    config = prepared.workflow.config.config.observability.prometheus
    try:
        from ..observability.prometheus import Metrics, serve_metrics
    except ImportError:
        click.echo(
            "warning: observability.prometheus needs `pip install 'configurable-agents[server]'`",
            err=True,
        )
        return nullcontext()
    metrics = Metrics.for_workflow(prepared)
    try:
        serve_metrics(metrics, config)
    except OSError as exc:
        click.echo(
            f"warning: metrics not served on :{config.port}: {exc.strerror or exc}", err=True
        )
        return nullcontext()
    click.echo(f"metrics on http://0.0.0.0:{config.port}{config.path}", err=True)
    return metrics.running()
