"""Reading a workflow file safely: size and encoding checks, YAML or JSON, and source positions.

YAML is composed with PyYAML's safe composer and turned into plain data here, so that every value
keeps its line and column, duplicate keys are caught, no tag can build a Python object, and alias
expansion ("billion laughs") is capped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .diagnostics import Diagnostic

__all__ = ["MAX_FILE_BYTES", "SourceDocument", "SourceError", "read_source"]

MAX_FILE_BYTES = 1_000_000
"""Largest workflow file accepted. Real workflows are a few kilobytes."""

MAX_VALUES = 100_000
"""Most values a document may expand to, aliases included."""

MAX_DEPTH = 64
"""Deepest nesting a document may have."""

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
        start, end = self.spans[loc]
        hit = start - 1
        for _ in range(nth + 1):
            hit = self.text.find(needle, hit + 1, end)
            if hit < 0:
                return None
        line = self.text.count("\n", 0, hit) + 1
        return line, hit - (self.text.rfind("\n", 0, hit) + 1) + 1


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
        if size > MAX_FILE_BYTES:
            raise _fail(
                name,
                f"file is {size / 1_000_000:.1f} MB; workflow files are limited to "
                f"{MAX_FILE_BYTES // 1_000_000} MB",
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(name, "no such file") from None
    except PermissionError:
        raise _fail(name, "permission denied") from None
    except OSError as exc:
        raise _fail(name, f"cannot read file: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise _fail(name, "is a binary file, not YAML or JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(
            name, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})", line, column
        ) from None
    if not text.strip():
        raise _fail(name, "file is empty")
    return text


def _parse_json(text: str, name: str) -> SourceDocument:
    duplicates: list[str] = []

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        before = text[: exc.pos].rstrip()
        trailing = before.endswith(",") and text[exc.pos : exc.pos + 1] in "}]"
        problem = "trailing comma" if trailing else exc.msg
        raise _fail(name, f"invalid JSON: {problem}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _fail(name, f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    document = SourceDocument(name, data, text)
    try:
        # JSON is YAML's flow style: compose it to learn where each value (and duplicate) is.
        _Builder(document).build(yaml.compose(text, Loader=_SAFE_LOADER))
    except SourceError:
        if duplicates:
            raise
    except (yaml.YAMLError, RecursionError):
        pass  # positions are a nicety for JSON: those found so far are kept
    if duplicates:
        raise _fail(name, f"duplicate key {duplicates[0]!r}")
    document.data = data
    return document


def _parse_yaml(text: str, name: str) -> SourceDocument:
    try:
        loader = _SAFE_LOADER(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise _fail(name, f"invalid YAML: {problem}", line, column) from None
    except yaml.YAMLError as exc:
        raise _fail(name, f"invalid YAML: {exc}") from None
    if root is None:
        raise _fail(name, "file is empty")
    document = SourceDocument(name, None, text)
    document.data = _Builder(document).build(root)
    return document


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions as it goes."""

    def __init__(self, document: SourceDocument) -> None:
        self.document = document
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def build(self, root: yaml.Node) -> Any:
        return self._value(root, ())

    def _value(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        name = self.document.file
        if self.count > MAX_VALUES:
            raise _fail(name, f"document expands to more than {MAX_VALUES:,} values (alias bomb?)")
        if len(loc) > MAX_DEPTH:
            raise _fail(name, f"document is nested deeper than {MAX_DEPTH} levels", *_pos(node))
        self.document.values.setdefault(loc, _pos(node))
        self.document.spans.setdefault(loc, (node.start_mark.index, node.end_mark.index))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            raise _fail(name, f"YAML tag {_short_tag(node.tag)!r} is not allowed", *_pos(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                raise _fail(
                    self.document.file, "mapping keys must be plain scalars", *_pos(key_node)
                )
            if key in result:
                first = self.document.keys.get((*loc, key), (None, None))[0]
                raise _fail(
                    self.document.file,
                    f"duplicate key {key!r} (first defined on line {first})",
                    *_pos(key_node),
                )
            self.document.keys[(*loc, key)] = _pos(key_node)
            result[key] = self._value(value_node, (*loc, key))
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag in _EXOTIC_TAGS:
            raise _fail(
                self.document.file, f"YAML tag {_short_tag(node.tag)!r} is not allowed", *_pos(node)
            )
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problem = exc.problem or "value cannot be read"
            if node.tag not in _SCALAR_TAGS:
                problem = f"YAML tag {_short_tag(node.tag)!r} is not allowed"
            raise _fail(self.document.file, problem, *_pos(node)) from None


_YAML_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = {f"{_YAML_TAG}map", f"{_YAML_TAG}seq"}
_EXOTIC_TAGS = {f"{_YAML_TAG}{name}" for name in ("binary", "set", "omap", "pairs")}
_SCALAR_TAGS = {f"{_YAML_TAG}{name}" for name in ("str", "int", "float", "bool", "null")}


def _short_tag(tag: str) -> str:
    return tag.replace(_YAML_TAG, "!!")


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
