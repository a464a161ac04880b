"""Reading a workflow file safely: size and encoding checks, YAML or JSON, and source positions.

YAML is composed with PyYAML's safe composer and turned into plain data by :mod:`.builder`, so
that every value keeps its line and column, duplicate keys are caught, no tag can build a Python
object, and alias expansion ("billion laughs") is capped. Every problem found in a file's text is
reported at a line and column.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .builder import (
    MAX_DEPTH,
    MAX_VALUES,
    Builder,
    BuildError,
    parse_json_int,
    plain_data_problem,
)
from .diagnostics import Diagnostic
from .json_positions import scan_json

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "SourceDocument",
    "SourceError",
    "read_source",
]

MAX_FILE_BYTES = 1_000_000
"""Largest workflow file accepted. Real workflows are a few kilobytes."""

Loc = tuple[str | int, ...]

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SourceError(Exception):
    """The file cannot be read as a workflow at all; carries one located diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.format())
        self.diagnostic = diagnostic


@dataclass
class SourceDocument:
    """The data of a workflow file, with the position of every value and mapping key.

    Attributes:
        file: The path as given by the user.
        data: The parsed document (plain dicts, lists and scalars).
        text: The file's text.
        values: Position ``(line, column)``, 1-based, of the value at each config path.
        keys: Position of the key that introduces each mapping entry.
        spans: Start and end character offsets of the value at each config path.
    """

    file: str
    data: Any
    text: str = ""
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    spans: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    _hits: dict[tuple[Loc, str], list[int]] = field(default_factory=dict, repr=False)
    _braced: dict[Loc, dict[str, list[int]]] = field(default_factory=dict, repr=False)
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def locate(self, loc: Loc, *, key: bool = False) -> tuple[int, int] | None:
        """Position of ``loc``, or of its nearest ancestor that has one.

        With ``key=True`` the position of the mapping key is preferred (for unknown keys).
        """
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            if key and end == len(loc) and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return None

    def find(self, loc: Loc, needle: str, nth: int = 0) -> tuple[int, int] | None:
        """Position of the ``nth`` occurrence of ``needle`` in the source text of the value at
        ``loc``, if it is there."""
        if loc not in self.spans or not needle:
            return None
        hits = self._occurrences(loc, needle)
        if nth >= len(hits):
            return None
        if not self._line_starts:
            self._line_starts = [0, *(m.end() for m in _NEWLINE.finditer(self.text))]
        line = bisect.bisect_right(self._line_starts, hits[nth])
        return line, hits[nth] - self._line_starts[line - 1] + 1

    def _occurrences(self, loc: Loc, needle: str) -> list[int]:
        """Offsets of every occurrence of ``needle`` in the value at ``loc``, found once: a
        ``{placeholder}`` from one scan of the value's braces, anything else by searching."""
        start, end = self.spans[loc]
        if _BRACED.fullmatch(needle):
            if loc not in self._braced:
                found: dict[str, list[int]] = {}
                for match in _BRACED.finditer(self.text, start, end):
                    found.setdefault(match.group(), []).append(match.start())
                self._braced[loc] = found
            return self._braced[loc].get(needle, [])
        key = (loc, needle)
        if key not in self._hits:
            hits = []
            hit = self.text.find(needle, start, end)
            while hit >= 0:
                hits.append(hit)
                hit = self.text.find(needle, hit + 1, end)
            self._hits[key] = hits
        return self._hits[key]


_NEWLINE = re.compile("\n")
_BRACED = re.compile(r"\{[^{}\n]*\}")


def read_source(path: str | os.PathLike[str]) -> SourceDocument:
    """Read and parse a workflow file (YAML, or JSON for ``.json``).

    Raises:
        SourceError: the file is missing, not a file, empty, too large, binary, not UTF-8, or not
            well-formed YAML/JSON; the diagnostic says which, with a position where there is one.
    """
    name = os.fspath(path)
    text = _read_text(Path(name), name)
    if name.lower().endswith(".json"):
        return _parse_json(text, name)
    return _parse_yaml(text, name)


def _fail(
    file: str, message: str, line: int | None = None, column: int | None = None
) -> SourceError:
    return SourceError(Diagnostic(message, file=file, line=line, column=column, code="source"))


