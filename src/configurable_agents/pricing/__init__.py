"""What model calls and tool calls cost: token usage, the price file and `genai-prices`.

A bottom layer: the engine's budgets, the observers and the reports all price through it.
"""

from .book import (
    PRICING_ENV,
    ModelPrice,
    Price,
    PriceBook,
    PricingError,
    PricingFile,
    ToolPrice,
    load_price_book,
    price_call,
)
from .usage import CHARS_PER_TOKEN, TokenUsage, estimate_tokens

__all__ = [
    "CHARS_PER_TOKEN",
    "PRICING_ENV",
    "ModelPrice",
    "Price",
    "PriceBook",
    "PricingError",
    "PricingFile",
    "TokenUsage",
    "ToolPrice",
    "estimate_tokens",
    "load_price_book",
    "price_call",
]
