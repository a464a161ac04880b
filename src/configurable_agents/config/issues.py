"""What the whole-file checks report, before it is located in the source."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Found", "Issue", "Loc"]

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """A problem at a config path; the loader turns it into a located :class:`Diagnostic`.

    Attributes:
        loc: Config path of the offending value.
        message: What is wrong.
        suggestion: A likely intended value.
        at_key: Point at the mapping key rather than its value (for names that are keys).
        needle: Text to find inside the value (a placeholder in a prompt), to point at its line.
        nth: Which occurrence of ``needle`` in the value is meant (0 for the first).
        code: Kind of problem.
        severity: ``error`` or ``warning``.
    """

    loc: Loc
    message: str
    suggestion: str | None = None
    at_key: bool = False
    needle: str | None = None
    nth: int = 0
    code: str = "invalid"
    severity: str = "error"


@dataclass
class Found:
    """Issues collected by a check pass."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, loc: Loc, message: str, **extra: object) -> None:
        """Record one issue."""
        self.issues.append(Issue(loc, message, **extra))  # type: ignore[arg-type]
