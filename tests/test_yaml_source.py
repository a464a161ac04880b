"""Reading YAML: every error located, control characters, merge keys, and odd scalars.

Every problem inside a file is reported at a line and column, whatever part of the reader finds
it; YAML 1.1 merge keys merge as YAML defines them; no scalar can make validation raise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from configurable_agents import validate_workflow

BASE = """\
schema_version: "1.0"
flow: {name: base, version: "1"}
config:
  llm: {provider: openai, model: gpt-4o-mini, temperature: 0.2}
state:
  fields:
    topic: {type: str, required: true}
nodes:
  - id: write
    prompt: "Write about {topic}"
    outputs: [article]
edges:
  - {from: START, to: write}
  - {from: write, to: END}
"""

CONTROL = [chr(c) for c in (*range(1, 9), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)] + [
    chr(c) for c in (0x80, 0x84, 0x86, 0x9F, 0xFFFE, 0xFFFF)
]


def _errors(tmp_path: Path, text: str, name: str = "w.yaml") -> list:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    workflow, diagnostics = validate_workflow(path)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert workflow is None and errors
    return errors


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
@pytest.mark.parametrize("where", ["value", "key", "comment"])
def test_control_character_is_located_where_it_is(tmp_path: Path, char: str, where: str) -> None:
    line = {
        "value": f'    prompt: "Write {char}about {{topic}}"',
        "key": f'    pro{char}mpt: "Write about {{topic}}"',
        "comment": f'    prompt: "Write about {{topic}}"  # note{char}',
    }[where]
    text = BASE.replace('    prompt: "Write about {topic}"', line)
    (error,) = _errors(tmp_path, text)
    assert error.line == 10, error.format()
    assert error.column == line.index(char) + 1, error.format()
    assert f"U+{ord(char):04X}" in error.message or f"#x{ord(char):04x}" in error.message


def test_nul_byte_is_located(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_bytes(BASE.replace("Write about", "Write\x00 about").encode())
    workflow, (error,) = validate_workflow(path)
    assert workflow is None
    assert (error.line, error.column) == (10, 19)
    assert "binary" in error.message


@pytest.mark.parametrize(
    ("snippet", "line"),
    [
        ('flow: {name: "unclosed}\n', 3),
        ("flow: [a, b\n", 3),
        ("flow:\n\tname: x\n", 3),
        ('flow: {name: "bad \\q escape"}\n', 2),
        ("flow: {name: *nowhere}\n", 2),
        ("flow: {name: x}\n---\nflow: {name: y}\n", 3),
        ("%YAML 2.0\n---\nflow: {name: x}\n", 2),
        ("flow: {name: x}\n  bad: indent\n", 3),
        ("flow: {name: x} trailing\n", 2),
        ("? [complex, key]\n: value\n", 2),
        ("flow: {name: !!python/object:os.system x}\n", 2),
        ("flow: {name: !custom x}\n", 2),
        ("flow: {version: " + "9" * 5000 + "}\n", 2),
        ("flow: {version: 123456789012345678901234567890}\n", 2),
        ("flow: {name: x, <<: 5}\n", 2),
        ("flow: {<<: [{name: x}, 3]}\n", 2),
        ("flow: &f {<<: *f}\n", 2),
    ],
    ids=lambda value: str(value)[:30],
)
def test_every_yaml_error_is_located(tmp_path: Path, snippet: str, line: int) -> None:
    text = 'schema_version: "1.0"\n' + snippet
    errors = _errors(tmp_path, text)
    for error in errors:
        assert error.line is not None and error.column is not None, error.format()
    assert line in [e.line for e in errors], [e.format() for e in errors]


def test_json_nested_too_deep_is_an_error_not_a_crash(tmp_path: Path) -> None:
    text = '{"schema_version": "1.0", "flow": {"name": "x", "tags": ' + "[" * 200 + "]" * 200 + "}}"
    (error,) = _errors(tmp_path, text, "w.json")
    assert "nested deeper than 64" in error.message


def test_mapping_nested_too_deep_is_an_error_not_a_crash() -> None:
    data: dict = {"schema_version": "1.0", "flow": {"name": "x"}}
    deep: list = []
    data["flow"]["tags"] = deep
    for _ in range(3000):
        deep.append([])
        deep = deep[0]
    workflow, diagnostics = validate_workflow(data)
    assert workflow is None
    assert any("nested deeper than 64" in d.message for d in diagnostics)


def test_a_cyclic_mapping_is_an_error_not_a_crash() -> None:
    data: dict = {"schema_version": "1.0", "flow": {"name": "x"}}
    data["flow"]["tags"] = data
    workflow, diagnostics = validate_workflow(data)
    assert workflow is None
    assert diagnostics


@pytest.mark.parametrize("source", [42, None, b"schema_version: 1.0", ["a"]])
def test_validate_workflow_answers_any_argument_without_raising(source: object) -> None:
    workflow, (error,) = validate_workflow(source)  # type: ignore[arg-type]
    assert workflow is None
    assert error.code == "source"
    assert "expected a file path or a mapping" in error.message


# -- merge keys --------------------------------------------------------------------------------

MERGED = """\
schema_version: "1.0"
flow: {name: merged}
config:
  llm: &base {provider: openai, model: gpt-4o-mini, temperature: 0.2}
