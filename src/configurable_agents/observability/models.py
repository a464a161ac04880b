"""Workflow versions as MLflow models: one ``LoggedModel`` per distinct version of a workflow.

A version is the workflow's name, its `flow.version` and :func:`workflow_hash`, the hash of the
resolved workflow (its config once registry prompts are replaced by their text, and the prompt
versions they came from). The run's process computes the hash and marks what it spools with
:func:`describe` (and, once per process and version, the resolved file, :func:`workflow_file`);
it imports no MLflow. The background writer (:class:`VersionModels`) finds the version's model by
its :data:`HASH_TAG` tag, or creates it once, with the file as its artifact and its prompt
versions linked, and links every trace (trace metadata ``mlflow.modelId``, what MLflow's "Agent
versions" page and ``search_traces(model_id=...)`` read) and every run (a model input, and for
an evaluation its metrics) to it. :func:`list_versions` reads the versions back with their run
counts, costs and latest evaluation scores.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.loader import Workflow
from . import layout
from .layout import SPAN_SESSION, TRACE_SESSION, TRACE_USER

__all__ = [
    "FILE_ARTIFACT",
    "FILE_KEY",
    "HASH_ATTRIBUTE",
    "HASH_TAG",
    "MODEL_ID_METADATA",
    "VERSION_KEY",
    "VersionModels",
    "VersionSummary",
    "describe",
    "list_versions",
    "log_linked_spans",
    "model_name",
    "trace_metadata",
    "workflow_file",
    "workflow_hash",
]

_log = logging.getLogger(__name__)

HASH_ATTRIBUTE = "workflow.hash"
"""Root span attribute: the :func:`workflow_hash` of the version that ran."""
VERSION_KEY = "workflow_version"
"""Spool payload key: the version a trace or run belongs to (:func:`describe`)."""
FILE_KEY = "workflow_file"
"""Spool payload key: the resolved workflow file, in the first payload of each version that a
process spools."""
HASH_TAG = "configurable_agents.workflow_hash"
"""LoggedModel tag: the version's hash, by which the writer finds the model."""
FILE_TAG = "configurable_agents.workflow_file"
"""LoggedModel tag: the artifact holding the resolved workflow, set once it is uploaded."""
FILE_ARTIFACT = "workflow.yaml"
"""The model's artifact: the resolved workflow as YAML."""
MODEL_ID_METADATA = "mlflow.modelId"
"""MLflow's trace metadata linking a trace to a LoggedModel."""
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
"""MLflow's LoggedModel tag listing the prompt versions linked to it."""
EVALUATION_RUN = ("mlflow.runType", "genai_evaluate")
"""The tag of an evaluation run, whose metrics are also the model's (as MLflow's own evaluations
log them)."""
MODEL_TYPE = "agent"

_hashes: dict[int, tuple[Workflow, str]] = {}
_HASHES_KEPT = 64
_BAD_NAME = re.compile(r"[/:.%\"'\s]+")  # characters MLflow refuses in a model name


def _resolved(workflow: Workflow) -> dict[str, Any]:
    return workflow.config.model_dump(mode="json", by_alias=True, exclude_unset=True)


def workflow_hash(workflow: Workflow) -> str:
    """The first 16 hex digits of the SHA-256 of the canonical JSON of the resolved workflow
    (its config as written, registry prompts replaced by their text), of the registry prompt
    versions it uses and of its sub-workflows' hashes (a change in one is a new version of the
    workflows that use it); remembered per workflow object, so each run does not hash it
    again."""
    kept = _hashes.get(id(workflow))
    if kept is not None and kept[0] is workflow:
        return kept[1]
    document: dict[str, Any] = {
        "workflow": _resolved(workflow),
        "prompts": dict(workflow.prompt_versions),
    }
    if workflow.subworkflows:
        document["subworkflows"] = {k: workflow_hash(w) for k, w in workflow.subworkflows.items()}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    if len(_hashes) >= _HASHES_KEPT:
        del _hashes[next(iter(_hashes))]
    _hashes[id(workflow)] = (workflow, digest)
    return digest


def describe(workflow: Workflow) -> dict[str, Any]:
    """The version a run belongs to, as the writer needs it to find or create its model: `name`,
    `version` (`flow.version`, "" when unset), `hash` and `prompts` (node id -> ``name/3``)."""
    flow = workflow.config.flow
    return {
        "name": flow.name,
        "version": flow.version or "",
        "hash": workflow_hash(workflow),
        "prompts": dict(sorted(workflow.prompt_versions.items())),
    }


