"""`read_file` and `write_file`: file access confined to one root directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config.tool_settings import ReadFileConfig, WriteFileConfig
from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["make_read_file", "make_write_file", "resolve_inside"]


def resolve_inside(root: Path, path: str, tool: str) -> Path:
    """The real path of ``path`` (relative to ``root``, or absolute), if it lies inside ``root``.

    Symbolic links are resolved first, so a link inside ``root`` pointing outside it is refused.

    Args:
        root: The resolved root directory.
        path: The path the model gave.
        tool: Tool name, for messages.

    Raises:
        ToolError: The path is empty or leads outside ``root``.
    """
    if not path.strip():
        raise ToolError(f"{tool}: the path is empty")
    if "\0" in path:
        raise ToolError(f"{tool}: the path contains a NUL character")
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ToolError(f"{tool}: {path!r} is outside the allowed directory {str(root)!r}")
    return target


def make_read_file(config: ReadFileConfig) -> BaseTool:
    """Build the `read_file` tool."""
    from langchain_core.tools import StructuredTool

    root = Path(config.root).resolve()

    def read_file(path: str) -> str:
        """Read a UTF-8 text file.

        Args:
            path: File path, relative to the allowed directory.
        """
        target = resolve_inside(root, path, "read_file")
        if not target.is_file():
            raise ToolError(f"read_file: {path!r} is not a file")
        try:
            with target.open("rb") as handle:
                data = handle.read(config.max_bytes + 1)
        except OSError as exc:
            raise ToolError(f"read_file: cannot read {path!r}: {exc.strerror or exc}") from None
        text = data[: config.max_bytes].decode("utf-8", errors="replace")
        if len(data) > config.max_bytes:
            text += f"\n[truncated: the file is longer than {config.max_bytes} bytes]"
        return text

    return StructuredTool.from_function(
        read_file,
        description=f"Read a text file from the directory {str(root)!r}. Paths are relative "
        "to it; files outside it cannot be read.",
        parse_docstring=True,
    )


def make_write_file(config: WriteFileConfig) -> BaseTool:
    """Build the `write_file` tool."""
    from langchain_core.tools import StructuredTool

    root = Path(config.root).resolve()

    def write_file(path: str, content: str) -> str:
        """Write text to a file, creating parent directories as needed.

        Args:
            path: File path, relative to the allowed directory.
            content: The complete text to write (UTF-8).
        """
        data = content.encode("utf-8")
        if len(data) > config.max_bytes:
            raise ToolError(
                f"write_file: content is {len(data)} bytes; the limit is {config.max_bytes}"
            )
        target = resolve_inside(root, path, "write_file")
        if target.is_dir():
            raise ToolError(f"write_file: {path!r} is a directory")
        if target.exists() and not config.overwrite:
            raise ToolError(f"write_file: {path!r} exists and overwrite is off")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Check again: a directory created meanwhile could be a link leading outside root.
            target = resolve_inside(root, path, "write_file")
            target.write_bytes(data)
        except OSError as exc:
            raise ToolError(f"write_file: cannot write {path!r}: {exc.strerror or exc}") from None
        return f"wrote {len(data)} bytes to {target.relative_to(root).as_posix()}"

    return StructuredTool.from_function(
        write_file,
        description=f"Write a text file inside the directory {str(root)!r}. Paths are relative "
        "to it; files outside it cannot be written"
        + ("." if config.overwrite else "; existing files are not replaced."),
        parse_docstring=True,
    )
