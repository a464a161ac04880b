"""LLM providers (LangChain integrations and the offline mock), settings and structured outputs."""

from .settings import LLMSettings, parse_llm_override, resolve_llm

__all__ = ["LLMSettings", "parse_llm_override", "resolve_llm"]
