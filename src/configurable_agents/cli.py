"""The ``configurable-agents`` command line. Thin: it parses arguments and calls the package.

Exit codes: 0 success, 1 invalid workflow or failed command, 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ._version import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="configurable-agents",
    help="Declare an LLM workflow in one YAML file; validate, run, serve and deploy it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class OutputFormat(str, Enum):
    """How `validate` prints its findings."""

    text = "text"
    json = "json"


class SchemaFormat(str, Enum):
    """What `schema` prints."""

    json = "json"
    markdown = "markdown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"configurable-agents {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Declare an LLM workflow in one YAML file; validate, run, serve and deploy it."""


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow files (YAML, or JSON by extension).")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="text, or json for tools.")
    ] = OutputFormat.text,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list state fields and the graph.")
    ] = False,
) -> None:
    """Check workflow files and report every problem, located. Exit 1 if any file is invalid."""
    from .config import validate_workflow

    results = []
    invalid = False
    for path in files:
        workflow, diagnostics = validate_workflow(path)
        invalid |= workflow is None
        results.append((str(path), workflow, diagnostics))
    if output_format is OutputFormat.json:
        payload = [
            {
                "file": name,
                "valid": workflow is not None,
                "diagnostics": [d.to_dict() for d in diagnostics],
                **({"implicit_fields": list(workflow.implicit_fields)} if workflow else {}),
            }
            for name, workflow, diagnostics in results
        ]
        typer.echo(json.dumps(payload, indent=2))
    else:
        for name, workflow, diagnostics in results:
            _print_result(name, workflow, diagnostics, verbose)
    raise typer.Exit(1 if invalid else 0)


def _print_result(name: str, workflow: object, diagnostics: list, verbose: bool) -> None:
    for diagnostic in diagnostics:
        typer.echo(diagnostic.format())
    errors = sum(d.severity == "error" for d in diagnostics)
    if workflow is None:
        typer.echo(f"✗ {name}: {_count(errors, 'error')}")
        return
    config = workflow.config  # type: ignore[attr-defined]
    typer.echo(
        f"✓ {name}: valid ({_count(len(config.nodes), 'node')}, {_count(len(config.edges), 'edge')})"
    )
    if verbose:
        typer.echo("  state fields:")
        for field_name, spec in workflow.fields.items():  # type: ignore[attr-defined]
            implicit = field_name in workflow.implicit_fields  # type: ignore[attr-defined]
            flags = " (declared implicitly)" if implicit else ""
            flags += " (required input)" if spec.required else ""
            typer.echo(f"    {field_name}: {spec.type}{flags}")
        typer.echo("  nodes:")
        for node in config.nodes:
            typer.echo(f"    {node.id} -> {', '.join(node.outputs)}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@app.command()
def schema(
    output_format: Annotated[
        SchemaFormat, typer.Option("--format", "-f", help="json (JSON Schema) or markdown.")
    ] = SchemaFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of the workflow format (for editor completion) or the reference."""
    from .config.reference import json_schema_text, markdown_reference

    text = json_schema_text() if output_format is SchemaFormat.json else markdown_reference()
    _write(text, output)


@app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="Workflow file.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print a workflow as a Mermaid flowchart (routes and loops labelled)."""
    from .config import validate_workflow
    from .config.mermaid import to_mermaid

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            typer.echo(diagnostic.format(), err=True)
        raise typer.Exit(1)
    _write(to_mermaid(workflow.config), output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    """Console-script entry point: never shows a traceback for a user's mistake."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug of ours: say so in one line, keep details for debugging
        if os.environ.get("CONFIGURABLE_AGENTS_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set CONFIGURABLE_AGENTS_DEBUG=1 for details, and please report it)",
            err=True,
        )
        sys.exit(70)
