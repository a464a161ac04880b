"""Effective model settings of a node: node `llm` over `config.llm` over built-in defaults."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config.schema import Node
from ..config.settings import DEFAULT_MODEL, DEFAULT_PROVIDER, PROVIDERS, LLMConfig

__all__ = ["DEFAULT_TIMEOUT_S", "LLMSettings", "parse_llm_override", "resolve_llm"]

DEFAULT_TIMEOUT_S = 60.0
"""Seconds a model call may take when neither the node nor `config.llm` says."""


@dataclass(frozen=True)
class LLMSettings:
    """The model a node calls, fully resolved.

    Attributes:
        provider: One of :data:`configurable_agents.config.settings.PROVIDERS`.
        model: Model name as the provider spells it.
        temperature: Sampling temperature, or ``None`` for the provider's default.
        max_tokens: Most tokens generated per call, or ``None`` for the provider's default.
        api_base: Base URL of the provider's API, if not the default.
        timeout: Seconds one call may take.
    """

    provider: str
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    api_base: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S


def parse_llm_override(text: str) -> tuple[str, str | None]:
    """Parse ``--llm PROVIDER[:MODEL]``.

    Raises:
        ValueError: the provider is unknown; the message lists the known ones.
    """
    provider, _, model = text.partition(":")
    provider = provider.strip()
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    return provider, (model.strip() or None)


def resolve_llm(
    workflow_llm: LLMConfig, node: Node, override: tuple[str, str | None] | None = None
) -> LLMSettings:
    """Merge the node's `llm` over the workflow's, then apply a run-wide ``--llm`` override.

    An override that names only a provider keeps the configured model for `mock` (so a mock run
    reports the model it stands in for) and uses the provider's default model otherwise.
    """
    merged: dict[str, object] = {}
    for layer in (workflow_llm, node.llm):
        if layer is not None:
            merged.update(layer.model_dump(exclude_none=True))
    timeout = node.timeout or merged.get("timeout") or DEFAULT_TIMEOUT_S
    settings = LLMSettings(
        provider=str(merged.get("provider", DEFAULT_PROVIDER)),
        model=str(merged.get("model", DEFAULT_MODEL)),
        temperature=merged.get("temperature"),  # type: ignore[arg-type]
        max_tokens=merged.get("max_tokens"),  # type: ignore[arg-type]
        api_base=merged.get("api_base"),  # type: ignore[arg-type]
        timeout=float(timeout),  # type: ignore[arg-type]
    )
    if override is None:
        return settings
    provider, model = override
    if model is None and provider != "mock" and provider != settings.provider:
        model = DEFAULT_MODELS.get(provider, settings.model)
    return replace(settings, provider=provider, model=model or settings.model)


DEFAULT_MODELS = {
    "google": DEFAULT_MODEL,
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "ollama": "llama3.2",
}
"""Model used when ``--llm`` names only a provider other than the configured one."""
