"""The tree is ruff clean (lint and format), as the project's style requires."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "src", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_ruff_check() -> None:
    result = _ruff("check")
    assert result.returncode == 0, result.stdout


def test_ruff_format() -> None:
    result = _ruff("format", "--check")
    assert result.returncode == 0, result.stdout
