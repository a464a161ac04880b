"""The one error type every tool raises, importable without LangChain."""

from __future__ import annotations

__all__ = ["ToolError"]


class ToolError(Exception):
    """A tool could not be built, or failed while running.

    The message is one line, written to be shown as-is to the user or handed back to the model
    (with `on_error: continue`), e.g. ``http_get: GET https://x.test/ returned HTTP 404``.
    """
