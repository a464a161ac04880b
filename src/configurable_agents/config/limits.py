"""Documented limits of the workflow language, so that no file can exhaust the validator."""

from __future__ import annotations

__all__ = ["MAX_NESTING", "MAX_PLACEHOLDERS"]

MAX_NESTING = 32
"""How deep a route condition may nest (each `not`, sign, `and`/`or`, comparison and list
literal is a level; a dotted path is one), how many parts a dotted path may have (in conditions
and template placeholders alike), and how deep a type may nest (`list[list[...]]`)."""

MAX_PLACEHOLDERS = 1_000
"""Most placeholders one template may have."""
