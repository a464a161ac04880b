"""Reading a batch's inputs: one row per workflow run, from JSONL, CSV or JSON.

Each row's id is its ``id`` key (or column) when it has one, else its row number (1-based); ids
are strings in results. The ``id`` key is passed to the workflow only if its state has an ``id``
field. CSV cells are text: each is converted to its state field's type like ``run -i`` does, and an
empty cell counts as not given. A file that cannot be read as a whole (missing, not UTF-8, not
JSON, not a list of objects, no CSV header, duplicate ids) raises :class:`DatasetError`; a row
whose values do not fit the workflow is kept with its problem, to be reported as a failed row.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.loader import Workflow
from ..engine.inputs import coerce_text

__all__ = ["FORMATS", "DatasetError", "Row", "read_rows"]

FORMATS = (".jsonl", ".csv", ".json")
"""File extensions understood, by which the format is chosen."""

ID_KEY = "id"


class DatasetError(ValueError):
    """The inputs file cannot be used at all; the message is one located line."""


@dataclass
class Row:
    """One input row.

    Attributes:
        id: The row's id (its ``id`` value, else its 1-based row number), as text.
        number: 1-based position in the file.
        where: Its location, e.g. ``data.jsonl:12`` (file and line).
        inputs: The workflow inputs it holds.
        problem: Why it cannot run (it is reported as a failed row), if it cannot.
    """

    id: str
    number: int
    where: str
    inputs: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def read_rows(path: Path, workflow: Workflow) -> list[Row]:
    """The rows of ``path``, in file order.

    Raises:
        DatasetError: the file is missing, unreadable, of an unknown kind or malformed as a whole,
            or two rows share an id.
    """
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        kind = suffix or "(none)"
        raise DatasetError(f"{path}: unknown inputs format {kind!r}; use .jsonl, .csv or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if suffix == ".jsonl":
        rows = _jsonl(path, text)
    elif suffix == ".json":
        rows = _json(path, text)
    else:
        rows = _csv(path, text, workflow)
    _assign_ids(rows, workflow)
    return rows


def _jsonl(path: Path, text: str) -> list[Row]:
    rows: list[Row] = []
    for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = Row("", len(rows) + 1, f"{path}:{line_number}")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            row.problem = f"not JSON: {exc.msg} (column {exc.colno})"
        else:
            _set_object(row, value)
        rows.append(row)
    return rows


def _json(path: Path, text: str) -> list[Row]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    if not isinstance(document, list):
        kind = type(document).__name__
        raise DatasetError(f"{path}: expected a JSON list of objects, got {kind}")
    rows = []
    for number, value in enumerate(document, 1):
        row = Row("", number, f"{path}[{number - 1}]")
        _set_object(row, value)
        rows.append(row)
    return rows


def _set_object(row: Row, value: Any) -> None:
    if isinstance(value, dict):
        row.inputs = value
    else:
        row.problem = f"expected an object of field values, got {type(value).__name__}"


def _csv(path: Path, text: str, workflow: Workflow) -> list[Row]:
    reader = csv.DictReader(text.splitlines(keepends=True), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise DatasetError(f"{path}:1: unreadable CSV header: {exc}") from None
    if not header:
        raise DatasetError(f"{path}: empty CSV file (a header row names the fields)")
    if len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})
        raise DatasetError(f"{path}:1: column {twice[0]!r} appears twice in the header")
    rows: list[Row] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from None
        row = Row("", len(rows) + 1, f"{path}:{reader.line_num}")
        rows.append(row)
        if None in cells:
            row.problem = f"{len(header) + len(cells[None])} cells for {len(header)} columns"
            continue
        problems = []
        for name, raw in cells.items():
            spec = workflow.fields.get(name)
            if raw is None or raw == "":
                continue  # an empty (or missing) cell: not given
            if spec is None or (name == ID_KEY and ID_KEY not in workflow.fields):
                row.inputs[name] = raw  # unknown names are reported by the input check
                continue
            try:
                row.inputs[name] = coerce_text(spec, raw)
            except ValueError as exc:
                problems.append(f"input {name!r}: {exc}")
        row.problem = "; ".join(problems) or None


def _assign_ids(rows: list[Row], workflow: Workflow) -> None:
    seen: dict[str, Row] = {}
    for row in rows:
        given = row.inputs.get(ID_KEY)
        if given is None or given == "":
            row.id = str(row.number)
        elif isinstance(given, str | int) and not isinstance(given, bool):
            row.id = str(given)
        else:
            row.id = str(row.number)
            row.problem = row.problem or f"id must be a string or an integer, got {given!r}"
        if ID_KEY not in workflow.fields:
            row.inputs.pop(ID_KEY, None)
        if row.id in seen:
            first = seen[row.id]
            raise DatasetError(f"{row.where}: duplicate id {row.id!r} (first at {first.where})")
        seen[row.id] = row
