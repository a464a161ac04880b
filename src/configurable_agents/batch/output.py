"""The results file of a batch: one JSON line per row, written as rows finish.

Each line is appended and flushed as its row finishes, so Ctrl-C or a kill leaves a file that
``--resume`` continues (a line cut short by a kill is ignored). A row id may then appear several
times (a failed row, then its re-run); when the batch ends, however it ends, the file is rewritten
atomically with one line per row id, the latest, in input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["ResultsFile", "read_results"]


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The latest result line of each row id in ``path`` (none if it does not exist).

    Raises:
        OSError: the file exists but cannot be read.
    """
    latest: dict[str, dict[str, Any]] = {}
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return latest
    with handle:
        for line in handle:
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: that row runs again
            if isinstance(result, dict) and isinstance(result.get("id"), str):
                latest[result["id"]] = result
    return latest


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class ResultsFile:
    """Appends result lines to ``path``; :meth:`close` leaves one line per row id."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        """Open ``path`` for appending (``resume``) or create it empty.

        Raises:
            OSError: it cannot be opened.
        """
        self.path = path
        self._handle: IO[str] | None = path.open("a" if resume else "w", encoding="utf-8")
        if resume and self._handle.tell() and not _ends_with_newline(path):
            self._handle.write("\n")  # end a line cut short by a kill; it is skipped on reading

    def write(self, result: dict[str, Any]) -> None:
        """Append one row's result and flush it to the operating system."""
        if self._handle is None:
            raise ValueError("results file is closed")
        self._handle.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()

    def close(self, order: Iterable[str]) -> None:
        """Rewrite the file atomically with the latest line of each row id, ids in ``order``
        first, then any others (rows of an earlier inputs file) as they were."""
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        latest = read_results(self.path)
        ordered = [latest.pop(row_id) for row_id in order if row_id in latest]
        ordered += latest.values()
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            for result in ordered:
                handle.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
        os.replace(temporary, self.path)
