"""An OpenAI-compatible chat-completions server on 127.0.0.1, so tests make no outside call.

Real clients (``openai.OpenAI``, ``langchain_openai.ChatOpenAI``) talk real HTTP to it::

    with StubLLM() as stub:
        stub.script(Reply.text("hi", usage={"cached_tokens": 3}), Reply.error(429, retry_after=1))
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=stub.base_url, api_key="t", max_retries=0)
"""

from __future__ import annotations

import itertools
import json
import math
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

JSON = dict[str, Any]
Usage = dict[str, int]
DEFAULT_TEXT = "stub reply"
_MAX_DEPTH = 6  # deeper than this, nullable branches are null and arrays empty (recursive schemas)


def schema_sample(schema: JSON, root: JSON | None = None, depth: int = 0) -> Any:
    """A value valid against JSON Schema ``schema``; ``$ref`` is resolved against ``root``.

    Strings are "stub", integers 1, numbers 1.5, booleans false, arrays hold one item, objects
    every property (plus "key" when ``additionalProperties`` is a schema); enums take their
    first value, anyOf/oneOf their first non-null option.
    """
    root = schema if root is None else root
    if "$ref" in schema:
        return schema_sample(_resolve_ref(root, schema["$ref"]), root, depth)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            if not options or (depth > _MAX_DEPTH and len(options) < len(schema[key])):
                return None
            return schema_sample(options[0], root, depth)
    if "allOf" in schema:  # one schema with every part's keywords, properties united
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve_ref(root, part["$ref"]) if "$ref" in part else part
            united = {**merged.get("properties", {}), **part.get("properties", {})}
            merged.update({**part, **({"properties": united} if united else {})})
        return schema_sample(merged, root, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    scalars = {"string": "stub", "integer": 1, "number": 1.5, "boolean": False, "null": None}
    if kind in scalars:
        return scalars[kind]
    if kind == "array":
        deep = depth > _MAX_DEPTH and not schema.get("minItems")
        return [] if deep else [schema_sample(schema.get("items", {}), root, depth + 1)]
    out = {k: schema_sample(v, root, depth + 1) for k, v in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "key" not in out:
        out["key"] = schema_sample(extra, root, depth + 1)
    return out


def _resolve_ref(root: JSON, ref: str) -> JSON:
    """The sub-schema of ``root`` that the local JSON pointer ``ref`` (``#/$defs/X``) names."""
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@dataclass(frozen=True)
class Reply:
    """One answer of the stub; build it with a constructor. ``delay``: seconds to wait first."""

    kind: Literal["text", "tool_calls", "error", "malformed", "drop"]
    content: str = ""
    calls: tuple[tuple[str, str], ...] = ()  # (function name, arguments as JSON text)
    usage: Usage | None = None
    status: int = 200
    body: JSON | None = None
    retry_after: float | str | None = None
    delay: float = 0.0

    @classmethod
    def text(cls, content: str, usage: Usage | None = None, *, delay: float = 0.0) -> Reply:
        """An assistant message with ``content`` (finish_reason "stop")."""
        return cls("text", content=content, usage=usage, delay=delay)

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[tuple[str, JSON | str]],
        usage: Usage | None = None,
        *,
        delay: float = 0.0,
    ) -> Reply:
        """One assistant message calling each ``(name, arguments)``; str arguments go verbatim."""
        encoded = tuple((n, a if isinstance(a, str) else json.dumps(a)) for n, a in calls)
        return cls("tool_calls", calls=encoded, usage=usage, delay=delay)

    @classmethod
    def error(
        cls,
        status: int,
        body: JSON | None = None,
        retry_after: float | str | None = None,
        *,
        delay: float = 0.0,
    ) -> Reply:
        """HTTP ``status`` with JSON ``body`` (default OpenAI-style) and maybe a Retry-After."""
        if body is None:
            kind = {400: "invalid_request_error", 429: "rate_limit_error"}.get(status, "api_error")
            body = {"error": {"message": f"stub error {status}", "type": kind, "code": None}}
        return cls("error", status=status, body=body, retry_after=retry_after, delay=delay)

    @classmethod
    def malformed(cls, *, delay: float = 0.0) -> Reply:
        """A 200 whose body (when streaming: whose first event) is not valid JSON."""
        return cls("malformed", delay=delay)

    @classmethod
    def drop(cls, *, delay: float = 0.0) -> Reply:
        """Close the connection without any response."""
        return cls("drop", delay=delay)


Responder = Callable[[JSON], Reply]


def default_responder(request: JSON) -> Reply:
    """A forced tool call with schema-valid arguments, JSON for a json_schema format, else text."""
    tools = [t.get("function", {}) for t in request.get("tools") or []]
    choice, name = request.get("tool_choice"), None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    elif choice == "required" and tools:
        name = tools[0].get("name")
    if name is not None:
        function = next((t for t in tools if t.get("name") == name), {})
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        return Reply.tool_calls([(name, schema_sample(parameters))])
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema") or {"type": "object"}
        return Reply.text(json.dumps(schema_sample(schema)))
    return Reply.text(DEFAULT_TEXT)


def _usage(reply: Reply, request: JSON) -> JSON:
    """OpenAI's ``usage`` object: the reply's counts, else four characters per token."""
    given, prompt_chars = reply.usage or {}, 0
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        prompt_chars += len(content) if isinstance(content, str) else 0
    reply_chars = len(reply.content) + sum(len(arguments) for _, arguments in reply.calls)
    prompt = given.get("prompt_tokens", max(1, prompt_chars // 4))
    completion = given.get("completion_tokens", max(1, reply_chars // 4))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": given.get("cached_tokens", 0)},
        "completion_tokens_details": {"reasoning_tokens": given.get("reasoning_tokens", 0)},
    }


def _render(reply: Reply, request: JSON, new_id: Callable[[], int]) -> tuple[int, JSON, bytes]:
    """Status, headers and body that answer ``request`` with ``reply`` (of any kind but drop)."""
    if reply.kind == "error":
        return _render_error(reply)
    stream = bool(request.get("stream"))
    headers = {"Content-Type": "text/event-stream" if stream else "application/json"}
    if reply.kind == "malformed":
        return 200, headers, b'data: {"id": "chatcmpl-\n\n' if stream else b'{"id": "chatcmpl-'
    base = {"id": f"chatcmpl-stub-{new_id()}", "created": int(time.time())}
    base["model"] = request.get("model", "stub-model")
    calls = [
        {"id": f"call_stub_{new_id()}", "type": "function", "function": {"name": n, "arguments": a}}
        for n, a in reply.calls
    ]
    usage = _usage(reply, request)
    if stream:
        return 200, headers, _event_stream(base, reply.content, calls, usage, request)
    message = {"role": "assistant", "content": None if calls else reply.content, "refusal": None}
    message.update({"tool_calls": calls} if calls else {})
    finish = "tool_calls" if calls else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    body = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
    return 200, headers, _dump(body)


def _render_error(reply: Reply) -> tuple[int, JSON, bytes]:
    """Status, headers (maybe Retry-After) and JSON body of an error reply."""
    retry = {} if reply.retry_after is None else {"Retry-After": reply.retry_after}
    return reply.status, {**retry, "Content-Type": "application/json"}, _dump(reply.body)


def _event_stream(base: JSON, content: str, calls: list[JSON], usage: JSON, request: JSON) -> bytes:
    """Server-sent chunks: role, content or tool calls in pieces, finish, maybe usage, [DONE]."""
    with_usage = bool((request.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        extra = {"usage": None} if with_usage else {}
        return {**base, "object": "chat.completion.chunk", "choices": [choice], **extra}

    chunks = [chunk({"role": "assistant", "content": None if calls else ""})]
    for index, call in enumerate(calls):
        head = {**call, "index": index, "function": {**call["function"], "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head]}))
        for piece in _pieces(call["function"]["arguments"]):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    chunks += [chunk({"content": piece}) for piece in _pieces(content)]
    chunks.append(chunk({}, "tool_calls" if calls else "stop"))
    if with_usage:
        chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return b"".join(b"data: " + _dump(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _pieces(text: str, count: int = 3) -> list[str]:
    """``text`` cut into at most ``count`` consecutive pieces."""
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that knows its stub and its open (keep-alive) connections."""

    daemon_threads = True
    request_queue_size = 1024  # the default 5 drops connections a concurrent client opens at once

    def __init__(self, stub: StubLLM) -> None:
        self.stub = stub
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.open_lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Shut every open connection, so idle keep-alive handler threads end."""
        with self.open_lock:
            for connection in self.open:
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client went away (a timeout, a cut connection); report the rest."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive; TCP_NODELAY and one write per response, so no reply waits 40 ms."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        with self.server.stub._in_flight():
            if urlsplit(self.path).path.rstrip("/") != "/v1/models":
                return self._send(*_render_error(Reply.error(404)))
            model = {"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}
            body = _dump({"object": "list", "data": [model]})
            return self._send(200, {"Content-Type": "application/json"}, body)

    def do_POST(self) -> None:
        raw, stub = self.rfile.read(int(self.headers.get("Content-Length") or 0)), self.server.stub
        with stub._in_flight():
            if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
                return self._send(*_render_error(Reply.error(404)))
            try:
                request = json.loads(raw)
            except ValueError as exc:
                return self._send(*_render_error(_failure(400, exc)))
            try:
                reply = stub._next_reply(request)
            except Exception as exc:  # a broken responder: answer 500 rather than hang the client
                reply = _failure(500, exc)
            stub._stopping.wait(reply.delay)
            if reply.kind == "drop":
                self.close_connection = True
                return None
            return self._send(*_render(reply, request, stub._new_id))

    def _send(self, status: int, headers: JSON, body: bytes) -> None:
        """Write status line, headers and body at once; a vanished client closes the connection."""
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('Stub',))[0]}"]
        lines += [f"{k}: {v}" for k, v in {**headers, "Content-Length": len(body)}.items()]
        lines += ["Connection: close"] if self.close_connection else []
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            self.close_connection = True


def _failure(status: int, exc: Exception) -> Reply:
    """An error reply that tells the client what went wrong inside the stub."""
    return Reply.error(status, {"error": {"message": f"stub: {exc!r}", "type": "stub_error"}})


class StubLLM:
    """The stub server: ``start()``/``stop()``, or ``with StubLLM() as stub:``.

    Records, thread-safely: ``requests`` (chat-completion JSON bodies in arrival order),
    ``calls`` (their number) and ``max_in_flight`` (the most requests handled at once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._now_in_flight = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the script, the records and any custom responder."""
        with self._lock:
            self._queue.clear()
            self.requests: list[JSON] = []
            self.calls = 0
            self.max_in_flight = 0
            self.responder: Responder = default_responder

    def script(self, *replies: Reply) -> None:
        """Queue ``replies``: each request takes the next one; then ``responder`` answers."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``base_url`` for an OpenAI client."""
        if self._server is None:
            raise RuntimeError("StubLLM is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> StubLLM:
        """Listen on a free port of 127.0.0.1, serving from a daemon thread."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.01,), name="StubLLM", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; cut pending delays short and close every connection."""
        if self._server is None or self._thread is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.cut_connections()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> StubLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, request: JSON) -> Reply:
        """Record ``request``; the next scripted reply, else the responder's."""
        with self._lock:
            self.requests.append(request)
            self.calls += 1
            reply = self._queue.popleft() if self._queue else None
            responder = self.responder
        return reply if reply is not None else responder(request)

    def _new_id(self) -> int:
        with self._lock:
            return next(self._ids)

    @contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Count a request as being handled while the block runs."""
        with self._lock:
            self._now_in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._now_in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._now_in_flight -= 1
