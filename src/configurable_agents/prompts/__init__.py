"""Prompts in MLflow's prompt registry: resolving a workflow's references when it is prepared
(:func:`resolve_prompts`, with a local cache), and the registry operations behind
``configurable-agents prompts`` (:mod:`.registry`). See docs/VERSIONS.md."""

from __future__ import annotations

from .cache import CACHE_ENV, TTL_ENV, PromptCache
from .resolve import PromptResolutionError, resolve_prompts, store_of

__all__ = [
    "CACHE_ENV",
    "TTL_ENV",
    "PromptCache",
    "PromptResolutionError",
    "resolve_prompts",
    "store_of",
]
