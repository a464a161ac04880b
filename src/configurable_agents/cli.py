"""The ``configurable-agents`` command line. Thin: it parses arguments and calls the package.

Exit codes (each command's help lists its own):

- ``validate``: 0 valid, 1 invalid, 2 usage error.
- ``run``: 0 success, 1 failed, 2 bad input (an invalid workflow included), 3 budget exceeded,
  4 timeout, 130 interrupted.
- ``batch``: 0 every row succeeded, 1 some failed, 2 bad input, 3 budget reached, 130 interrupted.
- Any command: 70 internal error (a bug; the message asks for a report).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ._version import __version__

__all__ = ["app", "main"]

_FILE = click.Path(path_type=Path, dir_okay=True)  # existence is checked, with a located error


@click.group(
    name="configurable-agents",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "--version", prog_name="configurable-agents", message="%(prog)s %(version)s"
)
def app() -> None:
    """Declare an LLM workflow in one YAML file; validate, run, serve and deploy it."""


@app.command()
@click.argument("files", nargs=-1, required=True, type=_FILE)
@click.option(
    "--format",
    "-f",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text, or json for tools.",
)
@click.option("--verbose", "-v", is_flag=True, help="Also list state fields and nodes.")
def validate(files: tuple[Path, ...], output_format: str, verbose: bool) -> None:
    """Check workflow FILES and report every problem, located. Exit 1 if any is invalid."""
    from .config import validate_workflow

    results = []
    invalid = False
    for path in files:
        workflow, diagnostics = validate_workflow(path)
        invalid |= workflow is None
        results.append((str(path), workflow, diagnostics))
    if output_format == "json":
        payload = [
            {
                "file": name,
                "valid": workflow is not None,
                "diagnostics": [d.to_dict() for d in diagnostics],
                **({"implicit_fields": list(workflow.implicit_fields)} if workflow else {}),
            }
            for name, workflow, diagnostics in results
        ]
        click.echo(json.dumps(payload, indent=2))
    else:
        for name, workflow, diagnostics in results:
            _print_result(name, workflow, diagnostics, verbose)
    sys.exit(1 if invalid else 0)


def _print_result(name: str, workflow: object, diagnostics: list, verbose: bool) -> None:
    for diagnostic in diagnostics:
        click.echo(diagnostic.format())
    errors = sum(d.severity == "error" for d in diagnostics)
    if workflow is None:
        click.echo(f"✗ {name}: {_count(errors, 'error')}")
        return
    config = workflow.config  # type: ignore[attr-defined]
    click.echo(
        f"✓ {name}: valid ({_count(len(config.nodes), 'node')}, "
        f"{_count(len(config.edges), 'edge')})"
    )
    if verbose:
        click.echo("  state fields:")
        for field_name, spec in workflow.fields.items():  # type: ignore[attr-defined]
            implicit = field_name in workflow.implicit_fields  # type: ignore[attr-defined]
            flags = " (declared implicitly)" if implicit else ""
            flags += " (required input)" if spec.required else ""
            click.echo(f"    {field_name}: {spec.type}{flags}")
        click.echo("  nodes:")
        for node in config.nodes:
            click.echo(f"    {node.id} -> {', '.join(node.outputs)}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@app.command()
@click.option(
    "--format",
    "-f",
    "output_format",
    type=click.Choice(["json", "markdown"]),
    default="json",
    show_default=True,
    help="json (JSON Schema) or markdown (the config reference).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to this file.")
def schema(output_format: str, output: Path | None) -> None:
    """Print the JSON Schema of the workflow format (for editors) or the config reference."""
    from .config.reference import json_schema_text, markdown_reference

    text = json_schema_text() if output_format == "json" else markdown_reference()
    _write(text, output)


@app.command()
@click.argument("file", type=_FILE)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to this file.")
def graph(file: Path, output: Path | None) -> None:
    """Print a workflow as a Mermaid flowchart (routes, loops and fan-outs labelled)."""
    from .config import validate_workflow
    from .config.mermaid import to_mermaid

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        sys.exit(1)
    _write(to_mermaid(workflow.config), output)


EXIT_CODES = {"success": 0, "failed": 1, "budget_exceeded": 3, "timeout": 4, "cancelled": 130}
"""Exit code of `run` for each run status."""


def _fail_input(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _runnable(file: Path, llm: str | None) -> Any:
    """The valid workflow of ``file``, ``--llm`` checked; else the problems and exit 2."""
    from .config import validate_workflow
    from .llm import parse_llm_override

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        sys.exit(2)
    if llm is not None:
        try:
            parse_llm_override(llm)
        except ValueError as exc:
            _fail_input(f"--llm: {exc}")
    return workflow


def _parse_inputs(workflow: Any, pairs: tuple[str, ...], input_file: Path | None) -> dict[str, Any]:
    from .config.diagnostics import closest
    from .engine import coerce_text

    values: dict[str, Any] = {}
    if input_file is not None:
        values.update(_read_mapping(input_file))
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            _fail_input(f"--input {pair!r}: expected key=value")
        spec = workflow.fields.get(name)
        if spec is None:
            guess = closest(name, workflow.fields)
            _fail_input(
                f"--input {name!r}: no such state field"
                + (f" (did you mean {guess!r}?)" if guess else "")
            )
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                _fail_input(f"--input {name}: cannot read {raw[1:]}: {exc}")
        try:
            values[name] = coerce_text(spec, raw)
        except ValueError as exc:
            _fail_input(f"--input {name}: {exc}")
    return values


def _read_mapping(path: Path) -> dict[str, Any]:
    from .config.source import SourceError, read_source

    try:
        document = read_source(path)
    except SourceError as exc:
        _fail_input(f"--input-file {exc.diagnostic.format()}")
    if not isinstance(document.data, dict):
        _fail_input(f"--input-file {path}: expected a mapping of field names to values")
    return document.data


def _parse_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail_input(f"--tag {pair!r}: expected key=value")
        tags[key.strip()] = value
    return tags


@app.command()
@click.argument("file", type=_FILE)
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
    trace: bool,
    wait: bool,
    verbose: bool,
) -> None:
    """Run a workflow FILE and print its outputs as JSON.

    Exit codes: 0 success, 1 failed, 2 bad input, 3 budget exceeded, 4 timeout, 130 interrupted.
    """
    import asyncio
    import contextlib

    from ._display import RunDisplay, closing_line
    from .api import prepare_workflow
    from .engine import InputError, SetupError, check_inputs

    workflow = _runnable(file, llm)
    inputs = _parse_inputs(workflow, pairs, input_file)
    try:
        check_inputs(workflow, inputs)
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
    except (InputError, SetupError) as exc:
        _fail_input(str(exc))
    holder: dict[str, Any] = {}
    interrupted = False
    active: Any = contextlib.nullcontext()
    if workflow.config.config.observability.prometheus.enabled:
        from ._cli_serve import run_metrics

        active = run_metrics(prepared)
    with active, RunDisplay(workflow.name, verbose=verbose) as display:

        async def main() -> None:
            holder["result"] = await prepared.arun(
                inputs, tags=_parse_tags(tags), on_record=display.on_record
            )

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            interrupted = True
    result = holder.get("result")
    if result is None:
        click.echo("interrupted before the run started", err=True)
        sys.exit(130)
    if output is not None:
        _write(json.dumps(result.to_dict(), indent=2, default=str) + "\n", output)
    click.echo(json.dumps(result.outputs, indent=2, ensure_ascii=False, default=str))
    if result.error:
        click.echo(f"{result.status.value}: {result.error}", err=True)
        if result.status.value != "success":
            click.echo("partial state: " + json.dumps(result.state, default=str), err=True)
    recorder = _recorder(prepared)
    if result.trace_id and wait:
        _flush_recording(recorder, f"Trace {result.trace_id}", default_timeout=60)
    elif result.trace_id:
        _say_where(recorder, f"Trace {result.trace_id}")
    click.echo(closing_line(result), err=True)
    sys.exit(130 if interrupted else EXIT_CODES[result.status.value])


def _recorder(prepared: Any) -> Any:
    """The MLflow recorder attached to ``prepared``, if it is traced."""
    from .observability.recorder import Recorder

    return prepared.observer(Recorder)


def _flush_recording(recorder: Any, what: str, default_timeout: float = 10) -> None:
    """Give the recorder's writer its exit wait, then say whether ``what`` reached the store."""
    from .observability.recorder import FLUSH_TIMEOUT_ENV

    where = recorder.destination
    if recorder.flush(float(os.environ.get(FLUSH_TIMEOUT_ENV, default_timeout))):
        click.echo(f"{what} written to {where}", err=True)
    else:
        click.echo(
            f"{what} spooled for {where}; `configurable-agents observability flush` writes it",
            err=True,
        )


