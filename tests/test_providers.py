"""Provider construction and the errors reported before any call."""

from __future__ import annotations

import importlib.util

import pytest

from configurable_agents.config.schema import Node
from configurable_agents.config.settings import LLMConfig
from configurable_agents.llm.providers import ProviderError, check_provider, create_chat_model
from configurable_agents.llm.settings import LLMSettings, parse_llm_override, resolve_llm

KEYS = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "ak-test", "GOOGLE_API_KEY": "gk-test"}


@pytest.mark.parametrize(
    ("provider", "cls"),
    [
        ("openai", "ChatOpenAI"),
        ("anthropic", "ChatAnthropic"),
        ("google", "ChatGoogleGenerativeAI"),
        ("ollama", "ChatOllama"),
        ("mock", "MockChatModel"),
    ],
)
def test_each_provider_builds_its_langchain_model(provider: str, cls: str) -> None:
    model = create_chat_model(LLMSettings(provider, "some-model", temperature=0.3), KEYS)
    assert type(model).__name__ == cls
    assert getattr(model, "model", None) == "some-model" or getattr(model, "model_name", None) == (
        "some-model"
    )


def test_openai_points_at_api_base_with_our_timeout_and_no_client_retries() -> None:
    settings = LLMSettings("openai", "gpt-4o-mini", api_base="http://127.0.0.1:9/v1", timeout=7)
    model = create_chat_model(settings, {})
    assert model.openai_api_base == "http://127.0.0.1:9/v1"
    assert model.request_timeout.read == 7
    assert model.max_retries == 0
    assert model.openai_api_key.get_secret_value() == "not-needed"


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("google", "GOOGLE_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(provider: str, variable: str) -> None:
    with pytest.raises(ProviderError, match=f"set {variable}"):
        check_provider(LLMSettings(provider, "m"), {})


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "langchain_anthropic" else real(name, *a),
    )
    with pytest.raises(ProviderError, match=r"pip install 'configurable-agents\[anthropic\]'"):
        check_provider(LLMSettings("anthropic", "m"), KEYS)


def test_node_llm_overrides_workflow_llm_field_by_field() -> None:
    workflow = LLMConfig(provider="openai", model="gpt-4o", temperature=0.2, timeout=30)
    node = Node(id="n", prompt="p", outputs=["x"], llm=LLMConfig(model="gpt-4o-mini"), timeout=5)
    settings = resolve_llm(workflow, node)
    assert settings == LLMSettings("openai", "gpt-4o-mini", temperature=0.2, timeout=5)


def test_defaults_and_overrides() -> None:
    node = Node(id="n", prompt="p", outputs=["x"])
    assert resolve_llm(LLMConfig(), node) == LLMSettings("google", "gemini-2.5-flash-lite")
    mock = resolve_llm(LLMConfig(model="gpt-4o"), node, parse_llm_override("mock"))
    assert (mock.provider, mock.model) == ("mock", "gpt-4o")
    other = resolve_llm(LLMConfig(), node, parse_llm_override("openai"))
    assert (other.provider, other.model) == ("openai", "gpt-4o-mini")
    assert parse_llm_override("anthropic:claude-x") == ("anthropic", "claude-x")
    with pytest.raises(ValueError, match="unknown provider"):
        parse_llm_override("azure:gpt")
