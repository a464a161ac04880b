"""Writing spooled runs to an MLflow tracking store, in batches, with MLflow's own APIs.

All the spans of a batch, whatever their trace, go to the store in one ``log_spans`` call; each run
record becomes an MLflow run (params, metrics, tags, artifacts) linked to its trace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .models import (
    EVALUATION_RUN,
    FILE_KEY,
    VERSION_KEY,
    VersionModels,
    log_linked_spans,
    store_lock,
    trace_metadata,
)
from .spool import Spool, SpoolItem, WriterLock

__all__ = [
    "BATCH_SIZE",
    "RECORD_KEY_TAG",
    "BackgroundWriter",
    "MlflowWriter",
    "drain",
    "prepare_environment",
]

BATCH_SIZE = 200
"""Most spooled runs written in one batch."""

RECORD_KEY_TAG = "configurable_agents.record_key"
"""Run tag naming the spooled record an MLflow run was written from."""

SOURCE_RUN_KEY = "mlflow.assessment.sourceRunId"
"""Assessment metadata naming the evaluation run that made it (MLflow's own key)."""


def prepare_environment(destination: str) -> None:
    """Settings MLflow needs to talk to ``destination`` without minutes of retries."""
    if destination.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # pre-3.9 configs use mlruns
    if destination.startswith(("http:", "https:")):
        # MLflow's defaults spend minutes retrying a dead server; the spool retries instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _artifact_location(destination: str) -> str | None:
    """``mlruns/`` beside a SQLite store's file (MLflow's default is ``./mlruns`` of whatever the
    working directory is when the experiment is created); None (MLflow's default) elsewhere."""
    if not destination.startswith("sqlite:///"):
        return None
    return (Path(destination.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


class MlflowWriter:
    """Writes spooled runs to one tracking URI."""

    def __init__(self, destination: str, on_run: Callable[[str, str], None] | None = None) -> None:
        """Open ``destination``; ``on_run(key, run_id)`` is told of each run as it is written
        (the spool notes it at once, so a command waiting for its run need not wait for the
        records written after it in the same batch)."""
        prepare_environment(destination)
        self.on_run = on_run
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter

        self.destination = destination
        self._prompt_versions: dict[str, Any] = {}
        self.run_ids: dict[str, str] = {}
        """The MLflow run id of each record key this writer wrote (or found written)."""
        with store_lock(destination, ".lock"):  # creating one store at once corrupts it
            self.client = MlflowClient(destination)
            self.client._tracking_client.store  # noqa: B018 - creating the store migrates its schema
        self._experiments: dict[str, str] = {}
        self.models = VersionModels(self.client, destination)
        """The model of each workflow version the written traces and runs are linked to."""
        self._remote = destination.startswith(("http:", "https:"))

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing."""
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                from mlflow.exceptions import MlflowException

                try:
                    self._experiments[name] = self.client.create_experiment(
                        name, artifact_location=_artifact_location(self.destination)
                    )
                except MlflowException:  # created meanwhile by another writer
                    created = self.client.get_experiment_by_name(name)
                    if created is None:
                        raise
                    self._experiments[name] = created.experiment_id
            else:
                self._experiments[name] = found.experiment_id
        return self._experiments[name]

    def write(self, items: list[SpoolItem]) -> None:
        """Write a batch: every trace in one call per experiment, then one MLflow run per item."""
        from mlflow.entities import Span

        by_experiment: dict[str, list[SpoolItem]] = defaultdict(list)
        for item in items:
            by_experiment[item.experiment].append(item)
        store = self.client._tracking_client.store
        for name, group in by_experiment.items():
            experiment_id = self.experiment_id(name)
            models = {item.id: self._model_of(experiment_id, item.payload) for item in group}
            spans = [Span.from_dict(span) for item in group for span in item.payload["spans"]]
            # a batch's parent run has no trace of its own
            traced = [item for item in group if item.payload["spans"]]
            links = {item.payload["trace_id"]: (model, item.payload["spans"])
                     for item in traced if (model := models[item.id])}  # fmt: skip
            try:
                log_linked_spans(store, experiment_id, spans, links, remote=self._remote)
            except NotImplementedError:  # file stores keep traces as artifacts
                for item in traced:
                    self._trace_as_artifact(experiment_id, item.payload["spans"], models[item.id])
            for item in group:
                self._link_prompts(item.payload)
            for item in group:
                if item.payload.get("run") and not (item.claims and self._written(item)):
                    self._run(experiment_id, item.payload, models[item.id])
                elif item.payload.get("assessments"):
                    source = item.payload.get("source_key")
                    run_id = self.run_ids.get(source) if source else None
                    self._assess(
                        item.payload["assessments"], run_id or item.payload.get("source_run_id")
                    )

    def _model_of(self, experiment_id: str, payload: dict[str, Any]) -> str | None:
        """The model of the workflow version a spooled trace or run belongs to, if it names one
        (see :mod:`.models`)."""
        version = payload.get(VERSION_KEY)
        if version is None:
            return None
        return self.models.model_id(experiment_id, version, payload.get(FILE_KEY))

    def _trace_as_artifact(
        self, experiment_id: str, span_dicts: list[dict[str, Any]], model_id: str | None
    ) -> None:
        from mlflow.entities import Span, TraceData, TraceInfo, TraceLocation, TraceState
        from mlflow.tracing.client import TracingClient

        spans = [Span.from_dict(span) for span in span_dicts]
        root = next(span for span in spans if span.parent_id is None)
        tags = {
            key.removeprefix("mlflow.traceTag."): str(value)
            for key, value in root.attributes.items()
            if key.startswith("mlflow.traceTag.")
        }
        failed = root.status.status_code == "ERROR"
        info = TraceInfo(
            trace_id=root.trace_id,
            trace_location=TraceLocation.from_experiment_id(experiment_id),
            request_time=root.start_time_ns // 1_000_000,
            state=TraceState.ERROR if failed else TraceState.OK,
            execution_duration=((root.end_time_ns or root.start_time_ns) - root.start_time_ns)
            // 1_000_000,
            tags=tags,
            trace_metadata=trace_metadata(root.attributes, model_id),
        )
        client = TracingClient(self.destination)
        client._upload_trace_data(client.start_trace(info), TraceData(spans=spans))

    def _link_prompts(self, payload: dict[str, Any]) -> None:
        """Link a trace to the registry prompt versions its run used (the Prompts page of the
        MLflow UI lists the traces of each version)."""
        from mlflow.exceptions import MlflowException

        from .layout import PROMPTS_ATTRIBUTE

        # the workflow's own root span: inside a caller's trace it has a parent
        used = next((s["attributes"][PROMPTS_ATTRIBUTE] for s in payload["spans"]
                     if PROMPTS_ATTRIBUTE in s.get("attributes", {})), None)  # fmt: skip
        if not used:
            return
        if isinstance(used, str):  # attributes are stored JSON-encoded
            used = json.loads(used)
        versions = []
        for reference in used:
            if reference not in self._prompt_versions:
                name, _, version = reference.rpartition("/")
                self._prompt_versions[reference] = self.client.get_prompt_version(name, version)
            versions.append(self._prompt_versions[reference])
        store = self.client._tracking_client.store  # the client's own call links in the
        # default tracking store (MLflow 3.17), not this writer's
        with contextlib.suppress(MlflowException, NotImplementedError):  # the spans keep them
            store.link_prompts_to_trace(payload["trace_id"], versions)

    def _written(self, item: SpoolItem) -> bool:
        """Whether an earlier claim of ``item`` finished writing its MLflow run; a run it left
        unfinished is deleted, to be written again whole."""
        key = item.payload.get("key")
        if key is None:
            return False
        found = self.client.search_runs(
            [self.experiment_id(item.experiment)],
            filter_string=f"tags.`{RECORD_KEY_TAG}` = '{key}'",
        )
        for run in found:
            if run.info.status != "RUNNING":
                self.run_ids[key] = run.info.run_id
                if self.on_run is not None:
                    self.on_run(key, run.info.run_id)
                return True
            self.client.delete_run(run.info.run_id)
        return False

    def _run(self, experiment_id: str, payload: dict[str, Any], model_id: str | None) -> None:
        """Write a run record as an MLflow run; with ``model_id``, the run is an input of its
        workflow version's model, and an evaluation run's metrics are also the model's."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        record = payload["run"]
        dataset = payload.get("dataset") or {}
        evaluation = record["tags"].get(EVALUATION_RUN[0]) == EVALUATION_RUN[1]
        of_model = {
            "model_id": model_id,
            "dataset_name": dataset.get("name"),
            "dataset_digest": dataset.get("digest"),
        } if model_id and evaluation else {}  # fmt: skip
        tags = {k: str(v) for k, v in record["tags"].items()}
        if payload.get("key"):
            tags[RECORD_KEY_TAG] = payload["key"]
        run = self.client.create_run(
            experiment_id, start_time=record["start_ms"], tags=tags, run_name=record["name"]
        )
        run_id = run.info.run_id
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), record["end_ms"], 0, **of_model)
                for k, v in record["metrics"].items()
            ],
            params=[Param(k, str(v)[:6000]) for k, v in record["params"].items()],
            tags=[RunTag("mlflow.trace_id", payload["trace_id"])] if payload["trace_id"] else [],
        )
        for path, content in record["artifacts"].items():
            self.client.log_text(run_id, json.dumps(content, indent=2, default=str), path)
        linked = payload.get("linked_traces", [payload["trace_id"]])
        for start in range(0, len(linked), 100):  # MLflow links at most 100 per call
            with contextlib.suppress(MlflowException):  # file stores cannot link; tags still do
                self.client.link_traces_to_run(linked[start : start + 100], run_id)
        if dataset or model_id:
            self._log_inputs(run_id, dataset, model_id)
        self.client.set_terminated(run_id, status=record["status"], end_time=record["end_ms"])
        if payload.get("key"):
            self.run_ids[payload["key"]] = run_id
            if self.on_run is not None:
                self.on_run(payload["key"], run_id)

    def _log_inputs(self, run_id: str, dataset: dict[str, str], model_id: str | None) -> None:
        """The run's dataset (if any) and workflow version's model (if any) as its inputs."""
        from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput

        datasets = []
        if dataset:
            entity = Dataset(
                name=dataset["name"], digest=dataset["digest"], source_type="local",
                source=json.dumps({"uri": dataset["source"]}),
                schema=dataset.get("schema"), profile=dataset.get("profile"),
            )  # fmt: skip
            context = InputTag(key="mlflow.data.context", value="evaluation")
            datasets.append(DatasetInput(entity, tags=[context]))
        models = [LoggedModelInput(model_id)] if model_id else None
        self.client.log_inputs(run_id, datasets=datasets or None, models=models)

    def _assess(self, assessments: list[dict[str, Any]], run_id: str | None = None) -> None:
        """Attach assessments to their (already written) traces; with ``run_id``, name that
        evaluation run as their source, as MLflow's own evaluations do."""
        from mlflow.entities import AssessmentError, AssessmentSource, Expectation, Feedback
        from mlflow.tracing.client import TracingClient

        tracing = TracingClient(self.destination)
        for entry in assessments:
            source = AssessmentSource(
                source_type=entry["source_type"], source_id=entry["source_id"]
            )
            metadata = {k: str(v) for k, v in (entry.get("metadata") or {}).items()}
            if run_id is not None:
                metadata[SOURCE_RUN_KEY] = run_id
            if entry["kind"] == "expectation":
                assessment: Any = Expectation(
                    name=entry["name"], value=entry["value"], source=source, metadata=metadata
                )
            else:
                error = entry.get("error")
                assessment = Feedback(
                    name=entry["name"], value=entry.get("value"), source=source,
                    rationale=entry.get("rationale"), metadata=metadata,
                    error=AssessmentError(error_code="SCORER_ERROR", error_message=error)
                    if error else None,
                )  # fmt: skip
            tracing.log_assessment(entry["trace_id"], assessment)


