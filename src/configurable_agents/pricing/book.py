"""USD cost of model calls: an optional override file first, then the `genai-prices` database;
and of tool calls, from the price file.

`genai-prices` is bundled and works offline; it knows cached-input reads and writes, reasoning
tokens (billed as output) and long-context tiers. A price file (`pricing.yaml`) adds or replaces
prices for custom, self-hosted or negotiated models, with effective dates, and prices tools that
bill per call (search APIs). A model neither knows is *unpriced*: its cost is ``None``, never $0.
The offline ``mock`` provider is free, and so is a tool the price file does not name.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError

from ..config._model import ConfigModel
from .usage import TokenUsage

__all__ = [
    "PRICING_ENV",
    "ModelPrice",
    "Price",
    "PriceBook",
    "PricingError",
    "PricingFile",
    "ToolPrice",
    "load_price_book",
    "price_call",
]

PRICING_ENV = "CONFIGURABLE_AGENTS_PRICING"
"""Environment variable naming a price file, used when the workflow names none."""

_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google"}
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """The cost of a call, and where the price came from.

    Attributes:
        cost_usd: Cost in US dollars, or ``None`` when the model is unpriced.
        source: ``genai-prices <version>``, ``<price file>``, ``mock``, or why it is unpriced.
        input_usd: The part billed for input tokens, cached reads and writes included.
        output_usd: The part billed for output tokens, reasoning included.
    """

    cost_usd: Decimal | None
    source: str
    input_usd: Decimal | None = None
    output_usd: Decimal | None = None

    @classmethod
    def of(cls, input_usd: Decimal, output_usd: Decimal, source: str) -> Price:
        """A known price from its input and output parts."""
        return cls(input_usd + output_usd, source, input_usd, output_usd)


class ModelPrice(ConfigModel):
    """Prices of one model in a price file, in US dollars per million tokens."""

    provider: str
    """Provider as workflows name it (`openai`, `ollama` ...)."""

    model: str
    """Model name as workflows spell it."""

    input_per_mtok: Decimal = Field(ge=0, strict=False)
    """Uncached input tokens."""

    output_per_mtok: Decimal = Field(ge=0, strict=False)
    """Output tokens, reasoning tokens included."""

    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0, strict=False)
    """Input tokens read from the provider's cache. Default: the input price."""

    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0, strict=False)
    """Input tokens written to the provider's cache. Default: the input price."""

    effective_from: dt.date | None = Field(default=None, strict=False)
    """First day the price applies (UTC). Default: always."""

    effective_until: dt.date | None = Field(default=None, strict=False)
    """Last day the price applies (UTC). Default: forever."""

    def applies(self, provider: str, model: str, day: dt.date) -> bool:
        """Whether this entry prices ``provider/model`` on ``day``."""
        return (
            (self.provider, self.model) == (provider, model)
            and (self.effective_from is None or self.effective_from <= day)
            and (self.effective_until is None or day <= self.effective_until)
        )

    def cost(self, usage: TokenUsage, source: str) -> Price:
        """Price of ``usage``; cached and cache-write tokens are taken out of the input once."""
        cached = self.cached_input_per_mtok
        write = self.cache_write_per_mtok
        fresh = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
        input_usd = (
            fresh * self.input_per_mtok
            + usage.cached_tokens * (self.input_per_mtok if cached is None else cached)
            + usage.cache_write_tokens * (self.input_per_mtok if write is None else write)
        )
        output_usd = usage.output_tokens * self.output_per_mtok
        return Price.of(input_usd / _MILLION, output_usd / _MILLION, source)


class ToolPrice(ConfigModel):
    """The price of one tool that bills per call, in a price file."""

    name: str
    """The tool's name as the model calls it (`web_search`, `serper_search`, a custom tool's
    function name) or as the workflow names it (`mcp:SERVER/TOOL`, `module:function`), which
    wins."""

    per_call_usd: Decimal = Field(ge=0, strict=False)
    """US dollars per call that returned a result (a failed call is not charged)."""


class PricingFile(ConfigModel):
    """A price file: `models`, a list of model prices, and `tools`, a list of tool prices."""

    models: list[ModelPrice] = Field(default_factory=list)
    """Prices; the first entry matching provider, model and date wins."""

    tools: list[ToolPrice] = Field(default_factory=list)
    """Per-call prices of tools; the first entry naming the tool wins. Unnamed tools are free."""


class PricingError(Exception):
    """A price file that cannot be used; the message is located (file:line:col)."""


@dataclass(frozen=True)
class PriceBook:
    """Prices for a run: overrides from a price file, then `genai-prices`.

    Attributes:
        overrides: Model entries of the price file, in file order.
        source: The price file's path, if any.
        tools: Tool entries of the price file, in file order.
    """

    overrides: Sequence[ModelPrice] = ()
    source: str | None = None
    tools: Sequence[ToolPrice] = ()

    def price(self, provider: str, model: str, usage: TokenUsage) -> Price:
        """Price one call's usage, with the override entries in effect today (UTC)."""
        today = dt.datetime.now(dt.UTC).date()
        for entry in self.overrides:
            if entry.applies(provider, model, today):
                return entry.cost(usage, str(self.source))
        return price_call(provider, model, usage)

    def tool_price(self, name: str) -> Decimal | None:
        """What one call of tool ``name`` costs, or ``None`` if the price file names it not."""
        return next((entry.per_call_usd for entry in self.tools if entry.name == name), None)


def load_price_book(path: str | os.PathLike[str] | None = None) -> PriceBook:
    """The price book from ``path``, else from ``$CONFIGURABLE_AGENTS_PRICING``, else none.

    Raises:
        PricingError: the file is missing or invalid; every problem is listed, located.
    """
    from ..config.diagnostics import format_path
    from ..config.source import SourceError, read_source
    from ..config.structure import structure_issues

    chosen = path if path is not None else os.environ.get(PRICING_ENV)
    if not chosen:
        return PriceBook()
    try:
        document = read_source(Path(chosen))
    except SourceError as exc:
        raise PricingError(exc.diagnostic.format()) from None
    try:
        parsed = PricingFile.model_validate(document.data)
    except ValidationError as exc:
        lines = []
        for issue in structure_issues(exc, document.data, PricingFile):
            line, column = document.locate(issue.loc, key=issue.at_key) or (0, 0)
            lines.append(
                f"{document.file}:{line}:{column}: {format_path(issue.loc)}: {issue.message}"
            )
        raise PricingError("; ".join(lines)) from None
    return PriceBook(tuple(parsed.models), str(chosen), tuple(parsed.tools))


@lru_cache(maxsize=1)
def _version() -> str:
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


def price_call(provider: str, model: str, usage: TokenUsage) -> Price:
    """Price one call from `genai-prices` (tiers applied; cached and reasoning tokens at their
    own rates, never counted twice)."""
    if provider == "mock":
        return Price.of(Decimal(0), Decimal(0), "mock")
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
    return Price.of(Decimal(str(result.input_price)), Decimal(str(result.output_price)), _version())
