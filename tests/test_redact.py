"""What the redactor masks, format by format: an example that must go, a near miss that must stay.

Every credential below is a made-up value in the documented shape of its format (the AWS ones are
AWS's own documentation examples, the JWT is jwt.io's); none is live.
"""

from __future__ import annotations

import pytest

from configurable_agents.observability.redact import ENV_SECRET_MIN_LENGTH, Scrub, make_scrubber

NBSP, NNBSP, THIN = "\u00a0", "\u202f", "\u2009"
_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwia"
    "WF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
_PEM_BODY = "MIIEowIBAAKCAQEA7bq9Zx2kLmNoPq\nRsTuVwXyZ0123456789abcdefGHIJ=="


def _pem(kind: str, body: str = _PEM_BODY, end: bool = True) -> str:
    tail = f"\n-----END {kind}-----" if end else ""
    return f"-----BEGIN {kind}-----\n{body}{tail}"


_GITHUB = "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8"
_GITHUB_FINE = "github_pat_11ABCDEFG0a1B2c3D4e5F6g7_" + "H8i9J0k1L2" * 5 + "m3N4o5P6q"
_GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6q"
_SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
_SLACK_HOOK = "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
_KEY_LINE = "MIIEowIBAAKCAQEA7bq9Zx2kLmNoPq"