def drain(
    spool: Spool,
    *,
    destination: str | None = None,
    deadline: float | None = None,
    writers: dict[str, MlflowWriter] | None = None,
) -> int:
    """Write spooled runs until the spool is empty (or the deadline passes); returns how many.

    ``writers`` keeps the open stores between calls (a long-lived writer passes the same dict
    each time, so the client, the store and its experiments are opened once).

    Raises:
        Exception: the store refused a batch; its rows are released with the error noted.
    """
    writers = {} if writers is None else writers
    written = 0
    while deadline is None or time.monotonic() < deadline:
        items = spool.claim(BATCH_SIZE, destination)
        if not items:
            return written
        by_destination: dict[str, list[SpoolItem]] = defaultdict(list)
        for item in items:
            by_destination[item.destination].append(item)
        for target, group in by_destination.items():
            ids = [item.id for item in group]
            for item in group:  # assessments of a run another writer wrote
                source = item.payload.get("source_key")
                if source and "source_run_id" not in item.payload:
                    item.payload["source_run_id"] = spool.run_id(source)
            try:
                if target not in writers:
                    writers[target] = MlflowWriter(
                        target, on_run=lambda key, run_id: spool.note_runs({key: run_id})
                    )
                writers[target].write(group)
            except Exception as exc:
                spool.release(ids, f"{type(exc).__name__}: {exc}")
                raise
            spool.done(ids)
            written += len(group)
    return written


