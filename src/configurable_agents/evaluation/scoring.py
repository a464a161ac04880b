"""Applying every scorer of an evaluation to one run: deterministic ones in place, function
scorers in a thread, judges through :class:`~.judges.Judges`."""

from __future__ import annotations

import asyncio
import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from ..config.evaluation import (
    CorrectnessScorer,
    EvaluationConfig,
    FunctionScorer,
    GuidelinesScorer,
    Scorer,
)
from ..config.loader import Workflow
from .judges import Judges
from .observation import Observation
from .scores import Score, score_deterministic, skipped_for

__all__ = ["EvaluationSetupError", "Scoring"]


class EvaluationSetupError(Exception):
    """The evaluation cannot start: a function scorer cannot be imported, a judge's provider
    is missing, or the workflow has no `evaluation:` section."""


def _as_score(returned: Any) -> Score:
    """A function scorer's return value as a score: a bool, a number from 0 to 1, or
    ``(value, rationale)``."""
    rationale = None
    if isinstance(returned, tuple) and len(returned) == 2:
        returned, rationale = returned
    if isinstance(returned, bool):
        return Score(1.0 if returned else 0.0, rationale=rationale and str(rationale))
    if isinstance(returned, numbers.Real) and 0 <= float(returned) <= 1:
        return Score(float(returned), rationale=rationale and str(rationale))
    shown = repr(returned)[:80]
    return Score(None, error=f"returned {shown}; expected a bool, a number from 0 to 1, or "
                 "(value, rationale)")  # fmt: skip


class Scoring:
    """The scorers of a workflow's `evaluation:` section, ready to score runs.

    Args:
        workflow: The workflow (its `evaluation:` section names the scorers).
        names: Only these scorers (default: all).
        judge_llm: ``--judge-llm PROVIDER[:MODEL]`` for every judge.
        env: Environment the judges' API keys are read from.
        trace: Record judge calls in MLflow.

    Raises:
        EvaluationSetupError: no `evaluation:` section, a function scorer cannot be imported,
            or a judge cannot be prepared.
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        names: list[str] | None = None,
        judge_llm: str | None = None,
        env: Mapping[str, str] | None = None,
        trace: bool | None = None,
    ) -> None:
        from ..engine import SetupError
        from ..tools import ToolError
        from ..tools.custom import allowed_function

        evaluation = workflow.config.evaluation
        if evaluation is None:
            raise EvaluationSetupError(
                f"{workflow.source or workflow.name}: no `evaluation:` section names scorers"
            )
        self.evaluation: EvaluationConfig = evaluation
        self.scorers: list[Scorer] = [
            s for s in evaluation.scorers if names is None or s.name in names
        ]
        allowed = workflow.config.config.tools.allowed_modules
        self.functions: dict[str, Callable[..., Any]] = {}
        self.judges = Judges(workflow, evaluation.judge, llm=judge_llm, env=env, trace=trace)
        try:
            for scorer in self.scorers:
                if isinstance(scorer, FunctionScorer):
                    self.functions[scorer.name] = allowed_function(
                        scorer.function, allowed, what="scorer function"
                    )
            self.judges.all_prepared(self.scorers)
        except (ToolError, SetupError, ValueError) as exc:
            raise EvaluationSetupError(str(exc)) from None

    @property
    def columns(self) -> set[str]:
        """Dataset columns the scorers read expected values from."""
        return {c for s in self.scorers if (c := getattr(s, "expected", None)) is not None}

    async def score(
        self,
        obs: Observation,
        *,
        tags: Mapping[str, str] | None = None,
        judges: bool = True,
    ) -> dict[str, Score]:
        """Every scorer's score of one run, by scorer name; with ``judges`` false (a spent
        budget), judge scorers are skipped."""
        scores: dict[str, Score] = {}
        pending: dict[str, Any] = {}
        for scorer in self.scorers:
            skipped = skipped_for(scorer, obs)
            if skipped is not None:
                scores[scorer.name] = Score(None, skipped=skipped)
            elif not obs.succeeded:
                why = f"the run ended {obs.status}: {obs.error}"
                scores[scorer.name] = Score(0.0, rationale=why, run_failed=True)
            elif isinstance(scorer, GuidelinesScorer | CorrectnessScorer):
                if judges:
                    pending[scorer.name] = self.judges.score(scorer, obs, tags)
                else:
                    scores[scorer.name] = Score(None, skipped="the daily judge budget is spent")
            elif isinstance(scorer, FunctionScorer):
                pending[scorer.name] = self._call(scorer, obs)
            else:
                scores[scorer.name] = score_deterministic(scorer, obs)
        if pending:
            done = await asyncio.gather(*pending.values())
            scores.update(zip(pending, done, strict=True))
        return {s.name: scores[s.name] for s in self.scorers}

    async def _call(self, scorer: FunctionScorer, obs: Observation) -> Score:
        function = self.functions[scorer.name]
        try:
            if inspect.iscoroutinefunction(function):
                returned = await function(obs)
            else:
                returned = await asyncio.to_thread(function, obs)
        except Exception as exc:  # a user's scorer must not stop the evaluation
            return Score(None, error=f"{scorer.function} raised {type(exc).__name__}: {exc}")
        return _as_score(returned)
