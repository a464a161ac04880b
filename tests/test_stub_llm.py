"""The OpenAI stub server, driven through the real ``openai`` and ``langchain_openai`` clients."""

from __future__ import annotations

import operator
import threading
from functools import reduce
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel

from .stub_llm import DEFAULT_TEXT, Reply, StubLLM, schema_sample

openai = pytest.importorskip("openai")
ChatOpenAI = pytest.importorskip("langchain_openai").ChatOpenAI

FULL_USAGE = dict(prompt_tokens=11, completion_tokens=7, cached_tokens=3, reasoning_tokens=2)


def chat(stub: StubLLM, **kwargs: Any) -> Any:
    """A real ChatOpenAI pointed at the stub, without retries."""
    options = {"model": "gpt-4o-mini", "api_key": "test", "max_retries": 0, **kwargs}
    return ChatOpenAI(base_url=stub.base_url, **options)


def client(stub: StubLLM) -> Any:
    """A real openai.OpenAI client pointed at the stub, without retries."""
    return openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)


class Address(BaseModel):
    street: str
    zip_code: int


class Person(BaseModel):
    """A nested model with list, dict, optional and literal fields."""

    name: str
    tags: list[str]
    scores: dict[str, int]
    address: Address
    previous: list[Address]
    nickname: str | None = None
    role: Literal["admin", "user"]
    ratio: float


class Tree(BaseModel):
    label: str
    children: list[Tree]
    parent: Tree | None = None


# --- text replies and usage ---------------------------------------------------------------


def test_scripted_usage_arrives_in_usage_metadata(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.text("hello", usage=FULL_USAGE))
    message = chat(stub_llm).invoke("hi")
    assert message.content == "hello"
    usage = message.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (11, 7, 18)
    assert usage["input_token_details"]["cache_read"] == 3
    assert usage["output_token_details"]["reasoning"] == 2


def test_default_reply_counts_four_characters_per_token(stub_llm: StubLLM) -> None:
    message = chat(stub_llm, model="my-model").invoke([("system", "s" * 40), ("human", "h" * 21)])
    assert message.content == DEFAULT_TEXT
    assert message.usage_metadata["input_tokens"] == 61 // 4
    assert message.usage_metadata["output_tokens"] == len(DEFAULT_TEXT) // 4
    assert message.usage_metadata["total_tokens"] == 61 // 4 + len(DEFAULT_TEXT) // 4
    assert message.response_metadata["model_name"] == "my-model"
    assert stub_llm.calls == 1
    assert stub_llm.requests[0]["model"] == "my-model"
    assert [m["content"] for m in stub_llm.requests[0]["messages"]] == ["s" * 40, "h" * 21]


def test_partial_usage_keeps_estimates_and_total_adds_up(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.text("x" * 40, usage={"cached_tokens": 1}))
    usage = chat(stub_llm).invoke("y" * 80).usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (20, 10, 30)
    assert usage["input_token_details"]["cache_read"] == 1


def test_script_is_consumed_in_order_then_default(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.text("first"), Reply.text("second"))
    llm = chat(stub_llm)
    assert [llm.invoke(str(i)).content for i in range(3)] == ["first", "second", DEFAULT_TEXT]
    assert [r["messages"][0]["content"] for r in stub_llm.requests] == ["0", "1", "2"]