def workflow_file(workflow: Workflow) -> str:
    """The resolved workflow as YAML: what the model keeps as its :data:`FILE_ARTIFACT`."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    header = "".join(
        f"# nodes.{node}.prompt: prompts:/{ref}\n"
        for node, ref in describe(workflow)["prompts"].items()
    )
    body = yaml.dump(_resolved(workflow), Dumper=dumper, sort_keys=False, allow_unicode=True)
    return header + body


def model_name(version: dict[str, Any]) -> str:
    """``<workflow>-<version>-<hash prefix>``, with the characters MLflow refuses in a model name
    (``/ : . % " '``) replaced by ``_``."""
    parts = [version["name"], version["version"], version["hash"][:8]]
    return "-".join(_BAD_NAME.sub("_", part) for part in parts if part)


@contextmanager
def store_lock(destination: str, suffix: str) -> Iterator[None]:
    """Serialise the writers of one SQLite store around one step (the lock file is the store's
    path plus ``suffix``); other stores need no lock."""
    if not destination.startswith("sqlite:///"):
        yield
        return
    path = Path(destination.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}{suffix}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class VersionModels:
    """The LoggedModel of each workflow version in one store, found or created once per writer.

    Args:
        client: The writer's ``MlflowClient``.
        destination: Its tracking URI.
    """

    def __init__(self, client: Any, destination: str) -> None:
        self.client = client
        self.destination = destination
        self._ids: dict[tuple[str, str], str] = {}
        self._with_file: set[str] = set()

    def model_id(
        self, experiment_id: str, version: dict[str, Any], file: str | None = None
    ) -> str | None:
        """The model of ``version`` in the experiment, created if missing; ``file`` (the resolved
        workflow) becomes its artifact if it has none yet. None when the store refuses (the
        traces and runs are written unlinked, with a warning)."""
        from mlflow.exceptions import MlflowException

        key = (experiment_id, version["hash"])
        try:
            if key not in self._ids:
                # other stores settle a race after the fact (see _create)
                with store_lock(self.destination, ".models.lock"):
                    found = self._find(experiment_id, version["hash"])
                    self._ids[key] = found or self._create(experiment_id, version, file)
            model_id = self._ids[key]
            if file is not None and model_id not in self._with_file:
                if FILE_TAG not in self.client.get_logged_model(model_id).tags:
                    self._attach(model_id, file)
                self._with_file.add(model_id)
        except (MlflowException, NotImplementedError, OSError) as exc:
            _log.warning("workflow version %s not linked: %s", model_name(version), exc)
            return None
        return model_id

    def _search(self, experiment_id: str, digest: str) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self.client.search_logged_models(
                [experiment_id], filter_string=f"tags.`{HASH_TAG}` = '{digest}'", page_token=token
            )
            found.extend(page)
            token = page.token
            if not token:
                return found

    def _find(self, experiment_id: str, digest: str) -> str | None:
        """The version's model: the first created, if several writers raced."""
        found = self._search(experiment_id, digest)
        if not found:
            return None
        return str(min(found, key=lambda m: (m.creation_timestamp, m.model_id)).model_id)

    def _create(self, experiment_id: str, version: dict[str, Any], file: str | None) -> str:
        """Create the version's model. A writer of another store that created the same version
        meanwhile is found after creating: the first created stays, ours is deleted."""
        params = {
            "workflow_name": version["name"],
            "workflow_version": version["version"],
            "workflow_hash": version["hash"],
            **{f"prompt.{node}": ref for node, ref in version["prompts"].items()},
        }
        tags = {
            HASH_TAG: version["hash"],
            layout.TAG_WORKFLOW: version["name"],
            layout.TAG_WORKFLOW_VERSION: version["version"],
        }
        linked = self._linked_prompts(version["prompts"].values())
        if linked:
            tags[LINKED_PROMPTS_TAG] = linked
        model = self.client.create_logged_model(
            experiment_id, name=model_name(version), tags=tags, params=params,
            model_type=MODEL_TYPE,
        )  # fmt: skip
        if file is not None:
            self._attach(model.model_id, file)
            self._with_file.add(model.model_id)
        self.client.finalize_logged_model(model.model_id, "READY")
        winner = self._find(experiment_id, version["hash"]) or model.model_id
        if winner != model.model_id:
            self.client.delete_logged_model(model.model_id)
        return winner

    def _linked_prompts(self, references: Any) -> str | None:
        """MLflow's :data:`LINKED_PROMPTS_TAG` value for the registry versions (``name/3``) this
        store has. Written here: the client's ``link_prompt_version_to_model`` sets it in the
        default tracking store (MLflow 3.17), not this writer's."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracing.utils.prompt import update_linked_prompts_tag

        versions = []
        for reference in sorted(set(references)):
            name, _, number = reference.rpartition("/")
            try:
                versions.append(self.client.get_prompt_version(name, number))
            except MlflowException as exc:
                _log.warning("prompt %s not linked to its workflow version: %s", reference, exc)
        return str(update_linked_prompts_tag(None, versions)) if versions else None

    def _attach(self, model_id: str, file: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / FILE_ARTIFACT
            path.write_text(file, encoding="utf-8")
            self.client._tracking_client.log_model_artifact(model_id, str(path))
        self.client.set_logged_model_tags(model_id, {FILE_TAG: FILE_ARTIFACT})


def log_linked_spans(
    store: Any,
    experiment_id: str,
    spans: list[Any],
    links: dict[str, tuple[str, list[dict[str, Any]]]],
    *,
    remote: bool,
) -> None:
    """``log_spans`` of a batch, each trace of ``links`` linked to its model: trace metadata
    :data:`MODEL_ID_METADATA`, which ``log_spans`` does not derive from span attributes.

    A SQL store gets the metadata rows after the spans, in one transaction. A tracking server
    (``remote``) has no call that sets one metadata key: a trace whose root is ours is created
    with its link before its spans are written (``start_trace``, as MLflow's own exporter does,
    one request a trace), and a trace whose root is a caller's span gets its info again with the
    key added once the spans are in (``start_trace`` merges it). A link the store refuses is a
    warning: the trace stays written, unlinked.

    Args:
        store: The writer's tracking store.
        experiment_id: Where the spans go.
        spans: The batch's spans (MLflow ``Span`` objects).
        links: Model id and span dictionaries by trace id.
        remote: Whether the store is a tracking server.

    Raises:
        NotImplementedError: the store keeps traces as artifacts (a file store).
    """
    from mlflow.exceptions import MlflowException

    later = {trace_id: model_id for trace_id, (model_id, _) in links.items()}
    for trace_id, (model_id, span_dicts) in links.items() if remote else ():
        root = next((s for s in span_dicts if HASH_ATTRIBUTE in s["attributes"]), None)
        if root is not None and not root.get("parent_span_id"):
            with contextlib.suppress(MlflowException):  # tried again once the spans are in
                store.start_trace(_trace_info(trace_id, experiment_id, root, model_id))
                del later[trace_id]
    store.log_spans(experiment_id, spans)
    if not later:
        return
    try:
        if hasattr(store, "ManagedSessionMaker"):  # a SqlAlchemyStore
            _link_in_sql(store, later)
            return
        for trace_id, model_id in later.items():
            info = store.get_trace_info(trace_id)
            info.trace_metadata[MODEL_ID_METADATA] = model_id
            store.start_trace(info)
    except MlflowException as exc:
        _log.warning("%d trace(s) not linked to their workflow version: %s", len(later), exc)


def _trace_info(trace_id: str, experiment_id: str, root: dict[str, Any], model_id: str) -> Any:
    """The info of a trace whose root span is ``root`` (a span dictionary), linked to
    ``model_id``; what its spans say besides (tags, previews, usage, cost) ``log_spans`` adds."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState

    start_ns, end_ns = root["start_time_unix_nano"], root["end_time_unix_nano"]
    failed = root["status"]["code"] == "STATUS_CODE_ERROR"
    return TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=start_ns // 1_000_000,
        execution_duration=(end_ns - start_ns) // 1_000_000,
        state=TraceState.ERROR if failed else TraceState.OK,
        trace_metadata=trace_metadata(
            {k: json.loads(v) for k, v in root["attributes"].items()}, model_id
        ),
    )


