"""LLM judges (`guidelines`, `correctness`) through our own engine and providers.

A judge is a one-node workflow made in memory (``<workflow>.judge``): its call goes through the
provider layer like any node's (the `mock` provider offline, any real provider in use), is priced
by the price book, retried when its structured reply does not parse, and recorded as a trace of
its own in the workflow's experiment, so its cost is reported apart from the workflow's. Its
reply is a verdict (`pass` or `fail`) and a rationale.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..config.evaluation import CorrectnessScorer, GuidelinesScorer
from ..config.loader import Workflow, load_workflow
from ..config.settings import LLMConfig
from ..llm.outputs import FINAL_ANSWER
from .observation import Observation
from .scores import Score, output_value

if TYPE_CHECKING:
    from ..engine import PreparedWorkflow

__all__ = ["JUDGE_RETRIES", "Judges", "judge_prompt"]

JUDGE_RETRIES = 2
"""Retries of a judge call whose reply is not a verdict (or that failed transiently)."""

SCORED_TRACE_TAG = "eval.scored_trace"
"""Judge trace tag: the trace it judged."""

_GUIDELINES = """You judge the answer an AI workflow gave, against guidelines.

Guidelines the answer must follow:
{criteria}

The request (the workflow's inputs):
{request}

The answer (the workflow's outputs):
{response}

Does the answer follow every guideline? Answer with verdict `pass` or `fail` and a rationale of
one or two sentences."""

_CORRECTNESS = """You judge whether the answer an AI workflow gave is correct.

The request (the workflow's inputs):
{request}

The expected answer (or the facts a correct answer contains):
{expected}

The answer (the workflow's outputs):
{response}

Is the answer correct: does it agree with the expected answer and state its facts, with no
contradiction? Answer with verdict `pass` or `fail` and a rationale of one or two sentences."""


class _Verdict(BaseModel):
    """The judge's verdict on the answer."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["pass", "fail"] = Field(description="`pass` or `fail`.")
    rationale: str = Field(description="Why, in one or two sentences.")


Verdict = create_model(FINAL_ANSWER, __base__=_Verdict)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, default=str)


def judge_prompt(scorer: GuidelinesScorer | CorrectnessScorer, obs: Observation) -> str:
    """The judge's whole prompt for one run."""
    response: Any = obs.outputs
    if scorer.output is not None:
        response = output_value(obs, scorer.output)[1]
    values = {"request": _shown(obs.inputs), "response": _shown(response)}
    if isinstance(scorer, GuidelinesScorer):
        rules = scorer.guidelines if isinstance(scorer.guidelines, list) else [scorer.guidelines]
        return _GUIDELINES.format(criteria="\n".join(f"- {rule}" for rule in rules), **values)
    return _CORRECTNESS.format(expected=_shown(obs.expectations[scorer.expected]), **values)


def _merged(*layers: LLMConfig | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            merged.update(layer.model_dump(exclude_none=True))
    return merged


def _judge_workflow(workflow: Workflow, llm: dict[str, Any]) -> Workflow:
    config = workflow.config.config
    observability = config.observability.model_dump(exclude_unset=True, by_alias=True)
    pricing = config.observability.pricing_file
    if pricing is not None and workflow.source and not Path(pricing).is_absolute():
        observability["pricing_file"] = str(Path(workflow.source).parent / pricing)
    return load_workflow({
        "schema_version": "1.0",
        "flow": {"name": f"{workflow.name}.judge", "version": workflow.config.flow.version,
                 "description": f"LLM judge of the {workflow.name} workflow's runs"},
        "state": {"fields": {"task": {"type": "str", "required": True},
                             "verdict": {"type": "str"}, "rationale": {"type": "str"}}},
        "nodes": [{"id": "judge", "prompt": "{task}", "outputs": ["verdict", "rationale"],
                   "max_retries": JUDGE_RETRIES}],
        "edges": [{"from": "START", "to": "judge"}, {"from": "judge", "to": "END"}],
        "config": {"llm": llm, "observability": observability},
    })  # fmt: skip


class Judges:
    """The judge workflows of an evaluation, one per distinct judge model, prepared once.

    Args:
        workflow: The workflow whose runs are judged.
        judge: `evaluation.judge`, over `config.llm`.
        llm: ``--judge-llm PROVIDER[:MODEL]``, over every judge setting.
        env: Environment the judge's API key is read from.
        trace: Record judge calls in MLflow (see :func:`configurable_agents.prepare_workflow`).
    """

    def __init__(
        self,
        workflow: Workflow,
        judge: LLMConfig | None,
        *,
        llm: str | None = None,
        env: Mapping[str, str] | None = None,
        trace: bool | None = None,
    ) -> None:
        self.workflow = workflow
        self.judge = judge
        self.llm = llm
        self.env = env
        self.trace = trace
        self._prepared: dict[str, PreparedWorkflow] = {}

    def prepared(self, scorer: GuidelinesScorer | CorrectnessScorer) -> PreparedWorkflow:
        """The judge workflow of ``scorer``, prepared on first use.

        Raises:
            SetupError: the judge's provider package or key is missing.
        """
        from ..api import prepare_workflow
        from ..observability.recorder import Recorder

        settings = _merged(self.workflow.config.config.llm, self.judge, scorer.judge)
        key = json.dumps(settings, sort_keys=True)
        if key not in self._prepared:
            judge = prepare_workflow(
                _judge_workflow(self.workflow, settings), llm=self.llm, env=self.env,
                trace=self.trace,
            )  # fmt: skip
            judge.plans["judge"].output_model = Verdict  # a verdict the model must choose
            recorder = judge.observer(Recorder)
            if recorder is not None:
                recorder.run_records = False  # a trace per judge call, no MLflow run
            self._prepared[key] = judge
        return self._prepared[key]

    def all_prepared(self, scorers: list[Any]) -> list[PreparedWorkflow]:
        """Prepare the judge of every judge scorer in ``scorers`` (to fail before any run)."""
        return [
            self.prepared(s) for s in scorers if isinstance(s, GuidelinesScorer | CorrectnessScorer)
        ]

    async def score(
        self,
        scorer: GuidelinesScorer | CorrectnessScorer,
        obs: Observation,
        tags: Mapping[str, str] | None = None,
    ) -> Score:
        """Ask the judge; a judge run that fails (its reply never parsed, its provider failed)
        is a scorer error, never an exception."""
        judge = self.prepared(scorer)
        labels = {**(tags or {}), "eval.scorer": scorer.name}
        if obs.trace_id:
            labels[SCORED_TRACE_TAG] = obs.trace_id
        result = await judge.arun({"task": judge_prompt(scorer, obs)}, tags=labels)
        plan = judge.plans["judge"].settings
        source = f"{plan.provider}/{plan.model}"
        cost = float(result.cost_usd)
        if result.status.value != "success":
            return Score(None, error=f"judge {result.error}", cost_usd=cost, source=source)
        verdict = result.outputs.get("verdict")
        if verdict not in ("pass", "fail"):
            error = f"judge gave verdict {verdict!r}, not pass or fail"
            return Score(None, error=error, cost_usd=cost, source=source)
        return Score(
            1.0 if verdict == "pass" else 0.0,
            rationale=str(result.outputs.get("rationale") or ""),
            cost_usd=cost,
            source=source,
        )
