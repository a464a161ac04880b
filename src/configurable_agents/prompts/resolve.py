"""Resolving a workflow's registry prompts once, when it is prepared.

Each reference is fetched from the workflow's MLflow store (or taken from the local cache: a
version always, an alias within its TTL), turned into our template syntax, and checked against
the state like inline text. A registry that does not answer is not fatal while the cache holds the
reference: the run uses the cached version and one warning says so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config.diagnostics import Diagnostic, format_path
from ..config.loader import Workflow, validate_workflow
from ..config.prompt_refs import PromptRef, from_mlflow_template
from .cache import CachedPrompt, PromptCache

__all__ = ["FetchError", "PromptResolutionError", "fetch", "resolve_prompts", "store_of"]

_log = logging.getLogger(__name__)
_warned: set[str] = set()


class PromptResolutionError(Exception):
    """A referenced prompt cannot be resolved (and is not cached), or does not fit the state.

    Attributes:
        problems: ``(config path, message)`` of each problem, e.g. ``(("nodes", 0, "prompt"),
            "prompts:/reply@production: no such alias")``.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(f"{format_path(loc)}: {message}" for loc, message in problems))
        self.problems = problems


def store_of(workflow: Workflow, env: Mapping[str, str] | None = None) -> str:
    """The MLflow store holding the workflow's prompts: its tracking store."""
    from ..observability.recorder import tracking_uri

    return tracking_uri(
        workflow.config.config.observability.mlflow, os.environ if env is None else env
    )


class FetchError(Exception):
    """A prompt version cannot be fetched from the registry."""


def fetch(store: str, ref: PromptRef) -> CachedPrompt:
    """Fetch a referenced prompt version from the registry of ``store``.

    Raises:
        FetchError: no such prompt, version or alias, or the store does not answer.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ..observability.recorder import probe
    from ..observability.writer import prepare_environment

    prepare_environment(store)
    if not probe(store):
        raise FetchError(f"{ref.uri}: the MLflow store {store} does not answer")
    client = MlflowClient(store)
    try:
        if ref.version is not None:
            found = client.get_prompt_version(ref.name, ref.version)
        else:
            found = client.get_prompt_version_by_alias(ref.name, str(ref.alias))
    except MlflowException as exc:
        message = str(exc.message).splitlines()[0]
        raise FetchError(f"{ref.uri}: {message}") from None
    if found is None:
        raise FetchError(f"{ref.uri}: no such prompt version in {store}")
    template = found.template
    if not isinstance(template, str):
        raise FetchError(f"{ref.uri}: a chat prompt (a list of messages) cannot be "
                                    "a node's prompt; register it as text")  # fmt: skip
    return CachedPrompt(ref.name, int(found.version), template, time.time())


def _resolved(store: str, ref: PromptRef, cache: PromptCache) -> CachedPrompt:
    cached = cache.get(store, ref.uri)
    if cached is not None and cache.fresh(cached, alias=ref.alias is not None):
        return cached
    try:
        found = fetch(store, ref)
    except FetchError as exc:
        if cached is None:
            raise
        if ref.uri not in _warned:
            _warned.add(ref.uri)
            _log.warning("%s; using the cached %s/%d (fetched %s)", exc, cached.name,
                         cached.version, time.strftime("%Y-%m-%d %H:%M:%S",
                                                       time.localtime(cached.fetched)))  # fmt: skip
        return cached
    cache.put(store, ref.uri, found)
    return found


def resolve_prompts(
    workflow: Workflow,
    *,
    env: Mapping[str, str] | None = None,
    cache: PromptCache | None = None,
) -> Workflow:
    """The workflow with every registry prompt replaced by its text, checked like inline text,
    and :attr:`~configurable_agents.config.loader.Workflow.prompt_versions` set; its
    sub-workflows' prompts too (their versions keyed ``node/child_node``); the workflow itself
    when it references none.

    Raises:
        PromptResolutionError: a reference cannot be resolved, or its text does not fit the
            state (unknown placeholders ...), with the reference named.
    """
    cache = cache or PromptCache()
    children = {node_id: resolve_prompts(child, env=env, cache=cache)
                for node_id, child in workflow.subworkflows.items()}  # fmt: skip
    inner = {f"{node_id}/{key}": version for node_id, child in children.items()
             for key, version in child.prompt_versions.items()}  # fmt: skip
    refs = {node.id: node.prompt_ref for node in workflow.config.nodes if node.prompt_ref}
    if not refs:
        if all(children[n] is workflow.subworkflows[n] for n in children):
            return workflow
        merged = {**workflow.prompt_versions, **inner}
        return dataclasses.replace(workflow, subworkflows=children, prompt_versions=merged)
    store = store_of(workflow, env)
    texts: dict[str, str] = {}
    versions: dict[str, str] = {}
    index = {node.id: i for i, node in enumerate(workflow.config.nodes)}
    failed: list[tuple[tuple[str | int, ...], str]] = []
    for node_id, ref in refs.items():
        assert ref is not None
        try:
            found = _resolved(store, ref, cache)
        except FetchError as exc:
            failed.append((("nodes", index[node_id], "prompt"), str(exc)))
            continue
        texts[node_id] = from_mlflow_template(found.template)
        versions[node_id] = f"{found.name}/{found.version}"
    if failed:
        raise PromptResolutionError(failed)
    data: dict[str, Any] = workflow.config.model_dump(by_alias=True, exclude_unset=True)
    folder = Path(workflow.source).parent if workflow.source else Path()
    for node in data["nodes"]:
        if node["id"] in texts:
            node["prompt"] = texts[node["id"]]
        if node.get("workflow"):  # validated from a mapping: paths relative to the file still
            node["workflow"] = str(folder / node["workflow"])
    resolved, diagnostics = validate_workflow(data)
    if resolved is None:
        uris = {i: refs[n["id"]].uri for i, n in enumerate(data["nodes"]) if n["id"] in refs}
        raise PromptResolutionError(
            [_problem(d, uris) for d in diagnostics if d.severity == "error"]
        )
    resolved.source = workflow.source
    resolved.warnings = workflow.warnings
    resolved.prompt_versions = {**versions, **inner}
    resolved.subworkflows = children
    return resolved


def _problem(found: Diagnostic, uris: dict[int, str]) -> tuple[tuple[str | int, ...], str]:
    """A problem of the resolved workflow, at its config path, naming the prompt it is in."""
    loc = _loc(found.path)
    hint = f" (did you mean {found.suggestion!r}?)" if found.suggestion else ""
    in_prompt = loc[:1] == ("nodes",) and loc[2:3] == ("prompt",) and loc[1] in uris
    where = f"{uris[loc[1]]}: " if in_prompt and isinstance(loc[1], int) else ""
    return loc, f"{where}{found.message}{hint}"


def _loc(path: str) -> tuple[str | int, ...]:
    """``nodes[0].prompt`` as ``("nodes", 0, "prompt")``."""
    parts: list[str | int] = []
    for piece in path.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        if name:
            parts.append(name)
        parts += [int(i) for i in indexes]
    return tuple(parts)
