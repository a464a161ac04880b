"""Located problems found in a workflow file, and how they are printed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["Diagnostic", "WorkflowValidationError", "closest", "format_path"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a workflow file.

    Attributes:
        message: What is wrong, in one sentence.
        path: Where in the config it is, as ``nodes[2].outputs[0]`` (empty for the whole file).
        file: The file it was found in.
        line: 1-based line in the file, when known.
        column: 1-based column in the file, when known.
        suggestion: A likely intended value (``did you mean 'prompt'?``), when one exists.
        severity: ``error`` makes the workflow invalid; ``warning`` does not.
        code: A stable identifier of the kind of problem, for tools that filter them.
        via: For a problem in a sub-workflow's file, the references that lead there from the
            file validated, nearest first: ``file:line:column`` of each `workflow:` key.
    """

    message: str
    path: str = ""
    file: str = ""
    line: int | None = None
    column: int | None = None
    suggestion: str | None = None
    severity: Severity = "error"
    code: str = "invalid"
    via: tuple[str, ...] = ()

    def format(self) -> str:
        """Render as ``file:line:col: error: path: message (did you mean 'x'?)``."""
        where = self.file or "<workflow>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {self.severity}: "
        if self.path:
            text += f"{self.path}: "
        text += self.message
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        if self.via:
            text += f" (in the sub-workflow used at {' <- '.join(self.via)})"
        return text

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping of every attribute (``via`` only for a problem in a
        sub-workflow)."""
        data = asdict(self)
        if not self.via:
            del data["via"]
        else:
            data["via"] = list(self.via)
        return data


class WorkflowValidationError(Exception):
    """Raised by :func:`configurable_agents.load_workflow` when a file has errors.

    Attributes:
        diagnostics: Every problem found, errors and warnings, in file order.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        lines = "\n".join(d.format() for d in errors)
        super().__init__(f"{len(errors)} error(s) in workflow:\n{lines}")


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option most like ``word``, or ``None`` when none is close enough to suggest."""
    options = list(options)
    # a similarity of 0.6 needs len(word) <= 7/3 * len(option): skip the comparisons that cannot
    # reach it, which keeps a huge mistyped value from costing seconds
    longest = max((len(option) for option in options), default=0)
    if 3 * len(word) > 7 * longest:
        return None
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def format_path(loc: Sequence[str | int]) -> str:
    """Turn ``("nodes", 2, "outputs", 0)`` into ``nodes[2].outputs[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
