"""`configurable-agents validate`, `schema` and `graph`: the light commands (no LLM, no MLflow).

They import only the config package, inside each command, so they start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import FILE, write

if TYPE_CHECKING:
    from ..config.diagnostics import Diagnostic
    from ..config.loader import Workflow

__all__ = ["graph", "schema", "validate"]


@click.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
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
@click.option(
    "--resolve",
    is_flag=True,
    help="Also fetch every registry prompt the files reference and check it, and start the "
    "MCP servers their tools name to check that those tools exist.",
)
def validate(files: tuple[Path, ...], output_format: str, verbose: bool, resolve: bool) -> None:
    """Check workflow FILES and report every problem, located. Exit 1 if any is invalid.

    Offline, a registry prompt (prompts:/NAME/VERSION, prompts:/NAME@ALIAS) is checked for its
    form only; --resolve fetches each from the workflow's MLflow store and checks its text.
    Likewise an MCP tool (mcp:SERVER/TOOL) is checked for its form and a declared SERVER;
    --resolve starts (or reaches) each server and checks that it lists the TOOL.
    """
    from ..config import validate_workflow

    results = []
    invalid = False
    for path in files:
        workflow, diagnostics = validate_workflow(path)
        if resolve and workflow is not None:
            problems = _resolve(workflow)
            diagnostics = [*diagnostics, *problems]
            workflow = None if problems else workflow
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


def _resolve(workflow: Workflow) -> list[Diagnostic]:
    """Fetch the workflow's registry prompts and check them, and check the tools of its MCP
    servers: a located error per problem.

    Args:
        workflow: A valid workflow.

    Returns:
        The problems (none when every reference resolves and fits the state, and every MCP tool
        exists).
    """
    from ..config.diagnostics import Diagnostic, format_path
    from ..config.source import read_source
    from ..prompts import PromptResolutionError, resolve_prompts

    document = read_source(workflow.source) if workflow.source else None
    found = []
    try:
        resolve_prompts(workflow)
    except PromptResolutionError as exc:
        for loc, message in exc.problems:
            line, column = (document.locate(loc) if document else None) or (None, None)
            found.append(Diagnostic(message, path=format_path(loc), file=workflow.source or "",
                                    line=line, column=column, code="prompt"))  # fmt: skip
    return found + _mcp_problems(workflow)


def _mcp_problems(workflow: Workflow) -> list[Diagnostic]:
    """Start the MCP servers the workflow's nodes (and its sub-workflows' nodes, each file once)
    name and check their tools: a problem per unusable server or missing tool, located in the
    file that names it."""
    from ..config.diagnostics import Diagnostic, format_path
    from ..config.mcp_servers import referenced_mcp_tools
    from ..config.source import read_source
    from ..tools.mcp import check_mcp_tools

    found: list[Diagnostic] = []
    pending, seen = [workflow], set()
    while pending:
        each = pending.pop(0)
        pending += getattr(each, "subworkflows", {}).values()  # where sub-workflows are known
        if each.source in seen or not referenced_mcp_tools(each.config):
            continue
        seen.add(each.source)
        document = read_source(each.source) if each.source else None
        base = Path(each.source).parent if each.source else None
        for issue in check_mcp_tools(each.config, base_dir=base):
            where = document.locate(issue.loc, key=issue.at_key) if document else None
            line, column = where or (None, None)
            found.append(Diagnostic(issue.message, path=format_path(issue.loc),
                                    file=each.source or "", line=line, column=column,
                                    suggestion=issue.suggestion, code=issue.code))  # fmt: skip
    return found


def _print_result(
    name: str, workflow: Workflow | None, diagnostics: list[Diagnostic], verbose: bool
) -> None:
    """Print one file's problems, then a ✓ or ✗ summary line (and its fields and nodes).

    Args:
        name: The file, as given.
        workflow: The valid workflow, or None.
        diagnostics: Its problems and warnings.
        verbose: Also list the state fields and the nodes.
    """
    for diagnostic in diagnostics:
        click.echo(diagnostic.format())
    errors = sum(d.severity == "error" for d in diagnostics)
    if workflow is None:
        click.echo(f"✗ {name}: {_count(errors, 'error')}")
        return
    config = workflow.config
    click.echo(
        f"✓ {name}: valid ({_count(len(config.nodes), 'node')}, "
        f"{_count(len(config.edges), 'edge')})"
    )
    if verbose:
        click.echo("  state fields:")
        for field_name, spec in workflow.fields.items():
            implicit = field_name in workflow.implicit_fields
            flags = " (declared implicitly)" if implicit else ""
            flags += " (required input)" if spec.required else ""
            click.echo(f"    {field_name}: {spec.type}{flags}")
        click.echo("  nodes:")
        for node in config.nodes:
            click.echo(f"    {node.id} -> {', '.join(node.outputs)}")


def _count(number: int, noun: str) -> str:
    """``1 node``, ``2 nodes``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


@click.command()
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
    from ..config.reference import json_schema_text, markdown_reference

    text = json_schema_text() if output_format == "json" else markdown_reference()
    write(text, output)


@click.command()
@click.argument("file", type=FILE)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to this file.")
def graph(file: Path, output: Path | None) -> None:
    """Print a workflow as a Mermaid flowchart (routes, loops and fan-outs labelled)."""
    from ..config import validate_workflow
    from ..config.mermaid import to_mermaid

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        sys.exit(1)
    write(to_mermaid(workflow.config), output)
