"""Masking what must not leave the process: secrets always, personal data on request.

Values of environment variables that hold secrets (names with KEY, TOKEN, SECRET or PASSWORD) are
replaced wherever they appear, whatever the settings. With ``redact_pii`` also e-mail addresses,
phone numbers, card numbers (Luhn-checked), IBANs, US SSNs and API-key-shaped strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["make_scrubber"]

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("API_KEY", re.compile(r"\b(?:sk|pk|rk|ak|gsk|xox[bp])[-_][A-Za-z0-9_-]{16,}\b")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
]
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_PHONE = re.compile(r"(?<![\w-])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,4}(?![\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()

    return _CARD.sub(replace, text)


def _mask_pii(text: str) -> str:
    text = _mask_cards(text)
    for label, pattern in _PATTERNS:
        text = pattern.sub(f"[{label}]", text)
    return _PHONE.sub(
        lambda m: "[PHONE]" if len(re.sub(r"\D", "", m.group())) >= 7 else m.group(), text
    )


def make_scrubber(env: Mapping[str, str], *, redact_pii: bool) -> Callable[[Any], Any]:
    """A function masking secrets (and PII if asked) in strings nested anywhere in a value."""
    secrets = sorted(
        {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 8}, key=len, reverse=True
    )

    def text(value: str) -> str:
        for secret in secrets:
            value = value.replace(secret, "[REDACTED]")
        return _mask_pii(value) if redact_pii else value

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, Mapping):
            return {scrub(k): scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return value

    return scrub