nodes:
  - id: write
    prompt: "Write"
    outputs: [article]
    llm: {<<: *base, temperature: 0.5}
  - id: edit
    prompt: "Edit {article}"
    outputs: [final]
    llm:
      <<: [{temperature: 1.5, model: first}, *base]
edges:
  - {from: START, to: write}
  - {from: write, to: edit}
  - {from: edit, to: END}
"""


def test_merge_key_overrides_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(MERGED)
    workflow, diagnostics = validate_workflow(path)
    assert workflow is not None, [d.format() for d in diagnostics]
    write, edit = workflow.config.nodes
    assert write.llm is not None and edit.llm is not None
    assert (write.llm.provider, write.llm.model, write.llm.temperature) == (
        "openai",
        "gpt-4o-mini",
        0.5,
    )
    # in a list of merged mappings, the earlier one wins
    assert (edit.llm.model, edit.llm.temperature) == ("first", 1.5)


def test_merged_value_errors_point_at_where_the_value_is_written(tmp_path: Path) -> None:
    text = MERGED.replace("temperature: 0.2}", "temperature: 0.2, seed: 1}")
    errors = _errors(tmp_path, text)
    assert errors[0].line == 4, errors[0].format()
    assert "unknown key 'seed'" in errors[0].message


@pytest.mark.parametrize(
    "llm",
    [
        "{<<: *base, temperature: 0.5, temperature: 0.7}",
        "{<<: *base, <<: *base}",
    ],
)
def test_a_true_duplicate_key_is_still_an_error(tmp_path: Path, llm: str) -> None:
    text = MERGED.replace("{<<: *base, temperature: 0.5}", llm)
    (error,) = _errors(tmp_path, text)
    assert "duplicate key" in error.message
    assert error.line == 9


def test_duplicate_key_inside_a_merged_mapping_is_an_error(tmp_path: Path) -> None:
    text = MERGED.replace("{<<: *base, temperature: 0.5}", "{<<: {model: a, model: b}}")
    (error,) = _errors(tmp_path, text)
    assert "duplicate key 'model'" in error.message
    assert error.line == 9


def test_merge_bomb_is_capped(tmp_path: Path) -> None:
    lines = ['schema_version: "1.0"', "a0: &a0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5}"]
    for i in range(1, 12):
        refs = ", ".join(f"m{j}: *a{i - 1}" for j in range(9))
        lines.append(f"a{i}: &a{i} {{<<: *a{i - 1}, {refs}}}")
    errors = _errors(tmp_path, "\n".join(lines) + "\n")
    assert any("alias bomb" in e.message for e in errors)
    assert all(e.line is not None for e in errors)


# -- scalars -----------------------------------------------------------------------------------


def test_a_date_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(BASE.replace('version: "1"', "version: 2024-01-31"))
    workflow, diagnostics = validate_workflow(path)
    assert workflow is not None, [d.format() for d in diagnostics]
    assert workflow.config.flow.version == "2024-01-31"


def test_a_date_in_a_dict_default_runs(tmp_path: Path) -> None:
    from configurable_agents import run_workflow

    topic = "    topic: {type: str, required: true}\n"
    meta = "    meta: {type: dict, default: {day: 2024-01-31}}\n"
    text = BASE.replace(topic, topic + meta).replace("about {topic}", "about {topic} on {meta}")
    path = tmp_path / "w.yaml"
    path.write_text(text)
    result = run_workflow(path, {"topic": "x"}, llm="mock", trace=False)
    assert result.error is None
    assert '"2024-01-31"' in (result.records[0].prompt or "")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_not_settings(tmp_path: Path, value: str) -> None:
    llm = "  llm: {provider: openai, model: gpt-4o-mini, temperature: 0.2}\n"
    text = BASE.replace(llm, llm + f"  execution: {{max_cost_usd: {value}}}\n")
    (error,) = _errors(tmp_path, text)
    assert error.path == "config.execution.max_cost_usd", error.format()
    assert error.line == 5
