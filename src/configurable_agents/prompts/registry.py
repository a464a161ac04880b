"""The registry operations behind ``configurable-agents prompts``: push a workflow's inline prompts
(a new version only when the text changed), rewrite the file to reference them, list, show, diff
and move aliases. Every function talks to the store it is given, with MLflow's own client."""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.loader import Workflow
from ..config.prompt_refs import PROMPT_URI_PREFIX, to_mlflow_template

__all__ = [
    "Pushed",
    "RegistryError",
    "alias",
    "diff",
    "list_prompts",
    "push",
    "rewrite",
    "show",
]


class RegistryError(Exception):
    """A registry operation failed; the message names the prompt and the store."""


@dataclass
class Pushed:
    """One node prompt pushed to the registry.

    Attributes:
        node: The node's id (and its index in `nodes`).
        index: The node's position in the file.
        name: The registered name, ``<workflow>.<node>``.
        version: The version that holds the node's text.
        created: Whether this push made that version (else the text was unchanged).
    """

    node: str
    index: int
    name: str
    version: int
    created: bool

    @property
    def uri(self) -> str:
        """``prompts:/<name>/<version>``."""
        return f"{PROMPT_URI_PREFIX}{self.name}/{self.version}"


def _client(store: str) -> Any:
    from mlflow.tracking import MlflowClient

    from ..observability.recorder import probe
    from ..observability.writer import prepare_environment

    prepare_environment(store)
    if not probe(store):
        raise RegistryError(f"the MLflow store {store} does not answer")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter
    return MlflowClient(store)


def _call(what: str, function: Any, *args: Any) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return function(*args)
    except MlflowException as exc:
        raise RegistryError(f"{what}: {str(exc.message).splitlines()[0]}") from None


def _latest(client: Any, name: str) -> Any | None:
    """The newest version of prompt ``name``, or None if there is no such prompt."""
    if _call(name, client.get_prompt, name) is None:
        return None
    versions = list(_call(name, client.search_prompt_versions, name))
    if not versions:
        return None
    newest = max(int(v.version) for v in versions)
    return _call(name, client.get_prompt_version, name, newest)  # with its aliases


def push(workflow: Workflow, store: str, *, alias_name: str | None = None) -> list[Pushed]:
    """Register every inline node prompt as ``<workflow>.<node>``: a new version only when its
    text changed, tagged with the workflow's name and version; ``alias_name`` points at each.

    Raises:
        RegistryError: the store does not answer or refuses a write.
    """
    client = _client(store)
    flow = workflow.config.flow
    pushed = []
    for index, node in enumerate(workflow.config.nodes):
        if node.prompt_text is None:
            continue
        name = f"{flow.name}.{node.id}"
        template = to_mlflow_template(node.prompt_text)
        latest: Any = _latest(client, name)
        created = latest is None or latest.template != template
        if created:
            tags = {"workflow": flow.name, "workflow_version": flow.version or "", "node": node.id}
            message = f"pushed from {workflow.source or flow.name}"
            latest = _call(name, client.register_prompt, name, template, message, tags)
        version = int(latest.version)
        if alias_name is not None:
            _call(name, client.set_prompt_alias, name, alias_name, version)
        pushed.append(Pushed(node.id, index, name, version, created))
    return pushed


def rewrite(path: Path, pushed: list[Pushed]) -> None:
    """Replace each pushed node's inline prompt in the file with its reference, keeping the rest
    of the file (comments, layout) as it is.

    Raises:
        RegistryError: the file changed meanwhile, or cannot be written.
    """
    from ..config.source import SourceError, read_source

    try:
        document = read_source(path)
    except SourceError as exc:
        raise RegistryError(str(exc)) from None
    text = document.text
    spans = sorted(
        ((document.spans[("nodes", p.index, "prompt")], p) for p in pushed), reverse=True
    )
    for (start, end), entry in spans:
        old = text[start:end]
        kept = old[len(old.rstrip()) :]  # a block scalar's span ends with its line breaks
        text = text[:start] + json.dumps(entry.uri) + kept + text[end:]
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise RegistryError(f"cannot write {path}: {exc.strerror or exc}") from None


def list_prompts(store: str) -> list[dict[str, Any]]:
    """Every registered prompt: name, latest version, aliases and tags."""
    client = _client(store)
    found = []
    for prompt in _call("search", client.search_prompts):
        latest = _latest(client, prompt.name)
        found.append({
            "name": prompt.name,
            "latest_version": int(latest.version) if latest else None,
            "aliases": sorted(latest.aliases) if latest and latest.aliases else [],
            "tags": dict(prompt.tags or {}),
        })  # fmt: skip
    return found


def _version(client: Any, reference: str) -> Any:
    """The version ``NAME``, ``NAME@alias`` or ``NAME/version`` names (bare: the latest)."""
    if "@" in reference:
        name, _, alias_name = reference.partition("@")
        found = _call(reference, client.get_prompt_version_by_alias, name, alias_name)
    elif "/" in reference:
        name, _, version = reference.rpartition("/")
        found = _call(reference, client.get_prompt_version, name, version)
    else:
        found = _latest(client, reference)
    if found is None:
        raise RegistryError(f"{reference}: no such prompt version")
    return found


def show(store: str, reference: str) -> dict[str, Any]:
    """A prompt version: name, version, template, aliases, tags, commit message."""
    found = _version(_client(store), reference)
    return {
        "name": found.name,
        "version": int(found.version),
        "uri": f"{PROMPT_URI_PREFIX}{found.name}/{found.version}",
        "aliases": sorted(found.aliases or []),
        "commit_message": found.commit_message,
        "tags": dict(found.tags or {}),
        "template": found.template,
    }


def diff(store: str, name: str, old: int, new: int) -> str:
    """A unified diff of two versions' templates."""
    client = _client(store)
    before = _version(client, f"{name}/{old}").template
    after = _version(client, f"{name}/{new}").template
    return "".join(
        difflib.unified_diff(
            str(before).splitlines(keepends=True),
            str(after).splitlines(keepends=True),
            fromfile=f"{name}/{old}",
            tofile=f"{name}/{new}",
        )
    )


def alias(store: str, name: str, alias_name: str, version: int) -> None:
    """Point ``alias_name`` of prompt ``name`` at ``version`` (moving it if it exists)."""
    client = _client(store)
    _version(client, f"{name}/{version}")
    _call(name, client.set_prompt_alias, name, alias_name, version)
