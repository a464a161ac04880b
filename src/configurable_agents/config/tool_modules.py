"""Which modules custom tools may come from: `config.tools.allowed_modules`, minus the refused ones.

Allow-listing a module lets the model call its public functions with arguments of its choosing.
Some standard modules would hand it the whole machine, so they cannot be allow-listed at all, nor
any of their submodules; :data:`REFUSED_MODULES` says why for each. ``validate`` reports them, and
``tools.custom.make_custom_tool`` refuses them again. The wanted operation belongs in a module of
the workflow's own, wrapped in a function that does only that.

Light on purpose (the config package only), so that ``validate`` can use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..config.issues import Issue

__all__ = [
    "REFUSED_MODULES",
    "allowed_modules_issues",
    "custom_tool_issue",
    "is_allowed_module",
    "refused_reason",
]

_OS = "runs shell commands, reads, writes and deletes any file and reads the environment's keys"
_PROCESSES = "starts any program"

REFUSED_MODULES: dict[str, str] = {
    "builtins": "holds eval, exec, open and __import__: any code at all",
    "os": _OS,
    "posix": _OS,
    "nt": _OS,
    "subprocess": _PROCESSES,
    "_posixsubprocess": _PROCESSES,
    "pty": _PROCESSES,
    "multiprocessing": _PROCESSES,
    "sys": "exits the process and reaches every loaded module",
    "shutil": "copies, moves and deletes whole directory trees",
    "importlib": "imports any module, which undoes the allow-list",
    "runpy": "runs any module or script",
    "code": "runs Python source",
    "pickle": "runs arbitrary code while loading data",
    "_pickle": "runs arbitrary code while loading data",
    "marshal": "loads raw code objects",
    "ctypes": "calls C functions and reads and writes the process's memory",
    "_ctypes": "calls C functions and reads and writes the process's memory",
    "socket": "opens network connections, around http_get's address checks",
    "_socket": "opens network connections, around http_get's address checks",
}
"""Top-level modules that cannot be allow-listed (nor their submodules), with the reason."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALLOWED = "config.tools.allowed_modules"


def refused_reason(module: str) -> str | None:
    """Why ``module`` cannot be allow-listed, e.g. ``"os runs shell commands, ..."``, or None."""
    top = module.split(".", 1)[0]
    reason = REFUSED_MODULES.get(top)
    return (
        None if reason is None else f"{top} {reason}; wrap what is needed in a module of your own"
    )


def is_allowed_module(module: str, allowed_modules: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``allowed_modules`` or a submodule of one."""
    return any(module == m or module.startswith(m + ".") for m in allowed_modules)


def allowed_modules_issues(allowed_modules: Sequence[str]) -> list[Issue]:
    """One issue per refused entry of `allowed_modules`, located at ``config.tools``."""
    return [
        Issue(
            ("config", "tools", "allowed_modules", index),
            f"module {module!r} cannot be allow-listed: {reason}",
            code="tool",
        )
        for index, module in enumerate(allowed_modules)
        if (reason := refused_reason(module))
    ]


def custom_tool_issue(spec: str, allowed_modules: Sequence[str]) -> Issue | None:
    """What is wrong with a custom tool ``module:function``, located at the tool itself.

    A tool from a refused module that `allowed_modules` lists gives no issue here: the entry is
    the mistake, reported by :func:`allowed_modules_issues`.
    """
    module, _, function = spec.partition(":")
    if not (_IDENTIFIER.match(function) and all(map(_IDENTIFIER.match, module.split(".")))):
        return Issue((), f"custom tool {spec!r} must be written module:function")
    if function.startswith("_"):
        return Issue((), _private(spec, module, function), code="tool")
    reason = refused_reason(module)
    listed = is_allowed_module(module, allowed_modules)
    if reason and not listed:
        message = f"custom tool module {module!r} cannot be allow-listed: {reason}"
        return Issue((), message, code="tool")
    if not listed:
        message = f"custom tool module {module!r} is not in {_ALLOWED}; add it there"
        return Issue((), message, code="tool")
    return None  # a refused module that is listed: the listing is reported, not each tool


def _private(spec: str, module: str, function: str) -> str:
    return (
        f"custom tool {spec!r}: {function!r} is private; only public functions defined in "
        f"{module} can be tools"
    )
