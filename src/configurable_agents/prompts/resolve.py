"""Resolving a workflow's registry prompts once, when it is prepared.

Each reference is fetched from the workflow's MLflow store (or taken from the local cache: a
version always, an alias within its TTL), turned into our template syntax, and checked against
the state like inline text. A registry that does not answer is not fatal while the cache holds the
reference: the run uses the cached version and one warning says so.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from ..config.loader import Workflow, validate_workflow
from ..config.prompt_refs import PromptRef, from_mlflow_template
from .cache import CachedPrompt, PromptCache

__all__ = ["PromptResolutionError", "fetch", "resolve_prompts", "store_of"]

_log = logging.getLogger(__name__)
_warned: set[str] = set()


class PromptResolutionError(Exception):
    """A referenced prompt cannot be resolved (and is not cached), or does not fit the state."""


def store_of(workflow: Workflow, env: Mapping[str, str] | None = None) -> str:
    """The MLflow store holding the workflow's prompts: its tracking store."""
    from ..observability.recorder import tracking_uri

    return tracking_uri(
        workflow.config.config.observability.mlflow, os.environ if env is None else env
    )


def fetch(store: str, ref: PromptRef) -> CachedPrompt:
    """Fetch a referenced prompt version from the registry of ``store``.

    Raises:
        PromptResolutionError: no such prompt, version or alias, or the store does not answer.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ..observability.recorder import probe
    from ..observability.writer import prepare_environment

    prepare_environment(store)
    if not probe(store):
        raise PromptResolutionError(f"{ref.uri}: the MLflow store {store} does not answer")
    client = MlflowClient(store)
    try:
        if ref.version is not None:
            found = client.get_prompt_version(ref.name, ref.version)
        else:
            found = client.get_prompt_version_by_alias(ref.name, str(ref.alias))
    except MlflowException as exc:
        message = str(exc.message).splitlines()[0]
        raise PromptResolutionError(f"{ref.uri}: {message}") from None
    if found is None:
        raise PromptResolutionError(f"{ref.uri}: no such prompt version in {store}")
    template = found.template
    if not isinstance(template, str):
        raise PromptResolutionError(f"{ref.uri}: a chat prompt (a list of messages) cannot be "
                                    "a node's prompt; register it as text")  # fmt: skip
    return CachedPrompt(ref.name, int(found.version), template, time.time())


def _resolved(store: str, ref: PromptRef, cache: PromptCache) -> CachedPrompt:
    cached = cache.get(store, ref.uri)
    if cached is not None and cache.fresh(cached, alias=ref.alias is not None):
        return cached
    try:
        found = fetch(store, ref)
    except PromptResolutionError as exc:
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
    and :attr:`~configurable_agents.config.loader.Workflow.prompt_versions` set; the workflow
    itself when it references none.

    Raises:
        PromptResolutionError: a reference cannot be resolved, or its text does not fit the
            state (unknown placeholders ...), with the reference named.
    """
    refs = {node.id: node.prompt_ref for node in workflow.config.nodes if node.prompt_ref}
    if not refs:
        return workflow
    store = store_of(workflow, env)
    cache = cache or PromptCache()
    texts: dict[str, str] = {}
    versions: dict[str, str] = {}
    for node_id, ref in refs.items():
        assert ref is not None
        found = _resolved(store, ref, cache)
        texts[node_id] = from_mlflow_template(found.template)
        versions[node_id] = f"{found.name}/{found.version}"
    data: dict[str, Any] = workflow.config.model_dump(by_alias=True, exclude_unset=True)
    for node in data["nodes"]:
        if node["id"] in texts:
            node["prompt"] = texts[node["id"]]
    resolved, diagnostics = validate_workflow(data)
    if resolved is None:
        uris = {f"nodes[{i}].prompt": refs[n["id"]].uri
                for i, n in enumerate(data["nodes"]) if n["id"] in refs}  # fmt: skip
        problems = []
        for found_problem in diagnostics:
            if found_problem.severity != "error":
                continue
            where = found_problem.path
            where += f" ({uris[where]})" if where in uris else ""
            hint = found_problem.suggestion
            problems.append(f"{where}: {found_problem.message}"
                            + (f" (did you mean {hint!r}?)" if hint else ""))  # fmt: skip
        raise PromptResolutionError("; ".join(problems))
    resolved.source = workflow.source
    resolved.warnings = workflow.warnings
    resolved.prompt_versions = versions
    return resolved
