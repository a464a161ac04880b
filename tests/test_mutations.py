"""Property: every mutation of every shipped example is answered properly by `validate` and runs.

Each example in ``examples/`` is mutated (see ``_mutations.py``: deleted, renamed and retyped
keys, swapped ids, control characters, anchors and merge keys, deep nesting, huge values) and:

- `validate` (the CLI command, in-process) exits 0, or 1 with every error located (line and
  column), never with an exception escaping or an ``internal`` diagnostic, and within 2 s;
- a mutated file that validates runs on the mock provider with its required inputs (generated
  from the state schema), no exception escaping and no internal error in the result (a failed
  status is fine when it says why, e.g. a loop cap; so is the documented SetupError of a tool
  that needs a key the empty test environment lacks).

The examples are derandomized, so CI runs the same ones every time; what this test found is kept
as fixed regression cases in ``test_mutation_regressions.py``. To hunt for more, run it with
``MUTATION_EXAMPLES=5000 MUTATION_RANDOM=1`` (new inputs each time).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, note, settings

from configurable_agents import load_workflow, run_workflow
from configurable_agents.cli import app
from configurable_agents.config.state import StateField, field_spec
from configurable_agents.config.types import TypeExpr
from configurable_agents.engine import RunStatus, SetupError

from ._mutations import keywords, mutated

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {p.name: yaml.safe_load(p.read_text()) for p in sorted(ROOT.glob("examples/*.yaml"))}
KEYS = keywords(list(SOURCES.values()))
MAX_EXAMPLES = int(os.environ.get("MUTATION_EXAMPLES", "300"))
RANDOM = bool(os.environ.get("MUTATION_RANDOM"))
VALIDATE_SECONDS = 2.0
MAX_RUN_STEPS = 150  # a mutated loop cap or recursion limit must not make one example run long
# An exception's type name in a failed run's error means it escaped the engine's own handling.
INTERNAL = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Exit)\b(?!\w)")
runner = CliRunner()


def sample(spec: StateField) -> Any:
    """A value of the field's type, for a required input."""
    return _sample(spec.type_expr, spec.schema_)


def _sample(expr: TypeExpr, schema: dict[str, Any] | None) -> Any:
    kind = expr.kind
    if kind == "object":
        return {name: sample(field_spec(entry)) for name, entry in (schema or {}).items()}
    if kind == "list":
        return [_sample(expr.item, schema)]
    if kind == "dict":
        key = 1 if expr.args and expr.args[0].kind == "int" else "k"
        return {key: _sample(expr.value, schema)} if expr.args else {}
    return {"str": "text", "int": 2, "float": 1.5, "bool": True}.get(kind, "text")


def check_validate(path: Path) -> bool:
    """Validate like the CLI; assert the answer is proper; return whether the file is valid."""
    started = time.perf_counter()
    result = runner.invoke(app, ["validate", "--format", "json", str(path)])
    elapsed = time.perf_counter() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("validate raised") from result.exception
    assert result.exit_code in (0, 1), result.output[-2000:]
    (report,) = json.loads(result.output)
    assert report["valid"] is (result.exit_code == 0)
    for diagnostic in report["diagnostics"]:
        assert diagnostic["code"] != "internal", diagnostic["message"]
        if diagnostic["severity"] == "error":
            where = (diagnostic["line"], diagnostic["column"])
            assert None not in where, f"unlocated: {diagnostic['message'][:500]}"
    assert elapsed < VALIDATE_SECONDS, f"validate took {elapsed:.2f} s"
    return bool(report["valid"])


def check_run(path: Path) -> None:
    """Run a valid file on the mock provider; assert nothing internal went wrong."""
    workflow = load_workflow(path)
    settings_ = workflow.config.config
    settings_.observability.opentelemetry.enabled = False  # no exporter: tests stay offline
    settings_.execution.recursion_limit = min(settings_.execution.recursion_limit, MAX_RUN_STEPS)
    inputs = {name: sample(spec) for name, spec in workflow.fields.items() if spec.required}
    try:
        result = run_workflow(workflow, inputs, llm="mock", trace=False, env={})
    except SetupError as exc:  # a documented refusal (web_search without a key), not a crash
        assert "\n" not in str(exc), str(exc)
        return
    if result.status is RunStatus.FAILED:
        assert not INTERNAL.search(result.error or ""), result.error


def test_every_mutated_example_is_answered_properly() -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(case=mutated(SOURCES, KEYS))
    def mutate(case: tuple[str, str, list[str]]) -> None:
        name, text, done = case
        note(f"{name} after {', '.join(done)}:\n{text[:4000]!r}")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            valid = check_validate(path)
            outcomes["valid" if valid else "invalid"] += 1
            if valid:
                check_run(path)

    mutate()
    print(f"mutation outcomes: {dict(outcomes)}")  # shown with -s
    # the strategy must keep enough files valid for the run half of the property to mean something
    assert outcomes["valid"] >= MAX_EXAMPLES // 20, outcomes
    assert outcomes["invalid"] >= MAX_EXAMPLES // 2, outcomes
