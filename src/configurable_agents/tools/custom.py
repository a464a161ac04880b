"""Custom tools: a Python function named `module:function`, from an allowed module only.

The function becomes a LangChain tool named after it: its parameters and annotations give the
arguments the model fills in, its (Google-style) docstring the description and the argument
descriptions. The tool's `config` mapping, if any, is bound to the function as keyword arguments
with :func:`functools.partial`; those parameters are hidden from the model, which cannot
override them. For example, with ``{name: "my_tools:lookup", config: {table: prices}}``::

    def lookup(key: str, table: str = "default") -> str:
        '''Look a key up in a table.

        Args:
            key: The key to look up.
        '''

the model sees ``lookup(key)`` and every call runs ``lookup(key, table="prices")``. An object that
already is a LangChain tool (``@tool``) is used as it is, and must have no `config`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["is_allowed_module", "make_custom_tool"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_allowed_module(module: str, allowed_modules: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``allowed_modules`` or a submodule of one."""
    return any(module == m or module.startswith(m + ".") for m in allowed_modules)


def make_custom_tool(
    spec: str, config: Mapping[str, Any], allowed_modules: Sequence[str]
) -> BaseTool:
    """Import ``module:function`` and wrap it as a LangChain tool.

    Args:
        spec: The tool as written in the workflow, ``module:function``.
        config: Keyword arguments bound to the function (see the module docstring).
        allowed_modules: `config.tools.allowed_modules`; checked here again, before importing.

    Raises:
        ToolError: The spec is malformed, the module is not allowed or cannot be imported, the
            attribute is missing or not callable, or `config` names a parameter it lacks.
    """
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.tools.base import create_schema_from_function

    module_name, _, attribute = spec.partition(":")
    if not (_IDENTIFIER.match(attribute) and all(map(_IDENTIFIER.match, module_name.split(".")))):
        raise ToolError(f"custom tool {spec!r} must be written module:function")
    if not is_allowed_module(module_name, allowed_modules):
        raise ToolError(
            f"custom tool module {module_name!r} is not allowed; add it to "
            "config.tools.allowed_modules"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolError(
            f"custom tool {spec!r}: cannot import module {module_name!r} ({exc}); install it or "
            "put its directory on PYTHONPATH"
        ) from None
    except Exception as exc:
        raise ToolError(
            f"custom tool {spec!r}: importing module {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, attribute, None)
    if function is None:
        raise ToolError(
            f"custom tool {spec!r}: module {module_name!r} has no attribute {attribute!r}; "
            "define it there or correct the name"
        )
    if isinstance(function, BaseTool):
        if config:
            raise ToolError(f"custom tool {spec!r} is already a LangChain tool; it takes no config")
        return function
    if not callable(function):
        raise ToolError(f"custom tool {spec!r}: {module_name}.{attribute} is not callable")
    _check_config(spec, function, config)
    schema = create_schema_from_function(
        attribute, function, filter_args=list(config), parse_docstring=True
    )
    description = (schema.__doc__ or "").strip() or inspect.getdoc(function) or f"Calls {spec}."
    bound = functools.partial(function, **config)
    is_async = inspect.iscoroutinefunction(function)
    return StructuredTool.from_function(
        func=None if is_async else bound,
        coroutine=bound if is_async else None,
        name=attribute,
        description=description,
        args_schema=schema,
    )


def _check_config(spec: str, function: Any, config: Mapping[str, Any]) -> None:
    """Refuse `config` keys the function has no keyword parameter for."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [
        name
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in config:
        if key not in accepted:
            raise ToolError(
                f"custom tool {spec!r}: config key {key!r} is not a parameter of the function "
                f"(parameters: {', '.join(accepted) or 'none'})"
            )
