"""Chat models for each provider, through LangChain's integrations.

Every problem that would make a call fail for sure — a missing optional extra, a missing API key —
is raised as :class:`ProviderError` when the model is created, before any call is made.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .settings import LLMSettings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["PROVIDER_KEYS", "ProviderError", "check_provider", "create_chat_model"]

PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "ollama": (),
    "mock": (),
}
"""Environment variables holding each provider's API key (the first one set is used)."""

_PACKAGES = {
    "google": ("langchain_google_genai", "ChatGoogleGenerativeAI"),
    "openai": ("langchain_openai", "ChatOpenAI"),
    "anthropic": ("langchain_anthropic", "ChatAnthropic"),
    "ollama": ("langchain_ollama", "ChatOllama"),
}


class ProviderError(Exception):
    """A provider cannot be used as configured; the message says what to install or set."""


def _api_key(settings: LLMSettings, env: Mapping[str, str]) -> str | None:
    names = PROVIDER_KEYS[settings.provider]
    for name in names:
        if env.get(name):
            return env[name]
    if names and settings.provider == "openai" and settings.api_base:
        return "not-needed"  # OpenAI-compatible servers (vLLM, LM Studio) often take no key
    if names:
        raise ProviderError(
            f"provider {settings.provider!r} needs an API key: set {' or '.join(names)}"
        )
    return None


def _chat_class(provider: str) -> Any:
    module_name, class_name = _PACKAGES[provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ProviderError(
            f"provider {provider!r} is not installed: pip install 'configurable-agents[{provider}]'"
        ) from None
    return getattr(module, class_name)


def check_provider(settings: LLMSettings, env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ProviderError` if the provider's package or key is missing."""
    env = os.environ if env is None else env
    if settings.provider == "mock":
        return
    _api_key(settings, env)
    module_name = _PACKAGES[settings.provider][0]
    if importlib.util.find_spec(module_name) is None:
        raise ProviderError(
            f"provider {settings.provider!r} is not installed: "
            f"pip install 'configurable-agents[{settings.provider}]'"
        )


def _own_async_client(model: Any) -> Any:
    """Give a ChatAnthropic its own async HTTP client.

    langchain-anthropic shares one process-wide ``httpx.AsyncClient`` between every model with the
    same base URL and timeout. Our models live in one event loop each, and runs in other threads'
    loops that share that client's connections fail with connection errors.
    """
    import anthropic

    params = model._client_params
    timeout = {"timeout": params["timeout"]} if "timeout" in params else {}
    client = anthropic.DefaultAsyncHttpxClient(base_url=params["base_url"], **timeout)
    model.__dict__["_async_client"] = anthropic.AsyncClient(**params, http_client=client)
    return model


def create_chat_model(settings: LLMSettings, env: Mapping[str, str] | None = None) -> BaseChatModel:
    """A LangChain chat model for ``settings``; retries are ours, so the client's are off."""
    env = os.environ if env is None else env
    if settings.provider == "mock":
        from .mock import MockChatModel

        return MockChatModel(model=settings.model)
    key = _api_key(settings, env)
    cls = _chat_class(settings.provider)
    common: dict[str, Any] = {"model": settings.model}
    if settings.temperature is not None:
        common["temperature"] = settings.temperature
    if settings.provider == "openai":
        import httpx

        return cls(
            **common,
            api_key=key,
            base_url=settings.api_base,
            # An httpx.Timeout is unhashable, so langchain-openai builds this model its own HTTP
            # client instead of reusing a process-wide one bound to an earlier event loop.
            timeout=httpx.Timeout(settings.timeout),
            max_retries=0,
            max_tokens=settings.max_tokens,
            stream_usage=True,
        )
    if settings.provider == "anthropic":
        extra = {"base_url": settings.api_base} if settings.api_base else {}
        model = cls(
            **common,
            api_key=key,
            timeout=settings.timeout,
            max_retries=0,
            max_tokens=settings.max_tokens or 4096,
            **extra,
        )
        return _own_async_client(model)
    if settings.provider == "google":
        return cls(
            **common,
            google_api_key=key,
            timeout=settings.timeout,
            max_retries=0,
            max_output_tokens=settings.max_tokens,
        )
    extra = {"base_url": settings.api_base} if settings.api_base else {}
    return cls(**common, num_predict=settings.max_tokens, **extra)