def test_responder_is_replaceable_and_reset_restores_everything(stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: Reply.text(f"echo {request['messages'][-1]['content']}")
    assert chat(stub_llm).invoke("ping").content == "echo ping"
    stub_llm.script(Reply.text("never sent"))
    stub_llm.reset()
    assert (stub_llm.requests, stub_llm.calls, stub_llm.max_in_flight) == ([], 0, 0)
    assert chat(stub_llm).invoke("ping").content == DEFAULT_TEXT


# --- tool calls and structured output ------------------------------------------------------


def test_tool_calls_arrive_parsed(stub_llm: StubLLM) -> None:
    calls = [("add", {"a": 1, "b": [2, 3]}), ("search", {"query": "stub", "deep": {"x": None}})]
    stub_llm.script(Reply.tool_calls(calls, usage={"completion_tokens": 9}))
    message = chat(stub_llm).invoke("use tools")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == calls
    assert len({c["id"] for c in message.tool_calls}) == 2
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.usage_metadata["output_tokens"] == 9


def test_invalid_tool_arguments_are_sent_verbatim(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.tool_calls([("add", "{not json")]))
    message = chat(stub_llm).invoke("use tools")
    assert message.tool_calls == []
    assert message.invalid_tool_calls[0]["args"] == "{not json"


def test_forced_tool_call_fits_the_structured_output_schema(stub_llm: StubLLM) -> None:
    llm = chat(stub_llm).with_structured_output(Person, method="function_calling", include_raw=True)
    result = llm.invoke("who?")
    assert result["parsing_error"] is None
    person = result["parsed"]
    assert isinstance(person, Person)
    assert person.tags == ["stub"]
    assert person.scores == {"key": 1}
    assert person.address == Address(street="stub", zip_code=1)
    assert person.role == "admin"
    assert (person.ratio, person.nickname) == (1.5, "stub")
    jsonschema.validate(result["raw"].tool_calls[0]["args"], Person.model_json_schema())
    choice = stub_llm.requests[0]["tool_choice"]
    assert choice == {"type": "function", "function": {"name": "Person"}}


def test_json_schema_response_format_gets_schema_valid_content(stub_llm: StubLLM) -> None:
    person = chat(stub_llm).with_structured_output(Person).invoke("who?")
    assert isinstance(person, Person)
    assert stub_llm.requests[0]["response_format"]["type"] == "json_schema"


def test_required_tool_choice_calls_the_first_tool_and_auto_answers_text(stub_llm: StubLLM) -> None:
    tools = [Address, Person]
    forced = chat(stub_llm).bind_tools(tools, tool_choice="required").invoke("go")
    assert [c["name"] for c in forced.tool_calls] == ["Address"]
    assert forced.tool_calls[0]["args"] == {"street": "stub", "zip_code": 1}
    free = chat(stub_llm).bind_tools(tools).invoke("go")
    assert (free.content, free.tool_calls) == (DEFAULT_TEXT, [])


SCHEMAS: list[dict[str, Any]] = [
    Person.model_json_schema(),
    Tree.model_json_schema(),
    {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}},
    {"type": ["null", "integer"]},
    {"oneOf": [{"type": "null"}, {"type": "array", "items": {"enum": [3, "x"]}}]},
    {"type": "object", "properties": {"kind": {"const": "fixed"}, "any": {}}},
    {
        "allOf": [
            {"$ref": "#/$defs/a"},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ],
        "$defs": {"a": {"properties": {"a": {"type": "string"}}, "required": ["a"]}},
    },
    {"allOf": [{"type": "integer"}, {"minimum": 0}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_sample_is_valid(schema: dict[str, Any]) -> None:
    jsonschema.validate(schema_sample(schema), schema)


def test_schema_sample_follows_the_documented_choices() -> None:
    sample = schema_sample(Person.model_json_schema())
    assert sample["name"] == "stub" and sample["nickname"] == "stub"
    assert sample["previous"] == [{"street": "stub", "zip_code": 1}]
    assert schema_sample({"type": "number"}) == 1.5
    assert schema_sample({"type": "boolean"}) is False
    assert schema_sample({"enum": ["b", "a"]}) == "b"
    assert Tree.model_validate(schema_sample(Tree.model_json_schema())).label == "stub"


# --- errors -----------------------------------------------------------------------------------


def test_rate_limit_carries_retry_after_and_is_not_retried(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.error(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        chat(stub_llm).invoke("hi")
    assert caught.value.response.headers["Retry-After"] == "7"
    assert stub_llm.calls == 1


def test_retries_honour_a_short_retry_after(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.error(429, retry_after=0.01), Reply.text("after retry"))
    assert chat(stub_llm, max_retries=1).invoke("hi").content == "after retry"
    assert stub_llm.calls == 2


def test_server_error(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.error(500))
    with pytest.raises(openai.InternalServerError):
        chat(stub_llm).invoke("hi")


def test_bad_request_body_reaches_the_exception(stub_llm: StubLLM) -> None:
    error = {"message": "bad value", "type": "invalid_request_error", "param": "x", "code": "bad"}
    stub_llm.script(Reply.error(400, {"error": error}))
    with pytest.raises(openai.BadRequestError) as caught:
        client(stub_llm).chat.completions.create(model="m", messages=[])
    assert (caught.value.status_code, caught.value.code, caught.value.param) == (400, "bad", "x")
    assert "bad value" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_body_raises_instead_of_hanging(stub_llm: StubLLM, stream: bool) -> None:
    stub_llm.script(Reply.malformed())
    llm = chat(stub_llm)
    with pytest.raises(ValueError):
        list(llm.stream("hi")) if stream else llm.invoke("hi")


def test_dropped_connection_is_a_connection_error(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.drop())
    llm = chat(stub_llm)
    with pytest.raises(openai.APIConnectionError):
        llm.invoke("hi")
    assert llm.invoke("hi again").content == DEFAULT_TEXT


def test_a_failing_responder_is_a_server_error(stub_llm: StubLLM) -> None:
    def broken(request: dict[str, Any]) -> Reply:
        raise RuntimeError("responder bug")

    stub_llm.responder = broken
    with pytest.raises(openai.InternalServerError, match="responder bug"):
        chat(stub_llm).invoke("hi")


def test_unknown_path_is_not_found(stub_llm: StubLLM) -> None:
    with pytest.raises(openai.NotFoundError):
        client(stub_llm).embeddings.create(model="m", input="x")


# --- streaming ----------------------------------------------------------------------------------


def test_streaming_returns_content_and_usage(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.text("streamed reply text", usage=FULL_USAGE))
    chunks = list(chat(stub_llm, stream_usage=True).stream("hi"))
    assert len(chunks) > 3
    message = reduce(operator.add, chunks)
    assert message.content == "streamed reply text"
    assert message.usage_metadata["input_tokens"] == 11
    assert message.usage_metadata["output_token_details"]["reasoning"] == 2
    assert stub_llm.requests[0]["stream_options"] == {"include_usage": True}


def test_streaming_without_stream_usage_sends_no_usage(stub_llm: StubLLM) -> None:
    message = reduce(operator.add, chat(stub_llm).stream("hi"))
    assert message.content == DEFAULT_TEXT
    assert message.usage_metadata is None
    assert "stream_options" not in stub_llm.requests[0]


def test_streaming_tool_calls(stub_llm: StubLLM) -> None:
    calls = [("add", {"a": 1, "b": 2}), ("mul", {"a": 3})]
    stub_llm.script(Reply.tool_calls(calls))
    message = reduce(operator.add, chat(stub_llm).stream("go"))
    assert [(c["name"], c["args"]) for c in message.tool_calls] == calls
    assert len({c["id"] for c in message.tool_calls}) == 2


def test_openai_client_streams_with_a_final_usage_chunk(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.text("abc def", usage=FULL_USAGE))
    stream = client(stub_llm).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abc def"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 18
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3


# --- the raw protocol -----------------------------------------------------------------------


def test_openai_client_sees_a_complete_response(stub_llm: StubLLM) -> None:
    stub_llm.script(Reply.text("answer", usage=FULL_USAGE))
    openai_client = client(stub_llm)
    messages = [{"role": "user", "content": "hi"}]
    response = openai_client.chat.completions.create(model="echo-me", messages=messages)
    assert response.id and response.created > 0
    assert (response.object, response.model) == ("chat.completion", "echo-me")
    assert response.choices[0].message.content == "answer"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.total_tokens == 18
    assert response.usage.completion_tokens_details.reasoning_tokens == 2
    assert [m.id for m in openai_client.models.list()] == ["stub-model"]
    assert stub_llm.calls == 1


def test_max_in_flight_counts_overlapping_requests(stub_llm: StubLLM) -> None:
    llm = chat(stub_llm)
    llm.invoke("warm up")
    llm.invoke("one at a time")
    assert stub_llm.max_in_flight == 1
    stub_llm.script(*[Reply.text(f"slow {i}", delay=0.3) for i in range(4)])
    start = threading.Barrier(4)
    answers: list[str] = []

    def call() -> None:
        start.wait()
        answers.append(llm.invoke("slow please").content)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [f"slow {i}" for i in range(4)]
    assert stub_llm.max_in_flight == 4
    assert stub_llm.calls == 6


def test_start_stop_and_restart() -> None:
    stub = StubLLM()
    with pytest.raises(RuntimeError):
        _ = stub.base_url
    with stub:
        url = stub.base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert chat(stub).invoke("hi").content == DEFAULT_TEXT
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=url, api_key="test", max_retries=0).models.list()
    stub.start()
    try:
        assert chat(stub).invoke("again").content == DEFAULT_TEXT
        assert stub.calls == 2
    finally:
        stub.stop()
