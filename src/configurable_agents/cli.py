"""The ``configurable-agents`` command line. Thin: it parses arguments and calls the package.

Exit codes: 0 success, 1 invalid workflow or failed command, 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

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
