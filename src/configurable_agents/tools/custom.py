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
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..config.tool_modules import custom_tool_issue, is_allowed_module, refused_reason
from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["allowed_function", "is_allowed_module", "make_custom_tool"]


def make_custom_tool(
    spec: str, config: Mapping[str, Any], allowed_modules: Sequence[str]
) -> BaseTool:
    """Import ``module:function`` and wrap it as a LangChain tool.

    Only a public function defined in the module itself can be a tool: not a name it imported
    (``from os import system``), a class, a private or dunder name, or any other object. The
    modules in ``config.tool_modules.REFUSED_MODULES`` are refused even when allow-listed.

    Args:
        spec: The tool as written in the workflow, ``module:function``.
        config: Keyword arguments bound to the function (see the module docstring).
        allowed_modules: `config.tools.allowed_modules`; checked here again, before importing.

    Raises:
        ToolError: The spec is malformed, the module is refused, not allowed or cannot be
            imported, the attribute is missing or not a public function of the module, or
            `config` names a parameter it lacks.
    """
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.tools.base import create_schema_from_function

    attribute = spec.partition(":")[2]
    function = allowed_function(spec, allowed_modules)
    if isinstance(function, BaseTool):
        if config:
            raise ToolError(f"custom tool {spec!r} is already a LangChain tool; it takes no config")
        return function
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


def allowed_function(spec: str, allowed_modules: Sequence[str], what: str = "custom tool") -> Any:
    """The public function ``module:function`` of an allow-listed module (a custom tool, or a
    function scorer when ``what`` says so), imported after the allow-list is checked again.

    Raises:
        ToolError: The spec is malformed, the module is refused, not allowed or cannot be
            imported, or the attribute is not a public function defined in the module.
    """
    module_name, _, attribute = spec.partition(":")
    issue = custom_tool_issue(spec, allowed_modules)
    reason = refused_reason(module_name)
    try:
        if issue is None and reason:  # allow-listed, which validate reports; refused all the same
            raise ToolError(f"custom tool module {module_name!r} cannot be allow-listed: {reason}")
        if issue is not None:
            raise ToolError(issue.message)
        return _exposed(spec, _import(spec, module_name), attribute)
    except ToolError as exc:
        raise ToolError(str(exc).replace("custom tool", what)) from None


def _import(spec: str, module_name: str) -> ModuleType:
    """Import the tool's module, turning every failure into a :class:`ToolError`."""
    try:
        return importlib.import_module(module_name)
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


def _exposed(spec: str, module: ModuleType, attribute: str) -> Any:
    """The module's own public function (or LangChain tool made from one) named ``attribute``.

    Read from the module's namespace, so a module-level ``__getattr__`` cannot supply it.
    """
    from langchain_core.tools import BaseTool

    name = module.__name__
    if attribute not in vars(module):
        raise ToolError(
            f"custom tool {spec!r}: module {name!r} has no attribute {attribute!r}; "
            "define it there or correct the name"
        )
    value = vars(module)[attribute]
    target = value
    if isinstance(value, BaseTool):
        target = getattr(value, "func", None) or getattr(value, "coroutine", None) or type(value)
    if getattr(target, "__module__", None) == name and (
        inspect.isfunction(target) or isinstance(value, BaseTool)
    ):
        return value
    raise ToolError(
        f"custom tool {spec!r}: {name}.{attribute} is {_describe(value)}; only public functions "
        f"defined in {name} can be tools"
    )


def _describe(value: Any) -> str:
    """What a refused attribute is, in a few words."""
    if inspect.ismodule(value):
        return f"the module {value.__name__} (imported)"
    if inspect.isclass(value):
        return "a class"
    if not callable(value):
        return f"not callable (a {type(value).__name__})"
    origin = getattr(value, "__module__", None)
    if inspect.isroutine(value) and origin:
        return f"a function imported from {origin}"
    return f"a {type(value).__name__} object, not a function"


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
