"""Hypothesis strategies that mutate a workflow file: its data, then its text.

Data mutations: deleted, renamed and retyped keys, swapped ids and reordered lists, anchors (a
mapping shared by two places) and merge keys, deep nesting and huge values. Text mutations, on
the YAML written from the data: control characters, duplicated lines (true duplicate keys), tabs,
huge numbers, cut files. Used by ``test_mutations.py``.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import strategies as st

Loc = tuple[Any, ...]
Draw = Callable[[st.SearchStrategy[Any]], Any]

MERGE_MARK = "__MERGE__"
CONTROL = [chr(c) for c in (*range(0, 9), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x85, 0x9F)] + [
    "\ufeff",
    "\ufffe",
    "\u2028",
]
ID_KEYS = ("id", "from", "to", "target_node", "exit_to", "condition_field", "items_field")
ID_KEYS += ("collect_field", "outputs", "name")
WORDS = ["<<", "START", "END", "state", "item", "item_index", "default", "object", "null", "yes"]
WORDS += ["list[int]", "dict[str, object]", "{x}", "{state.x.y}", "{{", "}", "2024-01-31", "~"]
WORDS += ["calculator", "web_search", "http_get", "read_file", "mock", "tools"]
TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "_.{}[]:'\" -#&*!|>é" + "\t"),
    max_size=24,
)


def keywords(datas: list[Any]) -> list[str]:
    """Every mapping key found in ``datas``, plus words that mean something to the language."""
    found: set[str] = set()
    for data in datas:
        for loc in paths(data):
            if isinstance(loc[-1], str):
                found.add(loc[-1])
    return sorted(found) + WORDS


def paths(data: Any, limit: int = 4000) -> list[Loc]:
    """Config paths of every value under ``data`` (shared or cyclic parts visited once)."""
    result: list[Loc] = []
    seen: set[int] = set()
    stack: list[tuple[Any, Loc]] = [(data, ())]
    while stack and len(result) < limit:
        value, loc = stack.pop()
        if loc:
            result.append(loc)
        if isinstance(value, dict | list) and id(value) not in seen and len(loc) < 70:
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((member, (*loc, key)) for key, member in items)
    result.sort(key=repr)
    return result


def get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def values(keys: list[str]) -> st.SearchStrategy[Any]:
    """Values of every YAML type, small and odd."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        TEXT,
        st.sampled_from(keys),
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.sampled_from(keys) | TEXT, children, max_size=4)
        ),
        max_leaves=10,
    )


def _entry(draw: Draw, data: Any, kinds: tuple[type, ...] = (dict, list)) -> Loc | None:
    """A path whose parent is one of ``kinds`` (a mapping entry or list item)."""
    options = [p for p in paths(data) if isinstance(get(data, p[:-1]), kinds)]
    return draw(st.sampled_from(options)) if options else None


def delete(draw: Draw, data: Any, keys: list[str]) -> None:
    loc = _entry(draw, data)
    if loc is not None:
        del get(data, loc[:-1])[loc[-1]]


