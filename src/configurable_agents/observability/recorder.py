"""Recording finished runs in MLflow without making them wait: record to the spool, write later.

:meth:`Recorder.record` builds the run's trace and run record (pure Python, no MLflow import),
commits them to the durable spool and makes sure a writer process is draining it. At exit a process
gives its writers a bounded time; the writer process goes on after it, and anything it cannot write
stays in the spool for the next process or for ``configurable-agents observability flush``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config.loader import Workflow
from ..config.settings import MlflowConfig
from ..engine import NullObserver, RunResult, RunStart
from . import layout
from .context import Parent, current, same_store
from .models import FILE_KEY, VERSION_KEY, describe, workflow_file
from .redact import make_scrubber
from .spans import attempt_unpriced, build_trace, run_tags
from .spool import Spool
from .writer import BackgroundWriter, drain

__all__ = [
    "ASSESSMENTS_PER_RECORD",
    "FALLBACK_TAG",
    "FALLBACK_URI",
    "FLUSH_TIMEOUT_ENV",
    "Recorder",
    "background_writer",
    "flush_all",
    "tracking_uri",
]

ASSESSMENTS_PER_RECORD = 200
"""Assessments spooled in one record (a writer writes a record whole, or retries it)."""

FLUSH_TIMEOUT_ENV = "CONFIGURABLE_AGENTS_FLUSH_TIMEOUT"
"""Seconds a process waits at exit for its runs to reach MLflow (default 10)."""

_log = logging.getLogger(__name__)
_writers: dict[tuple[str, str], BackgroundWriter] = {}
_writers_lock = threading.Lock()
_warned: set[str] = set()
_apart: set[tuple[str, str]] = set()
_pruned: set[tuple[str, str]] = set()
_files_sent: set[tuple[str, str, str]] = set()

FALLBACK_URI = "sqlite:///mlflow.db"
"""Where runs are recorded while their ``http(s)`` server does not answer."""

FALLBACK_TAG = "configurable_agents.fallback_for"
"""Trace and run tag naming the server a run was recorded locally in place of."""

PROBE_TIMEOUT_S = 3.0
"""Budget for checking that an MLflow server answers before the first run records to it."""


def probe(destination: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether an ``http(s)`` store accepts connections (other stores are local: always true)."""
    parts = urlsplit(destination)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unwritable(uri: str) -> str | None:
    """Why the SQLite store ``uri`` cannot be written, or None if it can."""
    path = Path(uri.removeprefix("sqlite:///"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
    except (OSError, sqlite3.Error) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_RUN_STATUS = {"success": "FINISHED", "cancelled": "KILLED", "waiting": "FINISHED"}
"""MLflow run status by run status (else FAILED); a `waiting` attempt ended as it should, and
its `run_status` tag says it waits."""


def tracking_uri(config: MlflowConfig, env: Mapping[str, str]) -> str:
    """The store to record to: the config's `tracking_uri` if written, else
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    if "tracking_uri" not in config.model_fields_set and env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return config.tracking_uri


def flush_all(timeout: float | None = None) -> bool:
    """Give every background writer of this process up to ``timeout`` seconds in all."""
    if timeout is None:
        timeout = float(os.environ.get(FLUSH_TIMEOUT_ENV, "10"))
    deadline = time.monotonic() + timeout
    ok = True
    for writer in list(_writers.values()):
        ok &= writer.flush(max(0.0, deadline - time.monotonic()))
    return ok


atexit.register(flush_all)


def background_writer(spool: Spool, destination: str) -> BackgroundWriter:
    """This process's :class:`BackgroundWriter` of ``spool`` to ``destination`` (which
    :func:`flush_all` waits for at exit), made on first use."""
    key = (str(spool.path), destination)
    with _writers_lock:
        if key not in _writers:
            _writers[key] = BackgroundWriter(spool, destination)
        return _writers[key]


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Recorder(NullObserver):
    """Records the runs of one workflow according to its `config.observability.mlflow`: the
    observer that gives each finished run its trace (``result.trace_id``)."""

    def __init__(
        self,
        workflow: Workflow,
        config: MlflowConfig,
        *,
        env: Mapping[str, str] | None = None,
        spool: Spool | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.workflow = workflow
        self.config = config
        self.destination = tracking_uri(config, env)
        self.spool = spool or Spool()
        self.scrub = make_scrubber(env, redact_pii=config.redact_pii)
        self.run_records = True
        """Whether each run gets an MLflow run besides its trace (a batch's rows do not)."""
        self.fallback_for: str | None = None
        """The server this recorder stands in for, when it records locally because that server
        did not answer (its runs are tagged :data:`FALLBACK_TAG`)."""
        self.enabled = True
        """False when neither the store nor the local fallback can be written: runs go untraced."""
        self._parents: dict[str, Parent] = {}
        """The caller's span each run started in (by run id), until the run is recorded."""
        if not probe(self.destination):
            self._fall_back()
        self.pruner: subprocess.Popen[bytes] | None = None
        """The process pruning the store at start (`prune_on_start`), if this recorder began it."""
        if config.prune_on_start and self.enabled:
            self._prune_once()
        if config.async_logging and self.enabled:
            self._writer()  # its start (importing MLflow, opening the store) overlaps the runs

    def _prune_once(self) -> None:
        key = (self.destination, self.config.experiment_name)
        with _writers_lock:
            if key in _pruned:
                return
            _pruned.add(key)
        self.pruner = subprocess.Popen(
            [sys.executable, "-m", "configurable_agents.observability.maintenance",
             self.destination, self.config.experiment_name, str(self.config.retention_days)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def _fall_back(self) -> None:
        server, problem = self.destination, _unwritable(FALLBACK_URI)
        if problem is None:
            self.fallback_for, self.destination = server, FALLBACK_URI
        else:
            self.enabled = False
        if server in _warned:
            return
        _warned.add(server)
        if problem is None:
            _log.warning(
                "MLflow server %s does not answer; recording to %s instead "
                "(`configurable-agents observability sync --to %s` copies those runs there)",
                server,
                FALLBACK_URI,
                server,
            )
        else:
            _log.warning(
                "MLflow server %s does not answer and the local store %s cannot be written "
                "(%s); runs are not recorded",
                server,
                FALLBACK_URI,
                problem,
            )

    @property
    def captures_langchain(self) -> bool:  # type: ignore[override]
        """Whether the runs' records keep LangChain's own runs (`autolog_enabled`)."""
        return self.config.autolog_enabled

    def run_started(self, run: RunStart) -> None:
        """Note the caller's open span (``@mlflow.trace``, ``mlflow.start_span``, a
        ``configurable_agents.tracing`` span), if any: the run's trace goes under it. A caller
        whose trace is in another store gets the run as a trace of its own (said once)."""
        parent = current() if self.enabled else None
        if parent is None:
            return
        if same_store(parent.destination, self.destination):
            self._parents[run.run_id] = parent
        elif (parent.destination, self.destination) not in _apart:
            _apart.add((parent.destination, self.destination))
            _log.warning(
                "workflow %s records to %s and the caller's trace tr-%s is in %s: its runs in "
                "that trace are traces of their own (one trace needs one store, not a file: one)",
                self.workflow.config.flow.name,
                self.destination,
                parent.trace_hex,
                parent.destination,
            )

    def run_finished(self, result: RunResult) -> None:
        """Record the run; its result then carries its trace id."""
        result.trace_id = self.record(result)

    def record(self, result: RunResult) -> str | None:
        """Spool the run's trace and run record; returns the trace id (``tr-...``), or None when
        recording is impossible (see :attr:`enabled`). A run that started in a caller's span
        (:meth:`run_started`) is recorded in the caller's trace, its root that span's child."""
        parent = self._parents.pop(result.run_id, None)
        if not self.enabled:
            return None
        tags = dict(result.tags)
        if self.fallback_for is not None:
            tags[FALLBACK_TAG] = self.fallback_for
        result = dataclasses.replace(result, tags=self._scrub_values(tags))
        trace_id, spans = build_trace(
            result,
            self.workflow,
            scrub=self.scrub,
            log_prompts=self.config.log_prompts,
            trace_hex=parent.trace_hex if parent else None,
            parent_hex=parent.span_hex if parent else None,
        )
        run = self._run_record(result, trace_id) if self.run_records else None
        self._spool({"trace_id": trace_id, "spans": spans, "run": run})
        return trace_id

    def record_run(
        self,
        run: dict[str, Any],
        trace_ids: list[str],
        *,
        dataset: dict[str, str] | None = None,
        of_version: bool = True,
    ) -> str:
        """Spool an MLflow run with no trace of its own, linked to ``trace_ids`` (a batch's
        parent run, an evaluation run); ``run`` has the keys of a run record (name, start_ms,
        end_ms, status, params, metrics, tags, artifacts) and ``dataset`` (name, digest, source)
        is logged as its input. ``of_version=False`` leaves the run unlinked to this workflow
        version's MLflow model (its traces may be of several versions). Returns the record's key,
        which names the run until it is written (:meth:`flush_run`) and then as its
        :data:`~.writer.RECORD_KEY_TAG` tag."""
        run = {
            **run,
            "params": self._scrub_values(run["params"]),
            "tags": self._scrub_values(run["tags"]),
            "artifacts": self.scrub(run["artifacts"]),
        }
        payload: dict[str, Any] = {
            "trace_id": None,
            "spans": [],
            "run": run,
            "linked_traces": trace_ids,
        }
        if dataset is not None:
            payload["dataset"] = self.scrub(dataset)
        self._spool(payload, of_version=of_version)
        return str(payload["key"])

    def record_assessments(
        self, assessments: list[dict[str, Any]], *, source: str | None = None
    ) -> None:
        """Spool assessments of recorded traces: dicts with ``trace_id``, ``kind``
        (`feedback` or `expectation`), ``name``, ``value``, ``rationale``, ``error``,
        ``source_type`` (`CODE`, `LLM_JUDGE`, `HUMAN`), ``source_id`` and ``metadata``. They are
        written after the traces spooled before them; ``source`` (a key from
        :meth:`record_run`) names the evaluation run that made them."""
        if not (self.enabled and assessments):
            return
        for start in range(0, len(assessments), ASSESSMENTS_PER_RECORD):
            payload: dict[str, Any] = {"trace_id": None, "spans": [], "run": None}
            chunk = assessments[start : start + ASSESSMENTS_PER_RECORD]
            self._spool({**payload, "assessments": self.scrub(chunk), "source_key": source})

    def flush_run(self, key: str, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for the run recorded as ``key`` (and what was spooled
        before it) to be written; its MLflow run id, or None if it was not written in time."""
        deadline = time.monotonic() + timeout
        while (run_id := self.spool.run_id(key)) is None and time.monotonic() < deadline:
            if self.config.async_logging:
                self._writer().ensure()
            time.sleep(0.05)
        return run_id

    def _scrub_values(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """Scrubbed values under their keys as they are: tags and params become trace tags and
        MLflow run tags and params, whose names MLflow limits to letters, digits and ``_-.:/ ``
        (a masked key, ``[EMAIL]``, would make the whole run unwritable)."""
        return {key: self.scrub(value) for key, value in mapping.items()}

    def _spool(self, payload: dict[str, Any], *, of_version: bool = True) -> None:
        payload["key"] = uuid.uuid4().hex  # names the MLflow run, so a retried write finds it
        if of_version and (payload["spans"] or payload["run"]):
            self._mark_version(payload)
        self.spool.put(self.destination, self.config.experiment_name, payload)
        if self.config.async_logging:
            self._writer().ensure()  # a writer that went idle meanwhile is started again
        else:
            try:
                drain(self.spool, destination=self.destination)
            except Exception as exc:  # stays spooled; a run never fails for its recording
                _log.warning("MLflow write failed, the run stays spooled: %s", exc)

    def _mark_version(self, payload: dict[str, Any]) -> None:
        """Name the workflow version a trace or run belongs to, which the writer links it to
        (:mod:`.models`); the first such payload of each version in this process also carries
        the resolved workflow file, the version's artifact."""
        version = describe(self.workflow)
        payload[VERSION_KEY] = version
        sent = (self.destination, self.config.experiment_name, version["hash"])
        with _writers_lock:
            first = sent not in _files_sent
            _files_sent.add(sent)
        if first:
            payload[FILE_KEY] = self.scrub(workflow_file(self.workflow))

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this recorder's runs to be written."""
        return self.enabled and self._writer().flush(timeout)

    def _writer(self) -> BackgroundWriter:
        return background_writer(self.spool, self.destination)

    def _run_name(self, result: RunResult) -> str:
        flow = self.workflow.config.flow
        started = dt.datetime.fromtimestamp(result.started_ns / 1e9, dt.UTC)
        values = _Missing(
            workflow_name=flow.name,
            workflow_version=flow.version or "",
            timestamp=started.strftime("%Y%m%d-%H%M%S"),
            run_id=result.run_id,
        )
        template = self.config.run_name or "{workflow_name}-{timestamp}"
        return template.format_map(values)

    def _run_record(self, result: RunResult, trace_id: str) -> dict[str, Any]:
        flow = self.workflow.config.flow
        usage = result.attempt_usage
        nodes: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"tokens": 0, "cost_usd": 0.0, "duration_ms": 0.0, "model": None}
        )
        for record in result.records:
            entry = nodes[record.node_id]
            entry["tokens"] += record.usage.total_tokens
            entry["duration_ms"] += record.duration_s * 1000
            entry["model"] = f"{record.provider}/{record.model}"
            if record.cost_usd is None:
                entry["cost_usd"] = None
            elif entry["cost_usd"] is not None:
                entry["cost_usd"] += float(record.cost_usd)
        metrics: dict[str, float] = {
            layout.METRIC_TOTAL_COST: float(result.attempt_cost_usd),
            layout.METRIC_TOTAL_TOKENS: usage.total_tokens,
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "node_count": len(result.records),
            "duration_seconds": result.duration_s,
            "status": 1.0 if result.status.value == "success" else 0.0,
        }
        for node_id, entry in nodes.items():
            if entry["cost_usd"] is not None:
                metrics[layout.node_key(node_id, "cost_usd")] = entry["cost_usd"]
            metrics[layout.node_key(node_id, "duration_ms")] = entry["duration_ms"]
        params: dict[str, Any] = {
            "workflow_name": flow.name,
            "workflow_version": flow.version or "",
        }
        for record in result.records:
            params[layout.node_key(record.node_id, "provider")] = record.provider
            params[layout.node_key(record.node_id, "model")] = record.model
        if not self.config.redact_pii:
            params.update({f"input_{k}": v for k, v in self._scrub_values(result.inputs).items()})
        summary = {
            "trace_id": trace_id,
            "workflow_name": flow.name,
            "workflow_version": flow.version,
            "status": result.status.value,
            "total_tokens": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
            "total_cost_usd": float(result.attempt_cost_usd),
            "unpriced": attempt_unpriced(result),
            "node_breakdown": dict(nodes),
        }
        return {
            "name": self._run_name(result),
            "start_ms": result.started_ns // 1_000_000,
            "end_ms": (result.started_ns // 1_000_000) + int(result.duration_s * 1000),
            "status": _RUN_STATUS.get(result.status.value, "FAILED"),
            "params": params,
            "metrics": metrics,
            "tags": {
                **self._scrub_values(self.config.tags),
                **result.tags,  # scrubbed by `record`
                **run_tags(result),
                layout.TAG_WORKFLOW: flow.name,
                layout.RUN_TAG_STATUS: result.status.value,
                layout.RUN_TAG_RUN_ID: result.run_id,
            },
            "artifacts": self.scrub(self._artifacts(result, summary)),
        }

    def _artifacts(self, result: RunResult, summary: dict[str, Any]) -> dict[str, Any]:
        if not self.config.log_artifacts:
            return {}
        artifacts: dict[str, Any] = {layout.ARTIFACT_COST_SUMMARY: summary}
        level = self.config.artifact_level
        if level in ("standard", "full"):
            artifacts["node_outputs.json"] = [
                {"node": r.node_id, "iteration": r.iteration, "item_index": r.item_index,
                 "output": r.output}
                for r in result.records
            ]  # fmt: skip
        if level == "full":
            artifacts["prompts.json"] = [
                {"node": r.node_id, "prompt": r.prompt, "replies": [c.reply for c in r.calls]}
                for r in result.records
            ]
        if result.status.value == "waiting":
            artifacts["waiting.json"] = {
                "waiting": [w.to_dict() for w in result.waiting],
                "state": result.state,
            }
        elif result.status.value != "success":
            artifacts["error.json"] = {
                "status": result.status.value,
                "error": result.error,
                "partial_state": result.state,
            }
        return artifacts