def trace_metadata(root_attributes: Mapping[str, Any], model_id: str | None) -> dict[str, str]:
    """The metadata of a trace whose root span has ``root_attributes`` (decoded), for a store
    that is given the trace's info rather than deriving it from the spans as ``log_spans`` does:
    its session and user (the MLflow UI's Sessions page and user filter read them) and its
    workflow version's model, if any."""
    metadata = {MODEL_ID_METADATA: model_id} if model_id else {}
    for attribute, key in ((SPAN_SESSION, TRACE_SESSION), ("user.id", TRACE_USER)):
        if root_attributes.get(attribute) is not None:
            metadata[key] = str(root_attributes[attribute])
    return metadata


def _link_in_sql(store: Any, links: dict[str, str]) -> None:
    """The metadata rows of a batch in two statements (a retried batch replaces its rows)."""
    from mlflow.store.tracking.dbmodels.models import SqlTraceMetadata
    from sqlalchemy import delete, insert

    table = SqlTraceMetadata.__table__
    rows = [
        {"request_id": trace_id, "key": MODEL_ID_METADATA, "value": model_id}
        for trace_id, model_id in sorted(links.items())
    ]
    with store.ManagedSessionMaker(read_only=False) as session:
        session.execute(
            delete(table).where(
                table.c.key == MODEL_ID_METADATA, table.c.request_id.in_(sorted(links))
            )
        )
        session.execute(insert(table), rows)


