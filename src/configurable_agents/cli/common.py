"""What the commands share: the FILE argument, bad-input exits, writing output, trace notes.

Imports Click and the standard library only; each helper imports what it needs when called.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from ..config.loader import Workflow
    from ..engine import PreparedWorkflow
    from ..observability.recorder import Recorder

__all__ = [
    "EXIT_CODES",
    "FILE",
    "fail_input",
    "flush_recording",
    "no_exit_wait",
    "parse_tags",
    "recorder_of",
    "runnable",
    "say_where",
    "write",
]

FILE = click.Path(path_type=Path, dir_okay=True)
"""A workflow file argument. Existence is checked when it is read, with a located error."""

EXIT_CODES = {
    "success": 0,
    "failed": 1,
    "budget_exceeded": 3,
    "timeout": 4,
    "waiting": 6,
    "cancelled": 130,
}
"""Exit code of `run` for each run status."""


def fail_input(message: str) -> NoReturn:
    """Report bad input (exit code 2).

    Args:
        message: What is wrong, naming the option or file; printed after ``error:`` on stderr.
    """
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def runnable(file: Path, llm: str | None) -> Workflow:
    """The valid workflow of ``file``, ``--llm`` checked; else the problems and exit 2.

    Args:
        file: The workflow file.
        llm: The ``--llm`` option, if given.

    Returns:
        The validated workflow.
    """
    from ..config import validate_workflow
    from ..llm import parse_llm_override

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        sys.exit(2)
    if llm is not None:
        try:
            parse_llm_override(llm)
        except ValueError as exc:
            fail_input(f"--llm: {exc}")
    return workflow


def parse_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    """The ``--tag KEY=VALUE`` options as a mapping; exit 2 on a malformed one.

    Args:
        pairs: The options' values.

    Returns:
        Each key (stripped) and its value; a later key wins.
    """
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail_input(f"--tag {pair!r}: expected key=value")
        tags[key.strip()] = value
    return tags


def write(text: str, output: Path | None) -> None:
    """Print ``text``, or write it to ``output`` whole (through a temporary file); exit 1 if
    it cannot be written.

    Args:
        text: The text, with its final newline.
        output: The file to write, or None for stdout.
    """
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        click.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        sys.exit(1)


def recorder_of(prepared: PreparedWorkflow) -> Recorder | None:
    """The MLflow recorder attached to ``prepared``, if it is traced.

    Args:
        prepared: The workflow the command runs.

    Returns:
        Its recorder, or None.
    """
    from ..observability.recorder import Recorder

    return prepared.observer(Recorder)


def flush_recording(recorder: Recorder, what: str, default_timeout: float = 10) -> bool:
    """Give the recorder's writer its exit wait, then say whether ``what`` reached the store.

    Args:
        recorder: The recorder that spooled ``what``.
        what: What was recorded, as the message names it (``Trace <id>``).
        default_timeout: Seconds to wait unless $CONFIGURABLE_AGENTS_FLUSH_TIMEOUT says.

    Returns:
        Whether it was written.
    """
    from ..observability.recorder import FLUSH_TIMEOUT_ENV

    where = recorder.destination
    if recorder.flush(float(os.environ.get(FLUSH_TIMEOUT_ENV, default_timeout))):
        click.echo(f"{what} written to {where}", err=True)
        return True
    click.echo(
        f"{what} spooled for {where}; `configurable-agents observability flush` writes it",
        err=True,
    )
    return False


def no_exit_wait() -> None:
    """Let the process exit without waiting for its traces to be written (by default a process
    that recorded runs waits up to ``$CONFIGURABLE_AGENTS_FLUSH_TIMEOUT`` seconds at exit)."""
    import atexit

    from ..observability.recorder import flush_all

    atexit.unregister(flush_all)


def say_where(recorder: Recorder, what: str) -> None:
    """Say where ``what`` is now, without waiting for the background writer.

    Args:
        recorder: The recorder that spooled ``what``.
        what: What was recorded, as the message names it (``Trace <id>``).
    """
    where = recorder.destination
    if not recorder.spool.pending(where):
        click.echo(f"{what} written to {where}", err=True)
    else:
        click.echo(
            f"{what} spooled in {recorder.spool.path}; the background writer is writing it to "
            f"{where} (`configurable-agents observability flush` waits for it)",
            err=True,
        )