class BackgroundWriter:
    """The separate process draining the spool for one destination, shared by every process
    that records there (:class:`~.spool.WriterLock`), and kept warm between commands.

    A process, not a thread: writing to MLflow is CPU-bound Python (its ORM), and in a thread it
    would take the interpreter lock from the runs it records. The runs' process never imports
    MLflow. This object only makes sure such a writer is alive, starting one when none is.
    """

    def __init__(self, spool: Spool, destination: str) -> None:
        self.spool = spool
        self.destination = destination
        self.lock = WriterLock(spool.path, destination)
        self.pid: int | None = None
        """The writer this object started last, if any."""
        self.process: subprocess.Popen[bytes] | None = None
        self.ensure()

    def ensure(self) -> None:
        """Start a writer unless one is alive for this destination, or the one this object
        started is still starting (it takes the writer lock only once its interpreter is up:
        records spooled meanwhile must not each start another)."""
        starting = self.process is not None and self.process.poll() is None
        if starting or self.lock.writer_alive():
            return
        process = self.process = subprocess.Popen(
            [sys.executable, "-m", "configurable_agents.observability.drainer",
             str(self.spool.path), self.destination],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal does not cut a batch short
        )  # fmt: skip
        self.pid = process.pid

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this destination's rows to be written; whether
        they all were (what is left stays spooled, and the writer goes on after this process)."""
        deadline = time.monotonic() + timeout
        while self.spool.pending(self.destination):
            if time.monotonic() >= deadline:
                return False
            self.ensure()
            time.sleep(0.05)
        return True
