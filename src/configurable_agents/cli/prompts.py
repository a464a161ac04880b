"""`configurable-agents prompts`: a workflow's prompts in MLflow's prompt registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import FILE, fail_input, runnable

__all__ = ["prompts"]

_STORE = click.option(
    "--tracking-uri", default=None, metavar="URI",
    help="MLflow store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.",
)  # fmt: skip


def _store(uri: str | None) -> str:
    from ..reports import default_tracking_uri

    return uri or default_tracking_uri()


def _registry(action: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a registry operation; a refused one is a one-line error and exit 2."""
    from ..prompts.registry import RegistryError

    try:
        return action(*args, **kwargs)
    except RegistryError as exc:
        fail_input(str(exc))


@click.group()
def prompts() -> None:
    """Keep node prompts in MLflow's prompt registry: push, list, show, diff, alias.

    Exit codes: 0 done, 2 bad input or a registry that refuses (the message says which).
    """


@prompts.command()
@click.argument("file", type=FILE)
@click.option("--alias", "alias_name", metavar="ALIAS", help="Point this alias at each version.")
@click.option(
    "--rewrite",
    is_flag=True,
    help="Replace the file's inline prompts with references to the pushed versions.",
)
def push(file: Path, alias_name: str | None, rewrite: bool) -> None:
    """Register every inline node prompt of FILE as `<workflow>.<node>` in the workflow's MLflow
    store (a new version only when the text changed)."""
    from ..prompts import store_of
    from ..prompts.registry import push as push_prompts
    from ..prompts.registry import rewrite as rewrite_file

    workflow = runnable(file, None)
    store = store_of(workflow)
    pushed = _registry(push_prompts, workflow, store, alias_name=alias_name)
    if not pushed:
        click.echo(f"{file}: no inline prompt to push (every node references the registry)")
    for entry in pushed:
        state = "new version" if entry.created else "unchanged"
        label = f" @{alias_name}" if alias_name else ""
        click.echo(f"{entry.node}: {entry.uri} ({state}){label}")
    if rewrite and pushed:
        _registry(rewrite_file, file, pushed)
        click.echo(f"{file}: inline prompts replaced by their references")
    click.echo(f"registry: {store}", err=True)


@prompts.command("list")
@_STORE
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)  # fmt: skip
def list_command(tracking_uri: str | None, fmt: str) -> None:
    """List the registered prompts with their latest version and its aliases."""
    from ..prompts.registry import list_prompts

    found = _registry(list_prompts, _store(tracking_uri))
    if fmt == "json":
        click.echo(json.dumps(found, indent=2))
        return
    for entry in found:
        aliases = ", ".join(f"@{a}" for a in entry["aliases"])
        click.echo(f"{entry['name']}  v{entry['latest_version']}  {aliases}".rstrip())


@prompts.command()
@click.argument("reference", metavar="NAME[@ALIAS|/VERSION]")
@_STORE
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def show(reference: str, tracking_uri: str | None, fmt: str) -> None:
    """Show a prompt version: its template, aliases and tags (bare NAME: the latest)."""
    from ..prompts.registry import show as show_version

    found = _registry(show_version, _store(tracking_uri), reference)
    if fmt == "json":
        click.echo(json.dumps(found, indent=2))
        return
    aliases = ", ".join(f"@{a}" for a in found["aliases"]) or "none"
    click.echo(f"{found['uri']}  (aliases: {aliases})")
    click.echo(found["template"])


@prompts.command()
@click.argument("name")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1))
@_STORE
def diff(name: str, old: int, new: int, tracking_uri: str | None) -> None:
    """A unified diff of versions OLD and NEW of prompt NAME."""
    from ..prompts.registry import diff as diff_versions

    text = _registry(diff_versions, _store(tracking_uri), name, old, new)
    click.echo(text or f"{name}/{old} and {name}/{new} have the same template", nl=bool(not text))


@prompts.command()
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=click.IntRange(min=1))
@_STORE
def alias(name: str, alias_name: str, version: int, tracking_uri: str | None) -> None:
    """Point ALIAS of prompt NAME at VERSION (runs prepared from now on use it, once cached
    resolutions expire: $CONFIGURABLE_AGENTS_PROMPT_TTL, 60 s)."""
    from ..prompts.registry import alias as set_alias

    _registry(set_alias, _store(tracking_uri), name, alias_name, version)
    click.echo(f"{name}@{alias_name} -> version {version}")
