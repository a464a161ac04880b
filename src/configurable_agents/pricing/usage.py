"""Token usage of model calls (what prices apply to), read from LangChain's ``usage_metadata``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "TokenUsage", "estimate_tokens"]

CHARS_PER_TOKEN = 4
"""Rule of thumb for estimates (and for the mock provider's counts): four characters a token."""


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` by :data:`CHARS_PER_TOKEN`, rounded up, at least 1."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one or more model calls.

    ``input_tokens`` includes cached ones and ``output_tokens`` includes reasoning ones, as
    providers report them; the details are never counted twice.

    Attributes:
        input_tokens: Prompt tokens, cached ones included.
        output_tokens: Generated tokens, reasoning ones included.
        cached_tokens: Prompt tokens read from the provider's cache.
        cache_write_tokens: Prompt tokens written to the provider's cache.
        reasoning_tokens: Generated tokens spent on reasoning.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> TokenUsage:
        """Read LangChain's ``AIMessage.usage_metadata`` (missing parts count as 0)."""
        if not metadata:
            return cls()
        inputs = metadata.get("input_token_details") or {}
        outputs = metadata.get("output_token_details") or {}
        return cls(
            input_tokens=int(metadata.get("input_tokens") or 0),
            output_tokens=int(metadata.get("output_tokens") or 0),
            cached_tokens=int(inputs.get("cache_read") or 0),
            cache_write_tokens=int(inputs.get("cache_creation") or 0),
            reasoning_tokens=int(outputs.get("reasoning") or 0),
        )