@dataclass
class VersionSummary:
    """One version of a workflow as recorded in MLflow.

    Attributes:
        model_id: Its LoggedModel.
        name: The workflow's name.
        version: Its `flow.version` ("" when unset).
        hash: :func:`workflow_hash`.
        created_ms: When its model was created (its first run was written).
        traces: Traces (runs) linked to it.
        cost_usd: Their total cost (priced calls).
        prompts: Node id -> registry prompt version (``name/3``).
        evaluation_run_id: Its latest evaluation run, if any.
        evaluated_ms: When that evaluation ended.
        scores: That evaluation's mean score per scorer.
    """

    model_id: str
    name: str
    version: str
    hash: str
    created_ms: int
    traces: int = 0
    cost_usd: float = 0.0
    prompts: dict[str, str] = field(default_factory=dict)
    evaluation_run_id: str | None = None
    evaluated_ms: int | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return dict(self.__dict__)


def _latest_scores(model: Any) -> tuple[str | None, int | None, dict[str, float]]:
    """The newest evaluation run among the model's metrics, when it ended and its means."""
    by_run: dict[str, list[Any]] = defaultdict(list)
    for metric in model.metrics or []:
        if metric.run_id:
            by_run[metric.run_id].append(metric)
    if not by_run:
        return None, None, {}
    run_id, metrics = max(by_run.items(), key=lambda item: max(m.timestamp for m in item[1]))
    scores = {m.key.removesuffix("/mean"): m.value for m in metrics if m.key.endswith("/mean")}
    return run_id, max(m.timestamp for m in metrics), dict(sorted(scores.items()))


def _trace_totals(client: Any, experiment_id: str, model_id: str) -> tuple[int, float]:
    """Traces linked to the model and their cost, aggregated in the store."""
    from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

    where = [f'trace.metadata.{MODEL_ID_METADATA} = "{model_id}"']
    totals = []
    for view, metric, aggregation in (("TRACES", "trace_count", "COUNT"),
                                      ("SPANS", "total_cost", "SUM")):  # fmt: skip
        points = client._tracking_client.store.query_trace_metrics(
            experiment_ids=[experiment_id],
            view_type=MetricViewType(view),
            metric_name=metric,
            aggregations=[MetricAggregation(AggregationType(aggregation))],
            filters=where,
        )
        totals.append(sum(p.values[aggregation] or 0 for p in points))
    return int(totals[0]), float(totals[1])


def list_versions(client: Any, experiment_id: str, workflow: str) -> list[VersionSummary]:
    """The recorded versions of ``workflow`` in the experiment, oldest first.

    Args:
        client: An ``MlflowClient`` of the store.
        experiment_id: The workflow's experiment.
        workflow: The workflow's name.

    Raises:
        MlflowException: the store refuses a query.
    """
    models: list[Any] = []
    token = None
    while True:
        page = client.search_logged_models([experiment_id], page_token=token)
        # compared here: a workflow's name may hold what a filter string cannot quote
        models.extend(
            m for m in page if HASH_TAG in m.tags and m.tags.get(layout.TAG_WORKFLOW) == workflow
        )
        token = page.token
        if not token:
            break
    summaries = []
    for model in sorted(models, key=lambda m: (m.creation_timestamp, m.model_id)):
        traces, cost = _trace_totals(client, experiment_id, model.model_id)
        run_id, ended, scores = _latest_scores(model)
        params = model.params
        summaries.append(
            VersionSummary(
                model_id=model.model_id,
                name=workflow,
                version=model.tags.get(layout.TAG_WORKFLOW_VERSION, ""),
                hash=model.tags[HASH_TAG],
                created_ms=model.creation_timestamp,
                traces=traces,
                cost_usd=cost,
                prompts={k.removeprefix("prompt."): v for k, v in params.items()
                         if k.startswith("prompt.")},
                evaluation_run_id=run_id,
                evaluated_ms=ended,
                scores=scores,
            )
        )  # fmt: skip
    return summaries