# (format, text that must be masked, the part of it that must disappear, the label it becomes)
MASKED: list[tuple[str, str, str, str]] = [
    ("aws-access-key-id", "AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "AWS_KEY"),
    ("aws-session-key-id", "ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A", "AWS_KEY"),
    ("aws-secret-access-key", f'aws_secret_access_key = "{_AWS_SECRET}"', _AWS_SECRET,
     "AWS_SECRET_KEY"),
    ("github-classic", _GITHUB, "a1B2c3D4e5", "GITHUB_TOKEN"),
    ("github-oauth", "gho_" + "Z9y8X7w6V5" * 3 + "u4T3s2", "Z9y8X7w6V5", "GITHUB_TOKEN"),
    ("github-fine-grained", _GITHUB_FINE, "H8i9J0k1L2", "GITHUB_TOKEN"),
    ("gitlab-pat", "glpat-xY9kL2mN4pQ7rS1tU3vW", "xY9kL2mN4pQ7rS1tU3vW", "GITLAB_TOKEN"),
    ("gitlab-deploy", "gldt-Ab3De6Gh9Jk2Mn5Pq8St", "Ab3De6Gh9Jk2Mn5Pq8St", "GITLAB_TOKEN"),
    ("google-api-key", _GOOGLE, _GOOGLE[4:], "GOOGLE_API_KEY"),
    ("slack-bot", _SLACK, "AbCdEfGhIjKlMnOpQrStUvWx", "SLACK_TOKEN"),
    ("slack-user", "xoxp-2222222222-3333333333-4444444444-5a5a5a5a5a", "5a5a5a5a5a",
     "SLACK_TOKEN"),
    ("slack-webhook", _SLACK_HOOK, "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2", "SLACK_TOKEN"),
    ("jwt", _JWT, _JWT.split(".")[2], "JWT"),
    ("jwt-payload", _JWT, _JWT.split(".")[1], "JWT"),
    ("bearer", "Authorization: Bearer 3f9a8b7c6d5e4f3a2b1c0d9e", "3f9a8b7c6d5e4f3a2b1c0d9e",
     "TOKEN"),
    ("bearer-lowercase", "authorization: bearer tok_live.Q2x5-77aa", "tok_live.Q2x5-77aa",
     "TOKEN"),
    ("bearer-opaque-long", "Bearer abcdefghijklmnopqrstuvwxyzABCD", "abcdefghijklmnopqrstuvwxyz",
     "TOKEN"),
    ("pem-rsa", _pem("RSA PRIVATE KEY"), _KEY_LINE, "PRIVATE_KEY"),
    ("pem-pkcs8", _pem("PRIVATE KEY"), "RsTuVwXyZ0123456789abcdefGHIJ", "PRIVATE_KEY"),
    ("pem-encrypted", _pem("ENCRYPTED PRIVATE KEY"), _KEY_LINE, "PRIVATE_KEY"),
    ("pem-openssh", _pem("OPENSSH PRIVATE KEY"), _KEY_LINE, "PRIVATE_KEY"),
    ("pem-ec-escaped", _pem("EC PRIVATE KEY").replace("\n", "\\n"), _KEY_LINE, "PRIVATE_KEY"),
    ("pem-truncated", _pem("RSA PRIVATE KEY", end=False), "RsTuVwXyZ0123456789", "PRIVATE_KEY"),
    ("putty", "PuTTY-User-Key-File-2: ssh-rsa\nPrivate-Lines: 1\nAAAAgQDa9\nPrivate-MAC: 0a1b",
     "AAAAgQDa9", "PRIVATE_KEY"),
    ("iban", "DE89 3704 0044 0532 0130 00", "3704 0044 0532", "IBAN"),
    ("iban-compact", "DE89370400440532013000", "DE89370400440532013000", "IBAN"),
    ("iban-lowercase", "de89370400440532013000", "de89370400440532013000", "IBAN"),
    ("iban-lowercase-spaced", "gb82 west 1234 5698 7654 32", "gb82 west", "IBAN"),
    ("iban-nbsp", f"FR14{NBSP}2004{NBSP}1010{NBSP}0505{NBSP}0001{NBSP}3M02{NBSP}606", "FR14",
     "IBAN"),
    ("card-spaces", "4111 1111 1111 1111", "4111 1111 1111 1111", "CARD"),
    ("card-compact", "4111111111111111", "4111111111111111", "CARD"),
    ("card-dashes", "5555-5555-5555-4444", "5555-5555-5555-4444", "CARD"),
    ("card-dots", "4111.1111.1111.1111", "4111.1111.1111.1111", "CARD"),
    ("card-nbsp", f"4111{NBSP}1111{NBSP}1111{NBSP}1111", "1111", "CARD"),
    ("card-narrow-nbsp", f"5555{NNBSP}5555{NNBSP}5555{NNBSP}4444", "4444", "CARD"),
    ("card-thin-space", f"4111{THIN}1111{THIN}1111{THIN}1111", "1111", "CARD"),
    ("card-amex", "3782 822463 10005", "822463", "CARD"),
    ("card-spaced-dashes", "4111 - 1111 - 1111 - 1111", "1111", "CARD"),
    ("card-then-year", "4111 1111 1111 1111 2024", "4111 1111 1111 1111", "CARD"),
    ("email", "ada@example.com", "ada@example.com", "EMAIL"),
    ("email-at-parens", "ada(at)example.com", "ada(at)example.com", "EMAIL"),
    ("email-at-no-tld", "name(at)domain", "name(at)domain", "EMAIL"),
    ("email-at-brackets", "ada [at] example [dot] com", "ada [at] example", "EMAIL"),
    ("email-at-upper", "Ada.Lovelace (AT) example (DOT) org", "Ada.Lovelace", "EMAIL"),
    ("ssn", "SSN 536-22-1234", "536-22-1234", "SSN"),
    ("phone-intl", "+1 (415) 555-2671", "555-2671", "PHONE"),
    ("phone-uk", "+44 20 7946 0958", "7946 0958", "PHONE"),
    ("phone-us", "415-555-2671", "415-555-2671", "PHONE"),
    ("api-key-shaped", "sk-proj-AbCdEf0123456789XyZ", "AbCdEf0123456789XyZ", "API_KEY"),
]  # fmt: skip

# (what it resembles, text that must come out unchanged)
NEAR_MISSES: list[tuple[str, str]] = [
    ("aws-too-short", "AKIAIOSFODNN7EXAMP"),
    ("aws-inside-longer-id", "XAKIAIOSFODNN7EXAMPLEQQ"),
    ("git-sha", "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 fixed it"),
    ("github-too-short", "the ghp_ prefix, as in ghp_abc123"),
    ("gitlab-too-short", "glpat-short"),
    ("google-too-short", "AIzaSyA1b2C3d4E5f6G7h8"),
    ("slack-hugs", "xoxo-hugs and xoxo - 2 kisses"),
    ("jwt-not-json", "eyJnotajwt.abcdef.ghijkl"),
    ("bearer-prose", "The bearer of this letter is welcome; Bearer tokens expire."),
    ("bearer-word-list", "Bearer authentication, bearer-independent, bearer bonds"),
    ("pem-public", _pem("PUBLIC KEY")),
    ("pem-certificate", _pem("CERTIFICATE")),
    ("private-key-prose", "Never share your private key or its passphrase."),
    ("iban-bad-checksum", "DE89 3704 0044 0532 0130 01"),
    ("iban-lowercase-prose", "ab12 then what else"),
    ("card-bad-luhn", "4111 1111 1111 1112"),
    ("order-id-digits", "order 1234567812345678"),
    ("order-id", "order ORD-2024-000123"),
    ("uuid", "run 123e4567-e89b-12d3-a456-426614174000"),
    ("uuid-hex", "trace 0f8fad5bd9cb469fa16570867728950e"),
    ("date-iso", "on 2024-01-15 we shipped"),
    ("date-dotted", "am 15.01.2024 geliefert"),
    ("date-slashed", "on 01/15/2024 at 10:30:45"),
    ("ip-address", "host 192.168.100.200"),
    ("version", "python 3.11.4 and 1.2.3.4567"),
    ("price", "1,299.00 EUR"),
    ("at-prose", "meet me at noon (at the latest) at example dot com"),
    ("at-spaced-no-domain", "price (at) cost"),
    ("decorator", "use @dataclass and ping @channel"),
    ("ssn-invalid-area", "000-12-3456"),
    ("api-key-prose", "sk-learn and pk_test"),
]


@pytest.fixture(scope="module")
def pii() -> Scrub:
    return make_scrubber({}, redact_pii=True)


@pytest.mark.parametrize(
    ("text", "secret", "label"), [r[1:] for r in MASKED], ids=[r[0] for r in MASKED]
)
def test_format_is_masked(pii: Scrub, text: str, secret: str, label: str) -> None:
    out = pii(f"before {text} after")
    assert secret not in out, out
    assert out.startswith("before ") and out.endswith(" after"), out
    assert f"[{label}]" in out, out


@pytest.mark.parametrize("text", [r[1] for r in NEAR_MISSES], ids=[r[0] for r in NEAR_MISSES])
def test_near_miss_is_kept(pii: Scrub, text: str) -> None:
    assert pii(text) == text


def test_bearer_keeps_the_scheme_and_masks_the_value(pii: Scrub) -> None:
    out = pii("Authorization: Bearer 3f9a8b7c6d5e4f3a2b1c0d9e")
    assert out.startswith("Authorization: Bearer [")


def test_env_secret_is_masked_whatever_its_case() -> None:
    scrub = make_scrubber({"OPENAI_API_KEY": "sk-Live-AbCdEf0123456789"}, redact_pii=False)
    out = scrub("got sk-live-abcdef0123456789 and SK-LIVE-ABCDEF0123456789 back")
    assert out == "got [REDACTED] and [REDACTED] back"


def test_short_env_secret_is_masked_as_a_whole_word() -> None:
    scrub = make_scrubber({"db_password": "x7Kp2q", "PIN_SECRET": "4321"}, redact_pii=False)
    assert scrub("pw X7KP2Q, pin 4321.") == "pw [REDACTED], pin [REDACTED]."
    assert scrub("order 943210 and ax7kp2qz") == "order 943210 and ax7kp2qz"


def test_env_secret_below_the_minimum_is_left_alone() -> None:
    value = "a1b"[: ENV_SECRET_MIN_LENGTH - 1]
    assert make_scrubber({"X_TOKEN": value}, redact_pii=False)(f"say {value}") == f"say {value}"


def test_env_settings_that_only_look_secret_are_left_alone() -> None:
    env = {"TOKENIZERS_PARALLELISM": "false", "API_KEY_ENABLED": "true", "KEYTIMEOUT": "1000"}
    text = "false, true and 1000"
    assert make_scrubber(env, redact_pii=False)(text) == text


def test_password_in_an_env_url_is_masked() -> None:
    env = {"DATABASE_URL": "postgres://app:s3cr3t-pw@db:5432/app"}
    out = make_scrubber(env, redact_pii=False)("connect with s3cr3t-pw")
    assert "s3cr3t-pw" not in out


def test_env_secrets_win_over_pii_labels() -> None:
    scrub = make_scrubber({"GITHUB_TOKEN": _GITHUB}, redact_pii=True)
    assert scrub(f"token {_GITHUB}") == "token [REDACTED]"


def test_keys_and_nested_values_are_scrubbed(pii: Scrub) -> None:
    value = {"ada@example.com": ["4111 1111 1111 1111", ("x", 3)], "n": 5}
    assert pii(value) == {"[EMAIL]": ["[CARD]", ["x", 3]], "n": 5}
