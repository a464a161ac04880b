"""USD cost of model calls, from the `genai-prices` database (bundled, works offline).

A model the database does not know is *unpriced*: its cost is ``None``, never $0. The offline
``mock`` provider is free. Self-hosted ``ollama`` models are unpriced.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from ..llm.usage import TokenUsage

__all__ = ["Price", "price_call"]

_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google"}


@dataclass(frozen=True)
class Price:
    """The cost of a call, and where the price came from.

    Attributes:
        cost_usd: Cost in US dollars, or ``None`` when the model is unpriced.
        source: ``genai-prices <version>``, ``mock``, or why it is unpriced.
    """

    cost_usd: Decimal | None
    source: str


@lru_cache(maxsize=1)
def _version() -> str:
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


def price_call(provider: str, model: str, usage: TokenUsage) -> Price:
    """Price one call's usage (cached and reasoning tokens at their own rates, tiers applied)."""
    if provider == "mock":
        return Price(Decimal(0), "mock")
    provider_id = _PROVIDER_IDS.get(provider)
    if provider_id is None:
        return Price(None, f"unpriced: no public price for {provider} models")
    from genai_prices import Usage, calc_price

    try:
        result = calc_price(
            Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cached_tokens or None,
                cache_write_tokens=usage.cache_write_tokens or None,
            ),
            model,
            provider_id=provider_id,
        )
    except LookupError:
        return Price(None, f"unpriced: {provider}/{model} is not in {_version()}")
    return Price(Decimal(str(result.total_price)), _version())
