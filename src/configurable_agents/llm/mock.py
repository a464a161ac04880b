"""The offline ``mock`` provider: deterministic, schema-valid replies, token counts from the prompt.

It is a real LangChain chat model, so a mock run goes through exactly the code a real provider
does: tool binding, the `final_answer` structured reply, usage accounting and tracing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from ..pricing import estimate_tokens
from .outputs import FINAL_ANSWER

__all__ = ["MockChatModel", "sample_from_schema"]

MOCK_LIST_ITEMS = 3
"""Items in every list the mock returns."""


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return json.dumps(content)


def sample_from_schema(schema: dict[str, Any], defs: dict[str, Any], name: str = "value") -> Any:
    """A deterministic value valid against a JSON Schema: strings ``"mock <name>"``, numbers 1,
    booleans false, three-item lists, one-key maps, every property of objects."""
    if "$ref" in schema:
        return sample_from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return sample_from_schema(options[0], defs, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if kind == "object":
        properties = schema.get("properties", {})
        if properties:
            return {k: sample_from_schema(v, defs, k) for k, v in properties.items()}
        extra = schema.get("additionalProperties")
        return {"key": sample_from_schema(extra, defs, name)} if isinstance(extra, dict) else {}
    if kind == "array":
        items = schema.get("items", {})
        return [
            sample_from_schema(items, defs, f"{name} {i}") for i in range(1, MOCK_LIST_ITEMS + 1)
        ]
    return {"integer": 1, "number": 1.0, "boolean": False, "null": None}.get(kind, f"mock {name}")


class MockChatModel(BaseChatModel):
    """Offline chat model; answers `final_answer` with schema-valid arguments, never other tools."""

    model: str = "mock"
    """The model the mock stands in for (reported in records; the mock itself is free)."""

    @property
    def _llm_type(self) -> str:
        return "mock"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[Any, AIMessage]:
        """Bind tools as OpenAI-style tool specs, like the real integrations."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]] | None) -> ChatResult:
        prompt_tokens = sum(estimate_tokens(_text(m)) for m in messages)
        final = next(
            (t["function"] for t in tools or [] if t["function"]["name"] == FINAL_ANSWER), None
        )
        if final is None:
            content = "mock reply"
            message = AIMessage(content=content)
            completion = estimate_tokens(content)
        else:
            parameters = final.get("parameters", {})
            args = sample_from_schema(parameters, parameters.get("$defs", {}))
            call_id = f"mock_{len(messages)}"
            message = AIMessage(
                content="", tool_calls=[{"name": FINAL_ANSWER, "args": args, "id": call_id}]
            )
            completion = estimate_tokens(json.dumps(args))
        message.usage_metadata = {
            "input_tokens": prompt_tokens,
            "output_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }
        message.response_metadata = {"model_name": self.model, "model_provider": "mock"}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply(messages, kwargs.get("tools"))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply(messages, kwargs.get("tools"))