def _say_where(recorder: Any, what: str) -> None:
    """Say where ``what`` is now, without waiting for the background writer."""
    where = recorder.destination
    if not recorder.spool.pending(where):
        click.echo(f"{what} written to {where}", err=True)
    else:
        click.echo(
            f"{what} spooled in {recorder.spool.path}; the background writer is writing it to "
            f"{where} (`configurable-agents observability flush` waits for it)",
            err=True,
        )


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        click.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        sys.exit(1)


from . import (  # noqa: E402  (each module registers its commands)
    _cli_batch,  # noqa: F401  (`batch`)
    _cli_deploy,  # noqa: F401  (`deploy`)
    _cli_observability,  # noqa: F401  (`observability ...`)
    _cli_report,  # noqa: F401  (`report ...`)
    _cli_serve,  # noqa: F401  (`serve`)
    _cli_worker,  # noqa: F401  (`worker`)
)


def main() -> None:
    """Console-script entry point: never shows a traceback for a user's mistake."""
    try:
        app(prog_name="configurable-agents")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug of ours: say so in one line, keep details for debugging
        if os.environ.get("CONFIGURABLE_AGENTS_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set CONFIGURABLE_AGENTS_DEBUG=1 for details, and please report it)",
            err=True,
        )
        sys.exit(70)