def rename(draw: Draw, data: Any, keys: list[str]) -> None:
    loc = _entry(draw, data, (dict,))
    if loc is None:
        return
    parent, old = get(data, loc[:-1]), loc[-1]
    word = str(old)
    cut = draw(st.integers(0, max(len(word) - 1, 0)))
    new = draw(
        st.sampled_from(keys) | TEXT | st.just(word[:cut] + word[cut + 1 :]) | st.just(word * 2)
    )
    items = [(new if k == old else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)


def retype(draw: Draw, data: Any, keys: list[str]) -> None:
    loc = _entry(draw, data)
    if loc is not None:
        get(data, loc[:-1])[loc[-1]] = draw(values(keys))


def swap(draw: Draw, data: Any, keys: list[str]) -> None:
    """Swap two ids (or any two strings), or reorder a list."""
    leaves = [p for p in paths(data) if isinstance(get(data, p), str)]
    ids = [p for p in leaves if any(k in ID_KEYS for k in p if isinstance(k, str))]
    lists = [p for p in paths(data) if isinstance(get(data, p), list) and len(get(data, p)) > 1]
    choice = draw(st.sampled_from(["ids", "strings", "order"]))
    pool = {"ids": ids, "strings": leaves}.get(choice)
    if pool is not None and len(pool) > 1:
        a, b = draw(st.lists(st.sampled_from(pool), min_size=2, max_size=2, unique=True))
        first, second = get(data, a), get(data, b)
        get(data, a[:-1])[a[-1]], get(data, b[:-1])[b[-1]] = second, first
    elif choice == "order" and lists:
        loc = draw(st.sampled_from(lists))
        get(data, loc[:-1])[loc[-1]] = draw(st.permutations(get(data, loc)))


def deepen(draw: Draw, data: Any, keys: list[str]) -> None:
    """Nest a value (or the expression in a string) 1 to 400 levels deep."""
    loc = _entry(draw, data)
    if loc is None:
        return
    depth = draw(st.integers(1, max(1, 250 - len(loc))))
    value = get(data, loc)
    if isinstance(value, str) and draw(st.booleans()):
        value = draw(
            st.sampled_from(
                [
                    "not " * depth + value,
                    "(" * depth + value + ")" * depth,
                    "list[" * depth + value + "]" * depth,
                    "{" + ".".join([value.strip("{}") or "x"] * depth) + "}",
                    value + " and " + " and ".join(["state.x > 1"] * depth),
                ]
            )
        )
    else:
        for _ in range(depth):
            value = [value] if draw(st.booleans()) else {"x": value}
    get(data, loc[:-1])[loc[-1]] = value


def huge(draw: Draw, data: Any, keys: list[str]) -> None:
    """Make a string very long, a list very long, or a number very large."""
    loc = _entry(draw, data)
    if loc is None:
        return
    value = get(data, loc)
    if isinstance(value, str) and value:
        value = value * max(1, draw(st.integers(1, 300_000)) // len(value))
    elif isinstance(value, list) and value:
        value = value * draw(st.integers(2, 120))
    else:
        value = draw(st.sampled_from([2**63, -(2**63) - 1, 10**300, 1e308, 2**62]))
    get(data, loc[:-1])[loc[-1]] = value


def share(draw: Draw, data: Any, keys: list[str]) -> None:
    """Make two places one mapping (an anchor and an alias), or merge one mapping into another
    (``<<``), dropping some of the target's own keys so that they come from the merge."""
    mappings = [p for p in paths(data) if isinstance(get(data, p), dict)]
    if len(mappings) < 2:
        return
    source, target = draw(st.lists(st.sampled_from(mappings), min_size=2, max_size=2, unique=True))
    shared, into = get(data, source), get(data, target)
    if draw(st.booleans()):
        get(data, target[:-1])[target[-1]] = shared
        return
    for key in [k for k in into if k in shared]:
        if draw(st.booleans()):
            del into[key]
    into[MERGE_MARK] = shared


def merge_override(draw: Draw, data: Any, keys: list[str]) -> None:
    """Write part of a mapping as a merged base (``<<: &base {...}``) and merge the same base into
    a sibling that sets every one of those keys itself, as in ``{<<: *base, temperature: 0.5}``:
    both mean what they meant before."""
    mappings = [p for p in paths(data) if isinstance(get(data, p), dict) and get(data, p)]
    if not mappings:
        return
    loc = draw(st.sampled_from(mappings))
    mapping = get(data, loc)
    moved = [k for k in mapping if draw(st.booleans())] or list(mapping)[:1]
    base = {k: mapping.pop(k) for k in moved}
    mapping[MERGE_MARK] = base
    parent = get(data, loc[:-1]) if loc else None
    siblings = parent.values() if isinstance(parent, dict) else parent or []
    for sibling in siblings:
        if isinstance(sibling, dict) and sibling is not mapping and set(base) <= set(sibling):
            sibling[MERGE_MARK] = base
            break


TYPES = ["str", "int", "float", "bool", "list", "dict", "list[str]", "list[int]", "dict[str, int]"]
TYPES += ["list[list[str]]", "dict[int, str]", "dict[str, list[float]]", "object", "list[object]"]
LITERALS = ["null", "true", "false", "0", "-1", "2.5", "'a'", "''", "[]", "[1, 'a']", "['x']"]
OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


def _fields(data: Any) -> dict[str, Any]:
    state = data.get("state") if isinstance(data, dict) else None
    fields = state.get("fields") if isinstance(state, dict) else None
    return fields if isinstance(fields, dict) else {}


def _leaves_under(data: Any, key: str) -> list[Loc]:
    return [p for p in paths(data) if p[-1] == key and isinstance(get(data, p), str)]


def condition(draw: Draw, data: Any, keys: list[str]) -> None:
    """Rewrite a route condition as a comparison of state fields and literals of any type."""
    spots = _leaves_under(data, "condition") + _leaves_under(data, "logic")
    names = [f"state.{n}" for n in _fields(data)]
    if not spots:
        return
    operand = st.sampled_from(names + LITERALS) if names else st.sampled_from(LITERALS)
    parts = [draw(operand), draw(st.sampled_from(OPERATORS)), draw(operand)]
    text = " ".join(parts)
    if draw(st.booleans()):
        text = f"not ({text}) {draw(st.sampled_from(['and', 'or']))} {draw(operand)}"
    loc = draw(st.sampled_from(spots))
    get(data, loc[:-1])[loc[-1]] = text


def unset(draw: Draw, data: Any, keys: list[str]) -> None:
    """Make a state field optional with no default (or change its type)."""
    specs = [s for s in _fields(data).values() if isinstance(s, dict)]
    if not specs:
        return
    spec = draw(st.sampled_from(specs))
    if draw(st.booleans()):
        spec.pop("default", None)
        spec.pop("required", None)
    else:
        spec["type"] = draw(st.sampled_from(TYPES))


def settings_(draw: Draw, data: Any, keys: list[str]) -> None:
    """Set an execution limit or loop cap to a small or odd value."""
    config = data.setdefault("config", {}) if isinstance(data, dict) else None
    if not isinstance(config, dict):
        return
    execution = config.setdefault("execution", {})
    if isinstance(execution, dict):
        name = draw(st.sampled_from(["max_retries", "max_concurrency", "recursion_limit"]))
        execution[name] = draw(st.sampled_from([0, 1, 2, 3, 1000]))


DATA_MUTATIONS = [delete, rename, retype, swap, deepen, huge, share, merge_override]
DATA_MUTATIONS += [condition, unset, settings_]


def control(draw: Draw, text: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(CONTROL)) + text[at:]


def duplicate_line(draw: Draw, text: str) -> str:
    lines = text.splitlines(keepends=True)
    at = draw(st.integers(0, len(lines) - 1))
    return "".join(lines[: at + 1] + lines[at:])


def tab(draw: Draw, text: str) -> str:
    lines = text.splitlines(keepends=True)
    at = draw(st.integers(0, len(lines) - 1))
    lines[at] = "\t" + lines[at].lstrip(" ")
    return "".join(lines)


def huge_number(draw: Draw, text: str) -> str:
    digits = "9" * draw(st.sampled_from([20, 400, 5_000]))
    at = draw(st.integers(0, len(text)))
    spot = text.find(": ", at)
    return text if spot < 0 else text[: spot + 2] + digits + " " + text[spot + 2 :]


def cut(draw: Draw, text: str) -> str:
    return text[: draw(st.integers(1, len(text)))]


TEXT_MUTATIONS = [control, duplicate_line, tab, huge_number, cut]


def to_text(data: Any, as_json: bool) -> str:
    """The data written as YAML (anchors for shared mappings, ``<<`` for merges) or JSON."""
    if as_json:
        try:
            return json.dumps(data, indent=1).replace(f'"{MERGE_MARK}"', '"<<"')
        except (ValueError, TypeError, RecursionError):  # a cycle, or a key JSON cannot hold
            pass
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    except RecursionError:  # PyYAML's writer recurses a few frames per level; JSON is YAML too
        text = json.dumps(data, default=str)
    return text.replace(f"{MERGE_MARK}:", "<<:")


@st.composite
def mutated(draw: Draw, sources: dict[str, Any], keys: list[str]) -> tuple[str, str, list[str]]:
    """(file name, mutated text, what was done) for one of ``sources`` (name -> parsed data)."""
    name = draw(st.sampled_from(sorted(sources)))
    data = copy.deepcopy(sources[name])
    done = []
    for mutation in draw(st.lists(st.sampled_from(DATA_MUTATIONS), max_size=3)):
        mutation(draw, data, keys)
        done.append(mutation.__name__)
    as_json = draw(st.integers(0, 9)) == 0
    text = to_text(data, as_json)
    if draw(st.integers(0, 3)) == 0:  # one file in four: most text mutations break the YAML
        mutation = draw(st.sampled_from(TEXT_MUTATIONS))
        text = mutation(draw, text)
        done.append(mutation.__name__)
    suffix = ".json" if as_json and text.lstrip().startswith("{") else ".yaml"
    return name.replace(".yaml", suffix), text, done
