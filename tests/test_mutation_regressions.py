"""Fixed regression cases: what the mutation property (``test_mutations.py``) found, one class each.

Each test is the smallest file of its class; the comment says what went wrong before the fix.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import yaml

from configurable_agents import validate_workflow

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = (ROOT / "examples" / "article_writer.yaml").read_text()


def _diagnostics(tmp_path: Path, name: str, text: str) -> tuple[object, list]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return validate_workflow(path)


def _assert_all_located(diagnostics: list) -> None:
    assert diagnostics
    for diagnostic in diagnostics:
        assert diagnostic.code != "internal", diagnostic.format()
        assert diagnostic.line is not None and diagnostic.column is not None, diagnostic.format()


def test_json_text_yaml_would_reject_is_still_located(tmp_path: Path) -> None:
    # JSON allows DEL (and other characters YAML forbids) in strings; positions came from reading
    # the JSON as YAML, which failed, so every error of such a file was unlocated.
    text = json.dumps(yaml.safe_load(ARTICLE), indent=1)
    text = text.replace('"schema_version"', '"\x7fschema_version"')
    workflow, diagnostics = _diagnostics(tmp_path, "w.json", text)
    assert workflow is None
    _assert_all_located(diagnostics)
    unknown = next(d for d in diagnostics if "unknown key" in d.message)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "\x7f" in row)
    assert (unknown.line, unknown.column) == (line, 2)


def test_json_positions_survive_any_nesting_and_duplicates(tmp_path: Path) -> None:
    data = yaml.safe_load(ARTICLE)
    data["flow"]["tags"] = [[[[]]], {"a": [1, {"b": "x\\"}]}]
    text = json.dumps(data, indent=1).replace('"name": "article_writer"', '"name": 5', 1)
    workflow, diagnostics = _diagnostics(tmp_path, "w.json", text)
    assert workflow is None
    _assert_all_located(diagnostics)
    duplicated = text.replace('"version"', '"name": "x",\n  "version"', 1)
    workflow, (error,) = _diagnostics(tmp_path, "d.json", duplicated)
    assert "duplicate key 'name'" in error.message
    assert (error.line, error.column) == (5, 3)


def test_bare_state_placeholder_beside_the_unset_field_check(tmp_path: Path) -> None:
    # `{state}` alone is reported as an error; the unset-field check then indexed past its end
    # and the whole validation ended in an internal error.
    text = ARTICLE.replace("Write an article about {topic}", "Write about {state}")
    workflow, diagnostics = _diagnostics(tmp_path, "w.yaml", text)
    assert workflow is None
    _assert_all_located(diagnostics)
    assert "'state' needs a field name" in diagnostics[0].message


@pytest.mark.parametrize(
    ("key", "typo"),
    [
        ("schema_version", "schema_versoin"),
        ("flow", "flwo"),
        ("nodes", "ndoes"),
        ("edges", "egdes"),
    ],
)
def test_a_misspelt_top_level_key_is_one_error(tmp_path: Path, key: str, typo: str) -> None:
    # A renamed required top-level key was reported twice: as unknown, then (on the pass that
    # checks what is left) as missing, or for nodes and edges as an empty list.
    text = ARTICLE.replace(f"\n{key}:", f"\n{typo}:")
    workflow, diagnostics = _diagnostics(tmp_path, "w.yaml", text)
    assert workflow is None
    (error,) = diagnostics
    assert error.message.startswith(f"unknown key {typo!r}")
    assert error.suggestion == key
    assert error.line == next(i for i, row in enumerate(text.splitlines(), 1) if typo in row)


# -- huge values stay fast: the property allows `validate` 2 s per file, and so do these --------

ROUTING = yaml.safe_load((ROOT / "examples" / "routing.yaml").read_text())


def _timed(tmp_path: Path, data: dict) -> tuple[list, float]:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=10**9))
    started = time.perf_counter()
    workflow, diagnostics = validate_workflow(path)
    elapsed = time.perf_counter() - started
    assert workflow is None
    _assert_all_located(diagnostics)
    return diagnostics, elapsed


def test_a_huge_misspelt_name_gets_no_slow_suggestion(tmp_path: Path) -> None:
    # A 300 KB type name (the example's `int` repeated) spent half a second in difflib for each
    # suggestion, once per validation pass and per copy of an aliased node: 15 s for one file.
    data = copy.deepcopy(ROUTING)
    data["nodes"][0]["output_schema"]["fields"][1]["type"] = "int" * 100_000
    data["nodes"].append(data["nodes"][0])
    diagnostics, elapsed = _timed(tmp_path, data)
    assert elapsed < 2.0
    assert all(len(d.message) < 300 for d in diagnostics)
    assert all(d.suggestion is None for d in diagnostics)


def test_a_placeholder_repeated_many_times_is_one_error_found_fast(tmp_path: Path) -> None:
    # 40,000 copies of one unknown placeholder were 40,000 errors, each located by searching the
    # text from its start again: 9 minutes. A template has at most 1,000 placeholders, and a
    # repeated problem is reported once.
    data = copy.deepcopy(ROUTING)
    data["nodes"][1]["prompt"] = "{nope}" * 40_000
    (error,), elapsed = _timed(tmp_path, data)
    assert "at most 1000 placeholders" in error.message
    assert elapsed < 2.0
    data["nodes"][1]["prompt"] = "".join("{nope}" + "x" * 900 for _ in range(1_000))
    (error,), elapsed = _timed(tmp_path, data)
    assert error.message == "placeholder {nope}: no state field 'nope'"
    assert error.column == data["nodes"][1]["prompt"].index("{nope}") + len("  prompt: '") + 1
    assert elapsed < 2.0


def test_a_thousand_different_problems_in_one_value_are_located_fast(tmp_path: Path) -> None:
    data = copy.deepcopy(ROUTING)
    prompt = "".join(f"{{n{i}}}" + "x" * 900 for i in range(1_000))
    data["nodes"][1]["prompt"] = prompt
    diagnostics, elapsed = _timed(tmp_path, data)
    assert len(diagnostics) == 1_000
    assert elapsed < 2.0
    last = diagnostics[-1]
    assert "{n999}" in last.message
    assert last.column == prompt.index("{n999}") + len("  prompt: '") + 1


def test_fan_out_whose_output_type_was_left_out(tmp_path: Path) -> None:
    # The target's output field had a misspelt type, so its declaration was left out and its
    # type unknown; the collect field was then declared as `list[any]`, which is no type of the
    # language, and validation ended in an internal error instead of the one real mistake.
    data = yaml.safe_load((ROOT / "examples" / "fan_out.yaml").read_text())
    data["state"]["fields"]["answer"] = {"type": "strr"}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    workflow, diagnostics = validate_workflow(path)
    assert workflow is None
    _assert_all_located(diagnostics)
    (error,) = diagnostics
    assert error.path == "state.fields.answer.type"
    assert error.suggestion == "str"
