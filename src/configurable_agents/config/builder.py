"""Turning composed YAML nodes into plain data, recording where every value and key is written.

Only plain data comes out: strings, 64-bit integers, floats, booleans, null, lists and mappings
with scalar keys. Dates stay text. YAML 1.1 merge keys (``<<``) merge as YAML defines them: the
mapping's own keys override merged ones, and of several merged mappings the earlier wins; a key
written twice in one mapping is still a duplicate. Alias expansion and nesting are capped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_VALUES",
    "BuildError",
    "Builder",
    "parse_json_int",
    "plain_data_problem",
]

MAX_VALUES = 100_000
"""Most values a document may expand to, aliases and merges included."""

MAX_DEPTH = 64
"""Deepest nesting a document may have."""

MAX_INT_BITS = 64
"""Integers must fit in a signed 64-bit integer."""

Loc = tuple[Any, ...]
Position = tuple[int, int]
Pair = tuple[yaml.Node, yaml.Node]

_YAML_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = {f"{_YAML_TAG}map", f"{_YAML_TAG}seq"}
_EXOTIC_TAGS = {f"{_YAML_TAG}{name}" for name in ("binary", "set", "omap", "pairs")}
_SCALAR_TAGS = {f"{_YAML_TAG}{name}" for name in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {f"{_YAML_TAG}{name}" for name in ("timestamp", "merge", "value")}
_MERGE_TAG = f"{_YAML_TAG}merge"
_INT_LIMIT = 2 ** (MAX_INT_BITS - 1)
_PLAIN_SCALARS = (str, int, float, bool, type(None))


class BuildError(Exception):
    """The document is not plain data; ``position`` is where, when known."""

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _short_tag(tag: str) -> str:
    return tag.replace(_YAML_TAG, "!!")


def _int_problem(value: int) -> str | None:
    if -_INT_LIMIT <= value < _INT_LIMIT:
        return None
    return f"integer is outside the {MAX_INT_BITS}-bit range"


class Builder:
    """Builds plain data from a composed YAML node, filling the given position tables.

    Args:
        values: Config path -> position of the value there (first one written wins).
        keys: Config path -> position of the mapping key that introduces it.
        spans: Config path -> start and end character offsets of the value.
    """

    def __init__(
        self,
        values: dict[Loc, Position],
        keys: dict[Loc, Position],
        spans: dict[Loc, tuple[int, int]],
    ) -> None:
        self.values = values
        self.keys = keys
        self.spans = spans
        self.count = 0
        self.constructor = yaml.SafeLoader("")
        self._pairs_of: dict[int, dict[Any, Pair]] = {}

    def build(self, root: yaml.Node) -> Any:
        """The plain data of ``root``.

        Raises:
            BuildError: a tag, key, scalar or merge that is not allowed, too many values, or
                nesting deeper than :data:`MAX_DEPTH`; with the position of the offending node.
        """
        _check_expansion(root)
        return self._value(root, ())

    def _tick(self, node: yaml.Node, amount: int = 1) -> None:
        self.count += amount
        if self.count > MAX_VALUES:
            raise BuildError(
                f"document expands to more than {MAX_VALUES:,} values (alias bomb?)", _pos(node)
            )

    def _value(self, node: yaml.Node, loc: Loc) -> Any:
        self._tick(node)
        if len(loc) > MAX_DEPTH:
            raise BuildError(f"document is nested deeper than {MAX_DEPTH} levels", _pos(node))
        self.values.setdefault(loc, _pos(node))
        self.spans.setdefault(loc, (node.start_mark.index, node.end_mark.index))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            raise BuildError(f"YAML tag {_short_tag(node.tag)!r} is not allowed", _pos(node))
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key, (key_node, value_node) in self._pairs(node, ()).items():
                self.keys.setdefault((*loc, key), _pos(key_node))
                result[key] = self._value(value_node, (*loc, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _pairs(self, node: yaml.MappingNode, merging: tuple[int, ...]) -> dict[Any, Pair]:
        """The mapping's entries, merges applied: key -> (key node, value node)."""
        cached = self._pairs_of.get(id(node))
        if cached is not None:
            self._tick(node, len(cached))
            return cached
        own: dict[Any, Pair] = {}
        merge: Pair | None = None
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG and isinstance(key_node, yaml.ScalarNode):
                if merge is not None:
                    raise BuildError(
                        f"duplicate key '<<' (first defined on line {_pos(merge[0])[0]})",
                        _pos(key_node),
                    )
                merge = (key_node, value_node)
                continue
            key = self._key(key_node)
            if key in own:
                first = _pos(own[key][0])[0]
                raise BuildError(
                    f"duplicate key {key!r} (first defined on line {first})", _pos(key_node)
                )
            own[key] = (key_node, value_node)
        if merge is not None:
            self._merge(own, merge, (*merging, id(node)))
        self._tick(node, len(own))
        self._pairs_of[id(node)] = own
        return own

    def _merge(self, own: dict[Any, Pair], merge: Pair, merging: tuple[int, ...]) -> None:
        """Add the entries of the mappings ``<<`` names that ``own`` does not already have."""
        if len(merging) > MAX_DEPTH:
            problem = f"merge keys are nested deeper than {MAX_DEPTH} levels"
            raise BuildError(problem, _pos(merge[0]))
        for source in self._merge_sources(merge[1]):
            if id(source) in merging:
                raise BuildError("merge key '<<' merges the mapping it is in", _pos(merge[1]))
            for key, pair in self._pairs(source, merging).items():
                own.setdefault(key, pair)

    def _merge_sources(self, node: yaml.Node) -> Iterator[yaml.MappingNode]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if isinstance(node, yaml.SequenceNode) and node.tag not in _COLLECTION_TAGS:
            raise BuildError(f"YAML tag {_short_tag(node.tag)!r} is not allowed", _pos(node))
        for item in items:
            if not isinstance(item, yaml.MappingNode):
                raise BuildError(
                    "merge key '<<' needs a mapping or a list of mappings to merge", _pos(item)
                )
            if item.tag not in _COLLECTION_TAGS:
                raise BuildError(f"YAML tag {_short_tag(item.tag)!r} is not allowed", _pos(item))
            yield item

    def _key(self, node: yaml.Node) -> Any:
        key = self._scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if key is None or not isinstance(key, str | int | float | bool):
            raise BuildError("mapping keys must be plain scalars", _pos(node))
        return key

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag in _EXOTIC_TAGS:
            raise BuildError(f"YAML tag {_short_tag(node.tag)!r} is not allowed", _pos(node))
        if node.tag in _TEXT_TAGS:
            return str(node.value)  # dates stay as written; a stray `<<` or `=` is text
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problem = exc.problem or "value cannot be read"
            if node.tag not in _SCALAR_TAGS:
                problem = f"YAML tag {_short_tag(node.tag)!r} is not allowed"
            raise BuildError(problem, _pos(node)) from None
        except (ValueError, OverflowError):  # e.g. more digits than Python converts
            raise BuildError("number is too large to read", _pos(node)) from None
        if isinstance(value, int) and not isinstance(value, bool):
            too_large = _int_problem(value)
            if too_large:
                raise BuildError(too_large, _pos(node))
        if not isinstance(value, _PLAIN_SCALARS):
            raise BuildError(f"YAML tag {_short_tag(node.tag)!r} is not allowed", _pos(node))
        return value


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [member for pair in node.value for member in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root: yaml.Node) -> None:
    """Fail fast on an alias bomb: how many values the document expands to is counted on the
    composed graph (each shared node once) instead of by expanding it, which takes seconds.

    Only documents far over the limit are stopped here (merges may override part of what they
    count); the builder's own count decides the rest.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # on the current path: an alias back to one is a cycle, left to
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]  # the builder's depth limit
    while stack:
        node, done = stack.pop()
        if id(node) in sizes or (not done and id(node) in open_):
            continue
        children = _children(node)
        if done:
            open_.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes.get(id(child), 0) for child in children)
            continue
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes and id(c) not in open_)
    if sizes[id(root)] <= 4 * MAX_VALUES:
        return
    node, before = root, 0
    while True:  # find where the count passes the limit, in document order
        for child in _children(node):
            if before + sizes[id(child)] > MAX_VALUES:
                node = child
                break
            before += sizes[id(child)]
        else:
            break
        before += 1
    raise BuildError(
        f"document expands to more than {MAX_VALUES:,} values (alias bomb?)", _pos(node)
    )


def plain_data_problem(data: Any) -> tuple[Loc, str] | None:
    """Where and why ``data`` (parsed JSON, or a mapping given to the Python API) is not plain
    data within the limits YAML files get, or ``None`` when it is.

    Checked without recursion, so any depth (or a cycle) is reported, not a crash.
    """
    stack: list[tuple[Any, Loc]] = [(data, ())]
    count = 0
    while stack:
        value, loc = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return loc, f"document expands to more than {MAX_VALUES:,} values"
        if len(loc) > MAX_DEPTH:
            return loc[: MAX_DEPTH + 1], f"document is nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, member in value.items():
                if not isinstance(key, str | int | float | bool):
                    return loc, "mapping keys must be plain scalars"
                stack.append((member, (*loc, key)))
        elif isinstance(value, list | tuple):
            stack.extend((member, (*loc, i)) for i, member in enumerate(value))
        elif isinstance(value, _TooLarge):
            return loc, "number is too large to read"
        elif not isinstance(value, _PLAIN_SCALARS):
            return loc, f"a {type(value).__name__} is not plain data (text, number, list, mapping)"
        elif isinstance(value, int) and not isinstance(value, bool) and _int_problem(value):
            return loc, str(_int_problem(value))
    return None


class _TooLarge:
    """An integer literal with more digits than can be read (JSON's ``parse_int`` stand-in)."""


def parse_json_int(text: str) -> int | _TooLarge:
    """``int(text)``, or a marker that :func:`plain_data_problem` reports, for huge literals."""
    if len(text.lstrip("-")) > 30:
        return _TooLarge()
    return int(text)
