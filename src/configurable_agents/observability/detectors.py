"""Credentials and personal data found in free text, for :func:`.redact.make_scrubber`.

Where a maintained library knows a format, its knowledge is used: the token patterns of Yelp's
``detect-secrets`` plugins (AWS, GitHub, GitLab, Slack) and its JWT check, compiled once here and
applied with ``re.sub`` (its scanning machinery is made for files and costs far more per string);
``python-stdnum`` validates IBANs (country, length, BBAN format, mod-97 checksum), card numbers
(Luhn) and US SSNs. The patterns written here cover what those libraries do not: Google API keys,
fine-grained GitHub tokens, ``Bearer`` values, whole PEM private-key blocks, e-mail addresses (also
``name(at)domain``), phone numbers, and the candidates that the libraries validate (IBANs in any
case and spacing, card numbers with any separator).

Each rule is its own pass, in order, so that a candidate one rule rejects (a card number failing
Luhn) is still seen by the others. A rule whose text cannot match (cheap ``in`` tests on the
lower-cased text) is skipped, and patterns start with the character class they need (a digit, a
literal prefix), which lets ``re`` skip the rest of the text quickly: this runs on every recorded
string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.slack import SlackDetector
from stdnum import iban, luhn
from stdnum.us import ssn

__all__ = ["RULES", "Rule", "mask_pii"]

Replace = Callable[[re.Match[str]], str]

_DIGITS = tuple("0123456789")
_SPACES = r" \u00a0\u1680\u2000-\u200b\u202f\u205f\u3000\u2060\ufeff"  # no line breaks, no tabs
_CARD_SEP = rf"[{_SPACES}\-\u2010-\u2015./]"
_IBAN_SEP = rf"[{_SPACES}-]"


@dataclass(frozen=True)
class Rule:
    """One pass over a text: ``mask`` applied to texts of at least ``shortest`` characters
    (the shortest match) whose lower-cased form holds one of ``needles`` (none: any text)."""

    name: str
    shortest: int
    mask: Callable[[str], str]
    needles: tuple[str, ...] = ()


def _sub(pattern: re.Pattern[str], replace: Replace) -> Callable[[str], str]:
    return lambda text: pattern.sub(replace, text)


def _glued(match: re.Match[str], extra: str = "_") -> bool:
    """Whether the match continues a word (or a run of ``extra`` characters) on its left."""
    start = match.start()
    return start > 0 and (match.string[start - 1].isalnum() or match.string[start - 1] in extra)


def _label(label: str) -> Replace:
    def replace(match: re.Match[str]) -> str:
        return match.group() if _glued(match) else f"[{label}]"

    return replace


def _group_label(label: str, group: int = 1) -> Replace:
    """Mask only ``group`` of the match (keeping e.g. ``Bearer `` or ``key = "``)."""

    def replace(match: re.Match[str]) -> str:
        text, base = match.group(), match.start()
        return f"{text[: match.start(group) - base]}[{label}]{text[match.end(group) - base :]}"

    return replace


def _library(detector: type) -> list[re.Pattern[str]]:
    """A ``detect-secrets`` plugin's patterns, made to end where a token ends (the left edge is
    checked by the rule)."""
    return [
        re.compile(rf"(?:{p.pattern})(?![A-Za-z0-9_])", p.flags)
        for p in detector.denylist  # type: ignore[attr-defined]
    ]


def _jwt(match: re.Match[str]) -> str:
    header_and_payload = ".".join(match.group().split(".")[:2])
    if _glued(match) or not JwtTokenDetector.is_formally_valid(header_and_payload):
        return match.group()
    return "[JWT]"


def _bearer(match: re.Match[str]) -> str:
    """A ``Bearer`` value looks like a token (a digit in 8+ characters, or 24+ characters), so
    that prose ("bearer bonds") is left alone."""
    token = match.group(1)
    if (len(token) >= 8 and any(c.isdigit() for c in token)) or len(token) >= 24:
        return _group_label("TOKEN")(match)
    return match.group()


_CARD = re.compile(  # 13+ digits ahead, in groups of 3+ (so "0.1234 0.5678" is no candidate)
    rf"[0-9](?<![A-Za-z0-9_][0-9])(?=(?:(?:{_CARD_SEP}{{1,3}}(?=[0-9]{{3}}))?[0-9]){{12}})"
    rf"[0-9][0-9]+(?:{_CARD_SEP}{{1,3}}[0-9]{{3,}})*(?![A-Za-z0-9])"
)


def _card(match: re.Match[str]) -> str:
    """Mask the card numbers among the candidate's digit groups: from each group on, the
    longest run of groups that has 13 to 19 digits and passes Luhn (a candidate may hold more
    than a card number, e.g. a year after it, or several)."""
    text = match.group()
    groups = [(g.start(), g.end()) for g in re.finditer(r"[0-9]+", text)]
    pieces, done, first = [], 0, 0
    while first < len(groups):
        last = _card_end(text, groups, first)
        if last is None:
            first += 1
            continue
        pieces += [text[done : groups[first][0]], "[CARD]"]
        done, first = groups[last][1], last + 1
    return "".join([*pieces, text[done:]]) if pieces else text


def _card_end(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last group of the longest card number starting at group ``first``, if any."""
    digits, found = "", None
    for last in range(first, len(groups)):
        digits += text[groups[last][0] : groups[last][1]]
        if len(digits) > 19:
            break
        if len(digits) >= 13 and luhn.is_valid(digits):
            found = last
    return found


_IBAN = re.compile(  # from the check digits: a digit is a cheaper start than any letter
    rf"[0-9](?<=[A-Za-z]{{2}}[0-9])[0-9](?:{_IBAN_SEP}?[A-Za-z0-9]{{4}}){{2,7}}"
    rf"(?:{_IBAN_SEP}?[A-Za-z0-9]{{1,4}})?(?![A-Za-z0-9])"
)


def _iban(found: re.Match[str], done: int) -> tuple[int, int] | None:
    """The candidate (with the country code before its check digits), or its longest prefix of
    whole groups, that is a valid IBAN."""
    text, start = found.string, found.start() - 2
    if start < done or (start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_")):
        return None
    candidate = text[start : found.end()]
    for end in reversed(_mod97_ends(candidate)):
        if iban.is_valid(re.sub(r"[^A-Za-z0-9]", "", candidate[:end])):
            return start, start + end
    return None


def _mod97_ends(candidate: str) -> list[int]:
    """Where a prefix of whole groups of ``candidate`` (15 to 34 characters) passes the IBAN
    checksum, computed in one pass; ``stdnum`` then checks those few ends in full."""
    compact = re.sub(r"[^A-Za-z0-9]", "", candidate[:4]).upper()
    head = int("".join(str(int(c, 36)) for c in compact))  # country and check digits
    shift = 10 ** len(str(head))
    ends, remainder, length = [], 0, 4
    for group in re.finditer(r"[A-Za-z0-9]+", candidate[4:]):
        for char in group.group().upper():
            value = int(char, 36)
            remainder = (remainder * (100 if value > 9 else 10) + value) % 97
        length += len(group.group())
        if 15 <= length <= 34 and (remainder * shift + head) % 97 == 1:
            ends.append(4 + group.end())
    return ends


_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_PHONE = re.compile(
    r"[+(0-9](?<![\w-][+(0-9])(?<![0-9][.][0-9])"  # not glued to a word, an id, a number
    # dates and IPv4 addresses, told apart in the pattern: they are frequent, callbacks are not free
    r"(?!\d{3}[-./]\d\d?[-./]\d\d?(?![\w-])|\d?[-./]\d\d?[-./]\d{2,4}(?![\w-])"
    r"|\d{0,2}(?:\.\d{1,3}){3}(?![\w-]))"
    r"[0-9]{0,3}\)?(?:[ .\-\u00a0]?\(?[0-9]{2,4}\)?){2,4}(?![\w-])"
)


def _phone_or_ssn(match: re.Match[str]) -> str:
    """An SSN-shaped match is an SSN if valid (never a phone number); otherwise a phone number
    has 7 to 15 digits."""
    text = match.group()
    if _SSN_SHAPE.fullmatch(text):
        return "[SSN]" if ssn.is_valid(text) else text
    return "[PHONE]" if 7 <= sum(map(str.isdigit, text)) <= 15 else text


_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)+")
_AT = re.compile(r"\(\s?at\s?\)|\[\s?at\s?\]|\{\s?at\s?\}", re.IGNORECASE)
_DOT = r"(?:\.|\s?(?:\(\s?dot\s?\)|\[\s?dot\s?\]|\{\s?dot\s?\})\s?)"
_AT_DOMAIN = re.compile(rf"[\w-]+(?:{_DOT}[\w-]+)*", re.IGNORECASE)
_AT_DOMAIN_TLD = re.compile(rf"[\w-]+(?:{_DOT}[\w-]+)+", re.IGNORECASE)


Locate = Callable[[re.Match[str], int], tuple[int, int] | None]


def _masker(anchor: re.Pattern[str], locate: Locate, label: str) -> Callable[[str], str]:
    """Mask the spans that ``locate`` finds around each match of ``anchor`` (None: no span;
    it gets where the text is masked up to), for spans that may begin before their anchor."""

    def mask(text: str) -> str:
        pieces, done = [], 0
        for found in anchor.finditer(text):
            span = locate(found, done)
            if span is not None:
                pieces += [text[done : span[0]], f"[{label}]"]
                done = span[1]
        return "".join([*pieces, text[done:]]) if pieces else text

    return mask


Bounds = Callable[[re.Match[str]], tuple[int, int] | None]


def _email(bounds: Bounds) -> Locate:
    """Locate an e-mail address from its ``@`` (or ``(at)``): ``bounds`` tells where the local
    part ends and the address ends; the local part is read leftwards from there. Anchored so, a
    text is scanned once for a rare character rather than once per word."""

    def locate(at: re.Match[str], done: int) -> tuple[int, int] | None:
        found = bounds(at) if at.start() >= done else None
        if found is None:
            return None
        text, start = at.string, found[0]
        floor = max(done, start - 64)
        while start > floor and (text[start - 1].isalnum() or text[start - 1] in "_.+-"):
            start -= 1
        return None if start == found[0] else (start, found[1])

    return locate


def _plain_bounds(at: re.Match[str]) -> tuple[int, int]:
    return at.start(), at.end()


def _spelled_bounds(at: re.Match[str]) -> tuple[int, int] | None:
    """Around ``(at)``: at most a space each side, then a domain, which needs a dot (or
    ``(dot)``) when ``(at)`` is spaced (so that "price (at) cost" stays)."""
    text, start, end = at.string, at.start(), at.end()
    before = start > 0 and text[start - 1].isspace()
    after = end < len(text) and text[end].isspace()
    domain = (_AT_DOMAIN_TLD if before or after else _AT_DOMAIN).match(text, end + after)
    return None if domain is None else (start - before, domain.end())


def _private_keys(block: re.Pattern[str], cut_short: re.Pattern[str]) -> Callable[[str], str]:
    def mask(text: str) -> str:
        return (block if "-----END" in text else cut_short).sub("[PRIVATE_KEY]", text)

    return mask


def _rules() -> list[Rule]:
    aws_id, aws_secret = _library(AWSKeyDetector)
    github = [
        *_library(GitHubTokenDetector),
        re.compile(r"github_pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])"),  # fine-grained
    ]
    begin = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    cut_short = r"(?:(?:\r?\n|\\r?\\n)(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: [^\r\n\\]*))*"
    block = re.compile(  # searched for its end only in texts that have one
        rf"{begin}(?:.{{0,16384}}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|{cut_short})",
        re.DOTALL,
    )
    putty = re.compile(
        r"PuTTY-User-Key-File-\d+:(?:.{0,16384}?Private-MAC: *[0-9a-fA-F]+|.*)", re.DOTALL
    )
    # Needles only where the pattern has no literal start, which re finds fast (it tests a
    # character class at every position: ~5 ns a character, where ``in`` takes ~0.1)
    return [  # private keys first: their base64 would be cut up by the others
        Rule("private-key", 27, _private_keys(block, re.compile(begin + cut_short))),
        Rule("putty-key", 22, _sub(putty, lambda m: "[PRIVATE_KEY]")),
        Rule("jwt", 9, _sub(re.compile(
            # tried only where a run starts: "eyJeyJ..." must not be scanned from every "eyJ"
            r"e(?<![A-Za-z0-9_=-]e)yJ[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]+=*"
            r"(?:\.[A-Za-z0-9_+/-]*=*)?"), _jwt)),
        Rule("bearer", 15, _sub(re.compile(
            r"[Bb](?<![A-Za-z0-9_][Bb])(?i:earer)[ \t]+([A-Za-z0-9._~+/-]+=*)"), _bearer),
            ("bearer",)),
        Rule("aws-key-id", 20, _sub(aws_id, _label("AWS_KEY"))),
        Rule("aws-secret-key", 45, _sub(aws_secret, _group_label("AWS_SECRET_KEY")), ("aws",)),
        *[Rule("github", 33, _sub(p, _label("GITHUB_TOKEN"))) for p in github],
        *[Rule("gitlab", 25, _sub(p, _label("GITLAB_TOKEN")))
          for p in _library(GitLabTokenDetector)],
        Rule("google-api-key", 39, _sub(re.compile(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
                                        _label("GOOGLE_API_KEY"))),
        *[Rule("slack", 8, _sub(p, _label("SLACK_TOKEN")), ("xox", "slack"))
          for p in _library(SlackDetector)],
        Rule("api-key", 19, _sub(
            re.compile(r"(?:sk|pk|rk|ak|gsk)[-_][A-Za-z0-9_-]{16,}(?![A-Za-z0-9_-])"),
            _label("API_KEY")), ("k-", "k_")),
        Rule("email", 5, _masker(_DOMAIN, _email(_plain_bounds), "EMAIL")),
        Rule("email-at", 6, _masker(_AT, _email(_spelled_bounds), "EMAIL"), (")", "]", "}")),
        Rule("iban", 15, _masker(_IBAN, _iban, "IBAN"), _DIGITS),
        Rule("card", 13, _sub(_CARD, _card), _DIGITS),
        Rule("phone-or-ssn", 7, _sub(_PHONE, _phone_or_ssn), _DIGITS),
    ]  # fmt: skip


RULES: list[Rule] = _rules()
"""The passes of :func:`mask_pii`, in order."""


_SHORTEST = min(rule.shortest for rule in RULES)


def mask_pii(text: str) -> str:
    """``text`` with the credentials and personal data of :data:`RULES` masked."""
    if len(text) < _SHORTEST:
        return text
    low = text.lower()
    for rule in RULES:
        if len(text) >= rule.shortest and (
            not rule.needles or any(needle in low for needle in rule.needles)
        ):
            text = rule.mask(text)
    return text
