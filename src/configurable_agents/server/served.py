"""What the handlers serve: one workflow, its executor, its runs, its metrics, kept on the
application (``app.state.served``) and handed to each handler by :data:`ServedDep`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from ..config.loader import Workflow
from ..observability.prometheus import Metrics
from .executor import Executor
from .store import AsyncRuns

__all__ = ["Served", "ServedDep", "served"]


@dataclass
class Served:
    """One served workflow and what its handlers use.

    Attributes:
        workflow: The workflow.
        runner: Executes its runs.
        runs: Its runs, read and written off the event loop.
        metrics: Its Prometheus metrics.
        schemas: JSON Schemas of its inputs and outputs (``GET /schema``).
        costs_store: The MLflow store ``GET /costs`` reports on.
        ready: Set once started, cleared at shutdown.
    """

    workflow: Workflow
    runner: Executor
    runs: AsyncRuns
    metrics: Metrics
    schemas: dict[str, Any]
    costs_store: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.workflow.name


def served(request: Request) -> Served:
    """The application's :class:`Served` (a FastAPI dependency)."""
    found: Served = request.app.state.served
    return found


ServedDep = Annotated[Served, Depends(served)]
"""A handler parameter receiving the application's :class:`Served`."""
