"""LangChain's own runs inside a model or tool call, captured as MLflow autolog would trace them.

When an observer asks for them (MLflow recording with `autolog_enabled`), the engine adds a
:class:`RunCapture` to the callbacks of each model call and tool call (:func:`capture_config`; the
callbacks it would have had anyway stay). It keeps every
run LangChain reports during that call (the chat model's run per attempt, the tool's run, and any
chain, retriever, parser, LLM or tool run nested inside them) on the call's record, with the span
type, name and attributes that ``mlflow.langchain.autolog()`` gives them: the chat model's messages
(MLflow's chat format), ``invocation_params``, ``options``, ``metadata``, ``mlflow.chat.tools``,
``mlflow.chat.tokenUsage`` as LangChain reported it, ``mlflow.llm.model`` and
``mlflow.llm.provider``, ``mlflow.message.format``. After the run, the MLflow recorder
(``observability.spans``) turns them into spans of the run's own trace.

Why not MLflow's ``MlflowLangchainTracer`` itself: it creates its spans through MLflow's
process-wide OpenTelemetry tracer provider, and a run with no MLflow parent span starts an MLflow
trace of its own that MLflow's exporter writes live (dropping traces under load, or ~60 ms per
trace in sync mode). Keeping them would mean replacing the span processors of a global provider
that the user's own MLflow tracing shares, and importing MLflow (~1.9 s) in the run's process.
A callback per call has no global state: concurrent runs, fan-out branches and threads cannot
mix their runs, since each call's runs land on that call's record.

Capture never fails a call: LangChain logs and swallows a handler's errors (``raise_error`` is
false), and the handler runs inline in the caller's event loop (no thread hop per event).
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import LLMResult
from langchain_core.runnables.config import ensure_config
from pydantic import BaseModel

from .calls import describe_error
from .records import LangChainRun

__all__ = ["RunCapture", "capture_config", "chat_message"]

INPUTS = "mlflow.spanInputs"
OUTPUTS = "mlflow.spanOutputs"
USAGE = "mlflow.chat.tokenUsage"

_ROLES: list[tuple[type[BaseMessage], str]] = [
    (HumanMessage, "user"),
    (SystemMessage, "system"),
    (ToolMessage, "tool"),
    (FunctionMessage, "function"),
    (AIMessage, "assistant"),
]
# LangChain's usage keys -> MLflow's (mlflow.langchain.utils.chat._TOKEN_USAGE_KEY_MAPPING).
_USAGE_KEYS = {
    "prompt_tokens": "input_tokens",
    "completion_tokens": "output_tokens",
    "total_tokens": "total_tokens",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_input_tokens",
    "cache_creation_input_tokens": "cache_creation_input_tokens",
    "cached_content_token_count": "cache_read_input_tokens",
}


def chat_message(message: BaseMessage) -> dict[str, Any]:
    """A LangChain message in MLflow's chat format (``role``, ``content``, ``tool_calls``,
    ``tool_call_id``), as autolog records messages."""
    if isinstance(message, ChatMessage):
        role = message.role
    else:
        role = next((r for cls, r in _ROLES if isinstance(message, cls)), message.type)
    out: dict[str, Any] = {"role": role, "content": message.content}
    if isinstance(message, AIMessage):
        calls = [
            {"type": "function", "id": c["id"],
             "function": {"name": c["name"], "arguments": json.dumps(c["args"], default=str)}}
            for c in message.tool_calls
        ] + [
            {"type": "function", "id": c["id"],
             "function": {"name": c["name"], "arguments": c["args"]}}
            for c in message.invalid_tool_calls
        ]  # fmt: skip
        if calls:
            out.update(content=message.content or None, tool_calls=calls)
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
    return out


def _plain(value: Any) -> Any:
    """A JSON-ready copy: messages in chat format, documents and models as dictionaries."""
    if isinstance(value, BaseMessage):
        return chat_message(value)
    if isinstance(value, Document):
        return {"page_content": value.page_content, "metadata": _plain(value.metadata),
                "id": value.id}  # fmt: skip
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value.model_json_schema()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _usage(result: LLMResult) -> dict[str, int] | None:
    """Token usage as LangChain reported it, summed over generations, in MLflow's keys."""
    total: dict[str, int] = {}
    for generations in result.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            if message is None:
                continue
            reported = (
                getattr(message, "usage_metadata", None)
                or message.response_metadata.get("usage")
                or message.response_metadata.get("token_usage")
                or {}
            )
            usage = {_USAGE_KEYS[k]: v for k, v in reported.items() if k in _USAGE_KEYS}
            details = reported.get("input_token_details") or {}
            for key, name in (("cache_read", "cache_read_input_tokens"),
                              ("cache_creation", "cache_creation_input_tokens")):  # fmt: skip
                if isinstance(details.get(key), int):
                    usage.setdefault(name, details[key])
            if usage and "total_tokens" not in usage:
                usage["total_tokens"] = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
            for key, value in usage.items():
                total[key] = total.get(key, 0) + value
    return total or None


def _tools(invocation_params: Mapping[str, Any]) -> list[Any]:
    """The tools offered to the model, as OpenAI-style function definitions."""
    tools: list[Any] = []
    for tool in invocation_params.get("tools") or []:
        if isinstance(tool, Mapping) and tool.get("type") == "function":
            tools.append(tool)
        elif isinstance(tool, Mapping) and tool.get("name"):
            function = {"name": tool["name"], "description": tool.get("description")}
            tools.append({"type": "function", "function": function})
    return tools


