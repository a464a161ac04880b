"""The local cache of registry prompts: a run whose registry is down uses the version it resolved
before, and an alias is looked up again once its entry is older than the TTL."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["CACHE_ENV", "TTL_ENV", "CachedPrompt", "PromptCache", "alias_ttl"]

CACHE_ENV = "CONFIGURABLE_AGENTS_PROMPT_CACHE"
"""Path of the cache file (default: ``prompts.json`` beside the trace spool)."""

TTL_ENV = "CONFIGURABLE_AGENTS_PROMPT_TTL"
"""Seconds an alias resolution is trusted before it is looked up again (default 60)."""

DEFAULT_TTL_S = 60.0


def alias_ttl() -> float:
    """Seconds an alias resolution is reused (``$CONFIGURABLE_AGENTS_PROMPT_TTL``, default 60)."""
    try:
        return max(0.0, float(os.environ.get(TTL_ENV, DEFAULT_TTL_S)))
    except ValueError:
        return DEFAULT_TTL_S


@dataclass
class CachedPrompt:
    """A resolved prompt version.

    Attributes:
        name: Registered name.
        version: Version number.
        template: Its template, in MLflow's syntax.
        fetched: When it was fetched (seconds since the epoch).
    """

    name: str
    version: int
    template: str
    fetched: float


def _default_path() -> Path:
    from ..observability.spool import default_spool_path

    return default_spool_path().parent / "prompts.json"


class PromptCache:
    """Resolved prompts by store and reference, in a JSON file written atomically."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        given = path or os.environ.get(CACHE_ENV)
        self.path = Path(given) if given else _default_path()

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, store: str, uri: str) -> CachedPrompt | None:
        """The cached resolution of ``uri`` in ``store``, however old."""
        entry = self._read().get(f"{store} {uri}")
        if not isinstance(entry, dict):
            return None
        try:
            return CachedPrompt(**entry)  # type: ignore[arg-type]
        except TypeError:
            return None

    def put(self, store: str, uri: str, prompt: CachedPrompt) -> None:
        """Remember a resolution (a cache that cannot be written is only a slower next run)."""
        data = self._read()
        data[f"{store} {uri}"] = asdict(prompt)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            pass

    @staticmethod
    def fresh(prompt: CachedPrompt, *, alias: bool) -> bool:
        """Whether a cached resolution can be used without asking the registry: a version always
        (versions are immutable), an alias within its TTL."""
        return not alias or time.time() - prompt.fetched < alias_ttl()
