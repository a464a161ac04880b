"""Fixed regression cases: what the mutation property (``test_mutations.py``) found, one class each.

Each test is the smallest file of its class; the comment says what went wrong before the fix.
"""

from __future__ import annotations

import json
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
