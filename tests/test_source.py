"""Files that are not workflows at all get one clear line and exit 1, fast, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

BOMB = "\n".join(
    [f'a0: &a0 ["{"lol"}"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)

CASES = {
    "empty.yaml": (b"", "file is empty"),
    "blank.yaml": (b"  \n# only a comment\n", "file is empty"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\x00", "binary file"),
    "latin1.yaml": (b"flow: caf\xe9\n", "1:10: error: is not UTF-8 text"),
    "python_tag.yaml": (
        b'!!python/object/apply:os.system ["touch pwned"]\n',
        "YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    "python_tag_value.yaml": (
        b"flow: !!python/name:os.system\n",
        "YAML tag '!!python/name:os.system' is not allowed",
    ),
    "bomb.yaml": (BOMB.encode(), "alias bomb"),
    "recursive.yaml": (b"a: &a [*a]\n", "nested deeper than"),
    "huge.yaml": (b"# padding\n" * 1_100_000, "workflow files are limited to 1 MB"),
    "trailing.json": (b'{"flow": {"name": "x"},\n}\n', "2:1: error: invalid JSON: trailing comma"),
    "duplicate.yaml": (b"flow: {name: a}\nflow: {name: b}\n", "2:1: error: duplicate key 'flow'"),
    "duplicate.json": (b'{"flow": 1, "flow": 2}', "duplicate key 'flow'"),
    "malformed.yaml": (b"flow: [a, b\n", "invalid YAML"),
    "list.yaml": (b"- a\n- b\n", "must be a mapping"),
    "tabs.yaml": (b"flow:\n\tname: x\n", "invalid YAML"),
}


def _validate(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result, time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_gets_one_line_and_exit_1(tmp_path: Path, name: str) -> None:
    content, expected = CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    result, elapsed = _validate(path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    first, summary = result.stdout.splitlines()
    assert expected in first
    assert first.startswith(str(path))
    assert summary == f"✗ {path}: 1 error"
    assert elapsed < 2.0
    assert not (tmp_path / "pwned").exists()


def test_directory_and_missing_file(tmp_path: Path) -> None:
    for path, expected in ((tmp_path, "is a directory"), (tmp_path / "nope.yaml", "no such file")):
        result, _ = _validate(path)
        assert result.returncode == 1
        assert expected in result.stdout
        assert "Traceback" not in result.stderr