def _read_text(path: Path, name: str) -> str:
    try:
        if path.is_dir():
            raise _fail(name, "is a directory, not a workflow file")
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _fail(name, "no such file") from None
    except PermissionError:
        raise _fail(name, "permission denied") from None
    except OSError as exc:
        raise _fail(name, f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(
            name,
            f"file is {max(size, len(raw)) / 1_000_000:.1f} MB; workflow files are limited to "
            f"{MAX_FILE_BYTES // 1_000_000} MB (the limit is passed here)",
            *_byte_position(raw, MAX_FILE_BYTES),
        )
    if b"\x00" in raw:
        at = raw.index(b"\x00")
        raise _fail(name, "is a binary file, not YAML or JSON text", *_byte_position(raw, at))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        raise _fail(name, problem, *_byte_position(raw, exc.start)) from None
    if not text.strip():
        raise _fail(name, "file is empty")
    return text


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    """Line and column (in characters) of byte ``offset``."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    column = len(raw[line_start:offset].decode("utf-8", "replace"))
    return raw.count(b"\n", 0, offset) + 1, column + 1


def _char_position(text: str, offset: int) -> tuple[int, int]:
    """Line and column of character ``offset`` of ``text``."""
    offset = max(0, min(offset, len(text)))
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _parse_json(text: str, name: str) -> SourceDocument:
    try:
        data = json.loads(text, parse_int=parse_json_int)
    except json.JSONDecodeError as exc:
        before = text[: exc.pos].rstrip()
        trailing = before.endswith(",") and text[exc.pos : exc.pos + 1] in "}]"
        problem = "trailing comma" if trailing else exc.msg
        raise _fail(name, f"invalid JSON: {problem}", exc.lineno, exc.colno) from None
    except RecursionError:
        position = _char_position(text, _deepest_bracket(text))
        problem = f"invalid JSON: nested deeper than {MAX_DEPTH} levels"
        raise _fail(name, problem, *position) from None
    found = scan_json(text)
    if found.duplicate is not None:
        key, position = found.duplicate
        raise _fail(name, f"duplicate key {key!r}", *position)
    document = SourceDocument(name, data, text, found.values, found.keys, found.spans)
    not_plain = plain_data_problem(data)
    if not_plain is not None:
        loc, message = not_plain
        raise _fail(name, message, *(document.locate(loc) or (1, 1)))
    return document


def _deepest_bracket(text: str) -> int:
    """Offset of the first bracket nested deeper than :data:`MAX_DEPTH` (0 if none is)."""
    depth = 0
    for offset, char in enumerate(text):
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return offset
        elif char in "]}":
            depth -= 1
    return 0


def _parse_yaml(text: str, name: str) -> SourceDocument:
    try:
        loader = _SAFE_LOADER(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, name) from None
    if root is None:
        raise _fail(name, "file is empty")
    document = SourceDocument(name, None, text)
    document.data = _build(document, root)
    return document


def _yaml_error(exc: yaml.YAMLError, text: str, name: str) -> SourceError:
    """A located diagnostic for any error of PyYAML's reader, scanner, parser or composer."""
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml gives a byte offset, PyYAML's own reader a character offset
        raw = text.encode("utf-8", "surrogatepass")
        offset = exc.position if _SAFE_LOADER is not yaml.SafeLoader else None
        if offset is not None:
            line, column = _byte_position(raw, offset)
        else:
            line, column = _char_position(text, exc.position)
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        problem = f"invalid YAML: character U+{code:04X} is not allowed ({exc.reason})"
        return _fail(name, problem, line, column)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        if mark is not None:
            return _fail(name, f"invalid YAML: {problem}", mark.line + 1, mark.column + 1)
        return _fail(name, f"invalid YAML: {problem}", 1, 1)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _fail(name, f"invalid YAML: {first}", 1, 1)


def _build(document: SourceDocument, root: yaml.Node) -> Any:
    try:
        return Builder(document.values, document.keys, document.spans).build(root)
    except BuildError as exc:
        raise _fail(document.file, exc.message, *(exc.position or (1, 1))) from None
