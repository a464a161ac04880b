"""The engine's observation seam: what it tells whoever watches its runs.

The engine knows nothing of MLflow, OpenTelemetry or Prometheus. Whoever runs a workflow (the Python
API, the CLI, the server, a batch, a worker) attaches observers to the prepared workflow; the
engine calls each in order at the points below, and by default there are none. An observer that
raises is logged and never fails a run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .records import ModelCallRecord, NodeRecord, RunResult

__all__ = ["NullObserver", "RunObserver", "RunStart"]


class RunStart:
    """A run (or an attempt of a resumed run) that is starting.

    Attributes:
        run_id: The run's id (the result will carry it).
        workflow: The workflow's name.
        inputs: The inputs it was given.
        tags: The labels it was given.
        session_id: The session it belongs to, if any.
        attempt: 1, then one more at each resume.
        resumed_from: The trace of the attempt it resumes, when known.
        traceparent: The caller's W3C ``traceparent``, if any.
    """

    __slots__ = (
        "attempt",
        "inputs",
        "resumed_from",
        "run_id",
        "session_id",
        "tags",
        "traceparent",
        "workflow",
    )

    def __init__(
        self,
        run_id: str,
        workflow: str,
        inputs: dict[str, object],
        tags: dict[str, str],
        *,
        session_id: str | None = None,
        attempt: int = 1,
        resumed_from: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.inputs = inputs
        self.tags = tags
        self.session_id = session_id
        self.attempt = attempt
        self.resumed_from = resumed_from
        self.traceparent = traceparent


@runtime_checkable
class RunObserver(Protocol):
    """Told of a run as it goes. Subclass :class:`NullObserver` and override what you need."""

    @property
    def captures_langchain(self) -> bool:
        """Whether the records should keep what LangChain reports inside each model and tool
        call (:attr:`ModelCallRecord.runs`): MLflow's autolog-style spans need it."""
        ...

    def run_started(self, run: RunStart) -> None:
        """A run starts (its inputs are valid)."""

    def call_finished(self, node_id: str, call: ModelCallRecord) -> None:
        """A model call of node ``node_id`` ended (it may have failed)."""

    def node_finished(self, record: NodeRecord) -> None:
        """A node execution ended (it may have failed)."""

    def run_finished(self, result: RunResult) -> None:
        """A run ended, whatever its status; an observer may set ``result.trace_id``. Observers
        are told in the order they were attached."""


class NullObserver:
    """An observer that does nothing: the base of the real ones."""

    captures_langchain: bool = False

    def run_started(self, run: RunStart) -> None:
        """Nothing to do."""

    def call_finished(self, node_id: str, call: ModelCallRecord) -> None:
        """Nothing to do."""

    def node_finished(self, record: NodeRecord) -> None:
        """Nothing to do."""

    def run_finished(self, result: RunResult) -> None:
        """Nothing to do."""
