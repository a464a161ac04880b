"""One model call with a timeout, retried on transient errors with exponential backoff and jitter.

Transient: HTTP 408, 409, 429 and 5xx, timeouts, dropped connections and unreadable replies. A
``Retry-After`` header is honoured. Anything else (a 400, a 401, a missing model) fails at once.

An attempt that runs past the call's timeout (`llm.timeout`) fails with :class:`ModelCallTimeout`,
an ordinary transient error: it is never a :class:`TimeoutError`, which would read as the run's own
limit (`execution.timeout`) further up.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "ModelCallTimeout",
    "OnFailure",
    "call_with_retries",
    "describe_error",
    "retry_delay",
]

BACKOFF_BASE_S = 0.5
"""First backoff step; doubled at each retry."""

BACKOFF_CAP_S = 30.0
"""Longest wait between two attempts, ``Retry-After`` included."""

OnFailure = Callable[[int, float, BaseException], None]
"""Told of each failed attempt: its wall-clock start (ns since the epoch), duration and error."""


class ModelCallTimeout(Exception):
    """One attempt of a model call ran past the call's timeout; ``setting`` names the setting
    that set it (`llm.timeout`, or a node's `timeout`)."""

    def __init__(self, timeout: float, setting: str = "llm.timeout") -> None:
        super().__init__(f"timed out after {timeout:g} s ({setting})")
        self.timeout = timeout


_TRANSIENT_NAMES = ("Timeout", "Connection", "ResponseValidation", "JSONDecode", "RemoteProtocol")


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def retry_delay(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying after ``exc`` (attempt is 0-based), or ``None`` if the
    error is not transient."""
    status = _status(exc)
    names = " ".join(cls.__name__ for cls in type(exc).__mro__)
    transient_types = ModelCallTimeout | TimeoutError | ConnectionError | json.JSONDecodeError
    transient = isinstance(exc, transient_types) or (
        status in (408, 409, 429) or (status is not None and status >= 500)
    )
    if not transient and status is None:
        transient = any(name in names for name in _TRANSIENT_NAMES)
    if not transient:
        return None
    after = _retry_after(exc)
    if after is not None:
        return min(after, BACKOFF_CAP_S)
    step = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return step / 2 + random.uniform(0, step / 2)


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, without a traceback or a secret-bearing request dump."""
    status = _status(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "timed out"
    prefix = f"HTTP {status}: " if status and f"{status}" not in text else ""
    return f"{type(exc).__name__}: {prefix}{text}"[:300]


async def call_with_retries(
    runnable: Any,
    messages: Sequence[Any],
    *,
    timeout: float,
    retries: int,
    config: dict[str, Any] | None = None,
    on_failure: OnFailure | None = None,
    timeout_setting: str = "llm.timeout",
    on_chunk: Callable[[Any], None] | None = None,
) -> Any:
    """``runnable.ainvoke(messages, config)`` with a per-attempt timeout and up to ``retries``
    retries; ``on_failure`` is told of every attempt that failed, and ``timeout_setting`` names
    the setting of the timeout in the error. With ``on_chunk``, the reply is streamed
    (``astream``), each chunk handed to ``on_chunk`` as it comes, and the chunks summed into
    the reply (usage included).

    Raises:
        ModelCallTimeout: the last attempt ran past ``timeout``.
        Exception: the last error, once retries are spent or the error is not transient.
    """
    attempt = 0
    while True:
        started_ns, started = time.time_ns(), time.perf_counter()
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                if on_chunk is None:
                    return await runnable.ainvoke(list(messages), config)
                return await _streamed(runnable, messages, config, on_chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = ModelCallTimeout(timeout, timeout_setting) if scope.expired() else exc
            if on_failure is not None:
                on_failure(started_ns, time.perf_counter() - started, error)
            delay = retry_delay(error, attempt)
            if delay is None or attempt >= retries:
                if error is exc:
                    raise
                raise error from None
            attempt += 1
            await asyncio.sleep(delay)


async def _streamed(
    runnable: Any,
    messages: Sequence[Any],
    config: dict[str, Any] | None,
    on_chunk: Callable[[Any], None],
) -> Any:
    """The reply of ``runnable``, streamed: chunks told to ``on_chunk`` and summed."""
    reply = None
    async for chunk in runnable.astream(list(messages), config):
        on_chunk(chunk)
        reply = chunk if reply is None else reply + chunk
    if reply is None:
        raise ConnectionError("the model streamed no reply")
    return reply
