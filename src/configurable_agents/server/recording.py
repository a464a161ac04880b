"""Which served runs become MLflow runs: by default none — each request is recorded as a trace.

MLflow advises traces alone for production traffic: a run per request floods the experiment's
runs ("Evaluation runs" in the UI) and caps the background writer at about a quarter of its trace
rate. ``config.observability.mlflow.request_runs: true`` gives each request its MLflow run back.
``serve`` and ``worker`` apply it (:func:`per_request_runs`); ``run`` always records a run, and a
batch one parent run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine import PreparedWorkflow

__all__ = ["per_request_runs"]


def per_request_runs(prepared: PreparedWorkflow) -> None:
    """Make the workflow's MLflow recorder, if it has one, give each run its own MLflow run only
    when ``config.observability.mlflow.request_runs`` says so (traces are always recorded)."""
    from ..observability.recorder import Recorder

    recorder = prepared.observer(Recorder)
    if recorder is not None:
        recorder.run_records = prepared.workflow.config.config.observability.mlflow.request_runs
