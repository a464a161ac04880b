"""Every file in ``tests/invalid/`` holds one mistake and must get exactly that one located error.

Each YAML file starts with comment lines saying what is expected (a JSON file, which cannot hold
comments, has them in a sibling ``<name>.expect`` file)::

    # path: nodes[0].promt
    # line: 11
    # message: unknown key 'promt'
    # suggestion: prompt          (optional; when absent, no suggestion may be given)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from configurable_agents import validate_workflow

CASES = sorted(
    p for p in (Path(__file__).parent / "invalid").iterdir() if p.suffix in (".yaml", ".json")
)
_HEADER = re.compile(r"^#\s*(path|line|column|message|suggestion):\s*(.*?)\s*$")


def _expectations(path: Path) -> dict[str, str]:
    source = path.with_suffix(".expect") if path.suffix == ".json" else path
    expected: dict[str, str] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        match = _HEADER.match(line)
        if not match:
            break
        expected[match.group(1)] = match.group(2)
    return expected


def test_suite_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_located_error(case: Path) -> None:
    expected = _expectations(case)
    assert {"path", "line", "message"} <= expected.keys(), f"{case.name}: header incomplete"
    workflow, diagnostics = validate_workflow(case)
    assert workflow is None
    errors = [d for d in diagnostics if d.severity == "error"]
    assert len(errors) == 1, "\n".join(d.format() for d in errors)
    (error,) = errors
    assert error.path == expected["path"], error.format()
    assert error.line == int(expected["line"]), error.format()
    if "column" in expected:
        assert error.column == int(expected["column"]), error.format()
    assert expected["message"] in error.message, error.format()
    assert error.suggestion == expected.get("suggestion"), error.format()
    assert error.file == str(case)