def capture_config(runs: list[LangChainRun]) -> dict[str, Any]:
    """The LangChain config of a call whose runs are to be kept in ``runs``: the callbacks the
    call would have had anyway (LangGraph's, with their parent run; any tracer of the user's)
    plus a :class:`RunCapture`."""
    capture = RunCapture(runs)
    inherited = ensure_config().get("callbacks")
    if isinstance(inherited, BaseCallbackManager):
        manager = inherited.copy()
        manager.add_handler(capture)
        return {"callbacks": manager}
    return {"callbacks": [*(inherited or []), capture]}


class RunCapture(BaseCallbackHandler):
    """Keeps the LangChain runs of one model or tool call in ``runs``, as autolog spans."""

    run_inline = True
    raise_error = False

    def __init__(self, runs: list[LangChainRun]) -> None:
        super().__init__()
        self.runs = runs
        self._open: dict[UUID, LangChainRun] = {}

    def _start(
        self,
        serialized: Mapping[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        kwargs: dict[str, Any],
        span_type: str,
        default_name: str,
    ) -> LangChainRun:
        """Open a run; what LangChain passed besides its ids, name, tags and inputs becomes
        attributes, as autolog records it."""
        parent_run_id = kwargs.pop("parent_run_id", None)
        metadata = kwargs.pop("metadata", None)
        serialized = serialized or {}
        name = kwargs.pop("name", None) or serialized.get("name")
        for key in ("tags", "run_type", "inputs"):
            kwargs.pop(key, None)
        attributes = {k: _plain(v) for k, v in kwargs.items() if v is not None}
        if metadata:
            attributes["metadata"] = _plain(metadata)
        attributes[INPUTS] = _plain(inputs)
        parent = parent_run_id if parent_run_id in self._open else None
        run = LangChainRun(
            run_id=str(run_id),
            parent_run_id=str(parent) if parent else None,
            name=name or (serialized.get("id") or [default_name])[-1],
            span_type=span_type,
            started_ns=time.time_ns(),
            attributes=attributes,
        )
        self._open[run_id] = run
        self.runs.append(run)
        return run

    def _end(
        self, run_id: UUID, outputs: Any = None, error: BaseException | None = None
    ) -> LangChainRun | None:
        run = self._open.get(run_id)
        if run is None:
            return None
        run.ended_ns = time.time_ns()
        if outputs is not None:
            run.attributes[OUTPUTS] = _plain(outputs)
        if error is not None:
            run.error = describe_error(error)
        return run

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """A chat model starts: its messages, parameters, tools, model and provider."""
        inputs = {"messages": messages[0]} if len(messages) == 1 else messages
        run = self._start(serialized, inputs, run_id, kwargs, "CHAT_MODEL", "chat model")
        self._describe_model(run)

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A (non-chat) LLM starts."""
        self._describe_model(self._start(serialized, prompts, run_id, kwargs, "LLM", "llm"))

    @staticmethod
    def _describe_model(run: LangChainRun) -> None:
        params = run.attributes.get("invocation_params") or {}
        metadata = run.attributes.get("metadata") or {}
        run.attributes["mlflow.message.format"] = "langchain"
        if tools := _tools(params):
            run.attributes["mlflow.chat.tools"] = tools
        model = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
        if model:
            run.attributes["mlflow.llm.model"] = model
        provider = metadata.get("ls_provider")
        if not provider and params.get("_type"):
            provider = params["_type"].removesuffix("-chat").removeprefix("chat-")
        if provider:
            run.attributes["mlflow.llm.provider"] = provider

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """A chat model or LLM ends: its choices and the usage LangChain reported."""
        if len(response.generations) == 1:
            choices = [
                {"message": _plain(getattr(g, "message", None))
                 or {"role": "assistant", "content": g.text}, "finish_reason": None}
                for g in response.generations[0]
            ]  # fmt: skip
            outputs: Any = {"choices": choices}
        else:
            outputs = response.model_dump(mode="json")
        run = self._end(run_id, outputs)
        if run is not None and (usage := _usage(response)):
            run.attributes[USAGE] = usage

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chat model or LLM failed."""
        self._end(run_id, error=error)

    def on_chain_start(
        self, serialized: dict[str, Any], inputs: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A chain (a runnable sequence, a prompt template, an output parser...) starts."""
        self._start(serialized, inputs, run_id, kwargs, "CHAIN", "chain")

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain ends."""
        run = self._end(run_id, outputs)
        if run is not None and kwargs.get("inputs"):
            run.attributes[INPUTS] = _plain(kwargs["inputs"])

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain failed."""
        self._end(run_id, error=error)

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A tool starts; its input is parsed back from LangChain's string when it can be."""
        try:
            parsed: Any = ast.literal_eval(input_str)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed = input_str
        self._start(serialized, parsed, run_id, kwargs, "TOOL", "tool")

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool ends."""
        self._end(run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A tool failed."""
        self._end(run_id, error=error)

    def on_retriever_start(
        self, serialized: dict[str, Any], query: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A retriever starts."""
        self._start(serialized, query, run_id, kwargs, "RETRIEVER", "retriever")

    def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A retriever ends with its documents."""
        self._end(run_id, list(documents))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A retriever failed."""
        self._end(run_id, error=error)
