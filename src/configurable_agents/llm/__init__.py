"""LLM providers (LangChain integrations and the offline mock), settings and structured outputs."""

from .settings import LLMSettings, parse_llm_override, resolve_llm
from .usage import TokenUsage

__all__ = ["LLMSettings", "TokenUsage", "parse_llm_override", "resolve_llm"]
