"""Online monitoring: `serve` and `worker` score a sample of the runs they finish.

The sample is deterministic in the run id (a hash of it against `evaluation.online.sample`), so
a run is in or out whichever replica ran it. Scoring happens on a thread of its own, never on the
request path, one run at a time (so the judge budget is never overspent by calls in flight);
each scored run's assessments are spooled for its trace. Judges stop for the rest
of the UTC day once `max_cost_usd_per_day` is spent (deterministic scorers go on), which is
logged once and shown by ``workflow_judge_budget_exhausted`` on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING

from ..config.evaluation import OnlineConfig
from ..engine import NullObserver, RunResult
from .executor import assessments_of
from .observation import Observation
from .scores import Score
from .scoring import Scoring

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..engine import PreparedWorkflow
    from ..observability.recorder import Recorder

__all__ = ["MAX_BACKLOG", "ONLINE_METRICS", "WINDOW", "OnlineEvaluator", "in_sample"]

WINDOW = 100
"""Scored runs the ``workflow_quality_score`` gauge averages over, per scorer."""

MAX_BACKLOG = 1000
"""Sampled runs waiting to be scored at most; a run sampled beyond that is not scored (counted
by ``workflow_online_eval_dropped_total``)."""

ONLINE_METRICS = (
    "workflow_quality_score",
    "workflow_quality_scored_total",
    "workflow_judge_cost_usd_total",
    "workflow_judge_budget_exhausted",
    "workflow_online_eval_dropped_total",
)
"""The metrics online monitoring exports, as Prometheus queries name them."""

_log = logging.getLogger(__name__)


def in_sample(run_id: str, share: float) -> bool:
    """Whether run ``run_id`` is in a sample of ``share`` (0 to 1) of all runs."""
    digest = hashlib.sha256(run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class _Metrics:
    def __init__(self, workflow: str, registry: CollectorRegistry | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        registry = registry or CollectorRegistry()
        self.registry = registry
        self.quality = Gauge(
            "workflow_quality_score",
            f"Mean score of the last {WINDOW} runs scored online, 0 to 1.",
            ["workflow", "scorer"], registry=registry,
        )  # fmt: skip
        self.scored = Counter(
            "workflow_quality_scored", "Runs scored online, by outcome.",
            ["workflow", "scorer", "outcome"], registry=registry,
        )  # fmt: skip
        self.judge_cost = Counter(
            "workflow_judge_cost_usd", "Cost of online judge calls, USD.", ["workflow"],
            registry=registry,
        )  # fmt: skip
        self.exhausted = Gauge(
            "workflow_judge_budget_exhausted",
            "1 while the day's online judge budget is spent (judges paused).", ["workflow"],
            registry=registry,
        )  # fmt: skip
        self.dropped = Counter(
            "workflow_online_eval_dropped", "Sampled runs not scored: the backlog was full.",
            ["workflow"], registry=registry,
        )  # fmt: skip
        self.judge_cost.labels(workflow)
        self.dropped.labels(workflow)
        self.exhausted.labels(workflow).set(0)


def _outcome(score: Score) -> str:
    if score.skipped is not None:
        return "skipped"
    if score.passed is None:
        return "error"
    return "passed" if score.passed else "failed"


class OnlineEvaluator(NullObserver):
    """Scores a sample of a prepared workflow's finished runs in the background.

    Args:
        prepared: The workflow served; its `evaluation.online` says what to score.
        registry: Where the metrics go (the server's, so ``/metrics`` shows them).
        env: Environment the judges' API keys are read from.
        today: The current UTC date (tests move it).

    Raises:
        EvaluationSetupError: a scorer cannot be prepared.
    """

    def __init__(
        self,
        prepared: PreparedWorkflow,
        *,
        registry: CollectorRegistry | None = None,
        env: Mapping[str, str] | None = None,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
    ) -> None:
        from ..observability.recorder import Recorder

        workflow = prepared.workflow
        evaluation = workflow.config.evaluation
        assert evaluation is not None and evaluation.online is not None
        self.config: OnlineConfig = evaluation.online
        names = self.config.scorers or [
            s.name for s in evaluation.scorers if getattr(s, "expected", None) is None
        ]
        self.scoring = Scoring(workflow, names=names, env=env)
        self.recorder: Recorder | None = prepared.observer(Recorder)
        self.workflow = workflow.name
        self.metrics = _Metrics(self.workflow, registry)
        self.today = today
        self.spent: dict[dt.date, float] = defaultdict(float)
        self._recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))
        self._warned: set[dt.date] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[Future[None]] = set()
        self._turn: asyncio.Lock | None = None

    @classmethod
    def attach(
        cls, prepared: PreparedWorkflow, registry: CollectorRegistry | None = None
    ) -> OnlineEvaluator | None:
        """Attach an evaluator to ``prepared`` if its `evaluation.online` asks for one."""
        evaluation = prepared.workflow.config.evaluation
        if evaluation is None or evaluation.online is None or evaluation.online.sample == 0:
            return None
        evaluator = cls(prepared, registry=registry)
        prepared.observers.append(evaluator)
        return evaluator

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._loop.run_forever, name="online-eval", daemon=True
                )
                thread.start()
            return self._loop

    def run_finished(self, result: RunResult) -> None:
        """Queue the run for scoring if it is in the sample (returns at once)."""
        if result.status.value == "cancelled" or not in_sample(result.run_id, self.config.sample):
            return
        with self._lock:
            full = len(self._pending) >= MAX_BACKLOG
        if full:
            self.metrics.dropped.labels(self.workflow).inc()
            return
        future = asyncio.run_coroutine_threadsafe(self._score_next(result), self._event_loop())
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            _log.warning("online scoring failed: %s", future.exception())

    def judges_allowed(self) -> bool:
        """Whether today's judge budget has room left."""
        budget = self.config.max_cost_usd_per_day
        day = self.today()
        with self._lock:
            allowed = budget is None or self.spent[day] < budget
        self.metrics.exhausted.labels(self.workflow).set(0 if allowed else 1)
        if not allowed and day not in self._warned:
            self._warned.add(day)
            _log.warning(
                "online evaluation of %s: the judge budget of $%g for %s is spent; judges "
                "pause until the next UTC day (deterministic scorers go on)",
                self.workflow, budget, day,
            )  # fmt: skip
        return allowed

    async def _score_next(self, result: RunResult) -> None:
        if self._turn is None:  # made on the scoring loop, where it is awaited
            self._turn = asyncio.Lock()
        async with self._turn:
            await self._score(result)

    async def _score(self, result: RunResult) -> None:
        obs = Observation.of(result)
        scores = await self.scoring.score(
            obs, tags={"eval.mode": "online"}, judges=self.judges_allowed()
        )
        cost = sum(score.cost_usd for score in scores.values())
        with self._lock:
            self.spent[self.today()] += cost
        if cost:
            self.metrics.judge_cost.labels(self.workflow).inc(cost)
        for name, score in scores.items():
            self.metrics.scored.labels(self.workflow, name, _outcome(score)).inc()
            if score.value is not None and score.skipped is None:
                recent = self._recent[name]
                recent.append(score.value)
                self.metrics.quality.labels(self.workflow, name).set(sum(recent) / len(recent))
        self.judges_allowed()  # the gauge shows a budget spent by this run at once
        if self.recorder is not None and obs.trace_id:
            numeric = {s.name for s in self.scoring.scorers if s.type == "function"}
            found = assessments_of(obs.trace_id, scores, {}, dataset="online", numeric=numeric)
            self.recorder.record_assessments(found)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the runs queued so far to be scored."""
        from concurrent.futures import wait

        with self._lock:
            pending = set(self._pending)
        return not wait(pending, timeout=timeout).not_done
