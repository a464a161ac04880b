"""What a run tells a live listener as it goes, and what a waiting run waits for.

A caller passes ``on_event`` to :meth:`~.run.PreparedWorkflow.arun` or ``aresume``; the engine
calls it with one :class:`RunEvent` per step, in order, from the run's event loop. A listener that
raises is logged and never fails the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["EVENT_TYPES", "EventListener", "RunEvent", "WaitingFor", "emit"]

_log = logging.getLogger(__name__)

EVENT_TYPES = ("run_started", "node_started", "token", "node_finished", "waiting", "run_finished")
"""Every event type, in the order a run emits them."""


@dataclass(frozen=True)
class RunEvent:
    """One step of a run, as a live view shows it.

    Attributes:
        type: One of :data:`EVENT_TYPES`.
        run_id: The run it belongs to.
        data: JSON-ready details: ``run_started`` {workflow, attempt, session_id, inputs};
            ``node_started`` {node, label, iteration, item_index}; ``token`` {node, text};
            ``node_finished`` {node, label, iteration, item_index, outputs, error, tokens,
            cost_usd, duration_s}; ``waiting`` {waiting: [WaitingFor...]}; ``run_finished``
            {status, error, cost_usd, tokens, trace_id}.
        at: When it happened (seconds since the epoch).
    """

    type: str
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``type``, ``run_id``, ``at`` and the data's keys."""
        return {"type": self.type, "run_id": self.run_id, "at": self.at, **self.data}


EventListener = Callable[[RunEvent], None]
"""Told of each :class:`RunEvent` of a run."""


@dataclass(frozen=True)
class WaitingFor:
    """What a waiting run needs from a person before it can go on.

    Attributes:
        node: The node that asks.
        kind: ``input`` (a `type: human` node: give its outputs) or ``approval``
            (`interrupt_before`: resume with no inputs to let the node run).
        prompt: What the person is shown.
        outputs: JSON Schema of the inputs the answer must give (empty for an approval).
        deadline: When the wait times out (seconds since the epoch), if the node has a
            `timeout`.
        iteration: The loop iteration, when the node is in a loop.
        item_index: The fan-out item, when the node is a fan-out target.
        label: The node's display `name`, if it has one.
    """

    node: str
    kind: Literal["input", "approval"]
    prompt: str
    outputs: dict[str, Any]
    deadline: float | None = None
    iteration: int | None = None
    item_index: int | None = None
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WaitingFor:
        """The inverse of :meth:`to_dict`."""
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def emit(listener: EventListener | None, event: RunEvent) -> None:
    """Tell ``listener`` of ``event``; one that raises is logged, never propagated."""
    if listener is None:
        return
    try:
        listener(event)
    except Exception as exc:  # a live view never fails a run
        _log.warning("event listener failed on %s: %s", event.type, exc)
