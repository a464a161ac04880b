"""Where each value and key of a JSON text is, by config path, found without recursion.

JSON is read by Python's ``json`` module; this scanner only finds positions, in any JSON text that
module accepts (control characters in strings, ``NaN``, any nesting), so that every problem in a
JSON workflow is located.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JsonPositions", "scan_json"]

Loc = tuple[Any, ...]
Position = tuple[int, int]

_WHITESPACE = " \t\r\n"
_SCALAR_END = ",]}" + _WHITESPACE


@dataclass
class JsonPositions:
    """Positions in a JSON text, as :class:`.source.SourceDocument` keeps them.

    Attributes:
        values: Config path -> (line, column) of the value (the first one, for duplicate keys).
        keys: Config path -> (line, column) of the key introducing it.
        spans: Config path -> start and end character offsets of the value.
        duplicate: The first key written twice in one object, and where its second time is.
    """

    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)
    spans: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    duplicate: tuple[str, Position] | None = None


def scan_json(text: str) -> JsonPositions:
    """Positions of every value and key of ``text``, which ``json.loads`` has accepted."""
    return _Scanner(text).run()


@dataclass
class _Frame:
    """An open object or array."""

    loc: Loc
    kind: str
    start: int
    index: int = 0
    seen: set[str] = field(default_factory=set)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.found = JsonPositions()
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def skip(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in _WHITESPACE:
            i += 1
        return i

    def run(self) -> JsonPositions:
        stack: list[_Frame] = []
        i, loc, want_value = 0, (), True
        while True:
            i = self.skip(i)
            if want_value:
                i, loc, want_value = self.value(i, loc, stack)
                continue
            if not stack or i >= len(self.text):
                return self.found
            frame = stack[-1]
            if self.text[i] in "]}":
                self.found.spans.setdefault(frame.loc, (frame.start, i + 1))
                stack.pop()
                i += 1
                continue
            i = self.skip(i + 1)  # past the comma
            frame.index += 1
            i, loc = self.member(i, frame)
            want_value = True

    def value(self, i: int, loc: Loc, stack: list[_Frame]) -> tuple[int, Loc, bool]:
        """Record the value at ``i``: (where to go on, the path there, whether a value is next)."""
        self.found.values.setdefault(loc, self.position(i))
        char = self.text[i]
        if char in "[{":
            frame = _Frame(loc, char, i)
            stack.append(frame)
            after = self.skip(i + 1)
            if self.text[after] in "]}":
                return after, loc, False
            after, member = self.member(after, frame)
            return after, member, True
        end = self.string_end(i) if char == '"' else i
        while char != '"' and end < len(self.text) and self.text[end] not in _SCALAR_END:
            end += 1
        self.found.spans.setdefault(loc, (i, end))
        return end, loc, False

    def member(self, i: int, frame: _Frame) -> tuple[int, Loc]:
        """The path of the next member of ``frame`` and where its value starts (after its key)."""
        if frame.kind == "[":
            return i, (*frame.loc, frame.index)
        end = self.string_end(i)
        name = json.loads(self.text[i:end])
        if name in frame.seen and self.found.duplicate is None:
            self.found.duplicate = (name, self.position(i))
        frame.seen.add(name)
        self.found.keys.setdefault((*frame.loc, name), self.position(i))
        colon = self.skip(end)
        return self.skip(colon + 1), (*frame.loc, name)

    def string_end(self, i: int) -> int:
        """Offset just past the string starting at ``i``."""
        i += 1
        while self.text[i] != '"':
            i += 2 if self.text[i] == "\\" else 1
        return i + 1
