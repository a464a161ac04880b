"""Masking what must not leave the process: secrets always, personal data on request.

Secrets from the environment are replaced by ``[REDACTED]`` wherever they appear, whatever the
settings: the values of variables whose name has a word ending in KEY, TOKEN, SECRET, PASSWORD,
PASSWD, PASSPHRASE, PASS, PWD, CREDENTIAL(S), AUTH or DSN (any case), and the password of any
URL in the environment, matched whatever their case. A value of at least
:data:`ENV_SECRET_MIN_LENGTH` characters is masked; one shorter than
:data:`ENV_SECRET_SUBSTRING_LENGTH` only where it stands as a whole word.

With ``redact_pii`` also credentials in the formats of :mod:`.detectors` (cloud and forge tokens,
JWTs, ``Bearer`` values, private keys, API-key-shaped strings) and personal data: e-mail
addresses (also ``name(at)domain``), IBANs, card numbers, US SSNs and phone numbers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ENV_SECRET_MIN_LENGTH",
    "ENV_SECRET_SUBSTRING_LENGTH",
    "Scrub",
    "env_secrets",
    "make_scrubber",
]

ENV_SECRET_MIN_LENGTH = 4
"""Shorter secret values are not masked: one to three characters ("1", "eu", "dev") stand for
common words and numbers, so masking them would riddle every trace with ``[REDACTED]`` while
hiding a value that can be guessed anyway (at most a few hundred thousand combinations)."""

ENV_SECRET_SUBSTRING_LENGTH = 8
"""From this length on a secret is masked inside longer words too; shorter ones only as whole
words, so that a 4-digit PIN does not cut numbers that merely contain its digits."""

_SECRET_WORDS = (
    "KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "PASS", "PWD",
    "CREDENTIAL", "CREDENTIALS", "AUTH", "DSN",
)  # fmt: skip
_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})  # the working directory
_NOT_SECRET_VALUES = frozenset(
    {"true", "false", "yes", "no", "on", "off", "none", "null", "nil", "auto", "default",
     "enabled", "disabled", "unset"}
)  # fmt: skip
_REDACTED = "[REDACTED]"
_CACHE_SIZE = 32  # a trace repeats its prompts (node span, call spans): scrub each text once;
# few entries, for a server keeps its scrubber (and these texts) for its lifetime

Scrub = Callable[[Any], Any]


def _secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret: one of its words (split on anything
    but letters and digits, trailing digits dropped) ends with a secret word."""
    upper = name.upper()
    if upper in _NOT_SECRET_NAMES:
        return False
    words = (w.rstrip("0123456789") for w in re.split(r"[^A-Z0-9]+", upper))
    return any(word.endswith(_SECRET_WORDS) for word in words if word)


def _url_password(value: str) -> str | None:
    if "://" not in value or "@" not in value:
        return None
    try:
        return urlsplit(value.strip()).password
    except ValueError:
        return None


def env_secrets(env: Mapping[str, str]) -> list[str]:
    """The values of ``env`` to mask, longest first (see the module's docstring)."""
    found: set[str] = set()
    for name, value in env.items():
        candidates = [value] if _secret_name(name) else []
        password = _url_password(value)
        if password:
            candidates.append(password)
        for candidate in candidates:
            candidate = candidate.strip()
            if (
                len(candidate) >= ENV_SECRET_MIN_LENGTH
                and candidate.lower() not in _NOT_SECRET_VALUES
            ):
                found.add(candidate)
    return sorted(found, key=lambda s: (-len(s), s))


def _secrets_masker(secrets: list[str]) -> Callable[[str], str]:
    """One case-insensitive pass masking every secret; texts that cannot hold any (checked on
    their lower-case form, far cheaper than the pattern) are returned as they are."""
    if not secrets:
        return lambda text: text
    parts = []
    for secret in secrets:
        escaped = re.escape(secret)
        if len(secret) < ENV_SECRET_SUBSTRING_LENGTH:
            escaped = rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"
        parts.append(escaped)
    pattern = re.compile("|".join(parts), re.IGNORECASE)
    lowered = [secret.lower() for secret in secrets]

    def mask(text: str) -> str:
        low = text.lower()
        if not any(secret in low for secret in lowered):
            return text
        return pattern.sub(_REDACTED, text)

    return mask


def _then(first: Callable[[str], str], second: Callable[[str], str]) -> Callable[[str], str]:
    def both(value: str) -> str:
        return second(first(value))

    return both


def make_scrubber(env: Mapping[str, str], *, redact_pii: bool) -> Scrub:
    """A function masking secrets (and PII if asked) in strings nested anywhere in a value:
    mapping keys and values, list and tuple items (tuples become lists)."""
    mask_secrets = _secrets_masker(env_secrets(env))
    text = mask_secrets
    if redact_pii:
        from .detectors import mask_pii

        text = _then(mask_secrets, mask_pii)
    cached = functools.lru_cache(maxsize=_CACHE_SIZE)(text)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return cached(value) if len(value) >= ENV_SECRET_MIN_LENGTH else value
        if isinstance(value, Mapping):
            return {scrub(k): scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return value

    return scrub
