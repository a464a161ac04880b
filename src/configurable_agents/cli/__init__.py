"""The ``configurable-agents`` command line. Thin: it parses arguments and calls the package.

Exit codes (each command's help lists its own):

- ``validate``: 0 valid, 1 invalid, 2 usage error.
- ``run``: 0 success, 1 failed, 2 bad input (an invalid workflow included), 3 budget exceeded,
  4 timeout, 6 waiting for a person, 130 interrupted.
- ``resume``: as ``run``; 2 also for a run that cannot be resumed or an answer that does not fit.
- ``batch``: 0 every row succeeded, 1 some failed, 2 bad input, 3 budget reached, 130 interrupted.
- ``eval``: 0 `pass_if` holds (without one: every row ran and succeeded), 1 it does not, 2 bad
  input, 3 budget reached, 130 interrupted.
- ``versions``: 0 listed, 2 bad input (an invalid file, a store that cannot be read).
- ``mcp``: 0 stopped (the client closed stdin, or SIGTERM), 2 bad input (an invalid file, two
  workflows with one name, a non-loopback ``--http`` host without a token), 130 interrupted.
- Any command: 70 internal error (a bug; the message asks for a report).

One module per command group (:mod:`.validate` has ``validate``, ``schema`` and ``graph``); each
defines its commands and this module adds them to :data:`app`. Their shared helpers are in
:mod:`.common`. No module of this package imports this one. Every command imports what it
needs when it runs, so ``--help`` and the light commands stay fast.
"""

from __future__ import annotations

import os
import sys

import click

from .._version import __version__
from . import (
    batch,
    deploy,
    evaluate,
    mcp,
    observability,
    prompts,
    report,
    resume,
    run,
    serve,
    validate,
    versions,
    worker,
)

__all__ = ["app", "main"]


@click.group(
    name="configurable-agents",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "--version", prog_name="configurable-agents", message="%(prog)s %(version)s"
)
def app() -> None:
    """Declare an LLM workflow in one YAML file; validate, run, serve and deploy it."""


for _command in (
    validate.validate,
    validate.schema,
    validate.graph,
    run.run,
    resume.resume,
    batch.batch,
    evaluate.evaluate,
    serve.serve,
    mcp.mcp,
    worker.worker,
    observability.observability,
    report.report,
    prompts.prompts,
    versions.versions,
    deploy.deploy,
):
    app.add_command(_command)
del _command


def main() -> None:
    """Console-script entry point: never shows a traceback for a user's mistake.

    A usage error (an unknown option, a bad value) is one line and exit 2; Ctrl-C exits 130; an
    unexpected exception (a bug) is one line and exit 70, unless $CONFIGURABLE_AGENTS_DEBUG is
    set, when it is raised.
    """
    try:
        code = app.main(prog_name="configurable-agents", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare command group: its help
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # a typo'd option, a bad value: one line, exit 2
        where = exc.ctx.command_path if exc.ctx is not None else "configurable-agents"
        click.echo(f"error: {where}: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug of ours: say so in one line, keep details for debugging
        if os.environ.get("CONFIGURABLE_AGENTS_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set CONFIGURABLE_AGENTS_DEBUG=1 for details, and please report it)",
            err=True,
        )
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
