"""The one place that decides what is a secret and how it is masked.

Reprs, log fields, error messages, snapshots and metric labels all mask through these
functions, so a secret that one of them would show is masked by all of them: a header or
field or query parameter whose *name* says it holds a secret, the user-info of a URL, and
any text a server echoes back (``token=...``, ``"password": "..."``, an ``Authorization``
header quoted in an error page, a known secret's value wherever it appears).

Masking is a last line of defence: the runtime never puts a secret into a message in the
first place. It errs towards masking too much.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "MASK",
    "escape_controls",
    "is_secret_name",
    "mask_fields",
    "mask_headers",
    "mask_text",
    "mask_url",
    "secret_values",
]

MASK: Final = "***"

# Exact names (lowercase) of headers, fields and query parameters that hold secrets.
_SECRET_NAMES: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-key",
        "x-amz-server-side-encryption-customer-key-md5",
        "x-goog-signature",
        "x-vault-token",
        "x-api-key",
        "x-auth-token",
        "api-key",
        "api_key",
        "apikey",
        "sig",
        "signature",
        "token",
        "password",
        "passwd",
        "secret",
        "secret_key",
        "secret_access_key",
        "secretaccesskey",
        "session_token",
        "sessiontoken",
        "client_secret",
    }
)
# Parts of a name that make it a secret's name wherever they appear in it.
_SECRET_PARTS: Final = ("secret", "token", "password", "signature", "credential_key", "apikey")

# The words that make a name in free text look secret (``access_token``, ``X-Vault-Token``,
# ``"password"``, ``<SignatureProvided>``).
_SECRET_WORDS: Final = (
    r"(?:secret|token|password|passwd|signature|authorization|api[_-]?key|cookie|sig)"
)
_WORD: Final = r"[A-Za-z0-9_.\-]"
# `name=value`, `name: value` and `"name": "value"` for any name that looks secret; the
# value runs to the next separator (or to the closing quote). Linear time on any input, as
# error bodies come from servers: a match starts only where a word starts, the lookahead
# finds a secret word within that word, and the possessive `++` never backtracks into it.
_NAMED_VALUE: Final = re.compile(
    rf"""(?<!{_WORD})"""
    rf"""(?P<name>["']?(?={_WORD}*?{_SECRET_WORDS}){_WORD}++["']?)"""
    r"""(?P<sep>\s*[=:]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s"'&,;<>]+)""",
    re.IGNORECASE,
)
# `<SignatureProvided>value</`, `<Token>value</`: XML elements whose name looks secret.
_XML_ELEMENT: Final = re.compile(
    rf"""<(?P<tag>(?=[A-Za-z0-9_.:\-]*?{_SECRET_WORDS})[A-Za-z0-9_.:\-]++)>[^<]*+</""",
    re.IGNORECASE,
)
# HTTP auth schemes quoted with their credentials: `Bearer abc`, `Basic abc`, and prose
# such as Vault's `invalid token "hvs.abc"`.
_AUTH_SCHEME: Final = re.compile(
    r"""\b(?P<scheme>Bearer|Basic|Token)(?P<gap>\s+["']?)[A-Za-z0-9._~+/=\-]+""", re.IGNORECASE
)
# Values shorter than this are not searched for as such (too likely to match by chance).
_MIN_SECRET_LENGTH: Final = 4
# C0 and C1 controls and the Unicode line and paragraph separators: anything a log viewer
# or ``str.splitlines`` could take for the end of a line.
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def is_secret_name(name: str) -> bool:
    """Whether a header, field or query parameter called ``name`` holds a secret."""
    lowered = name.lower()
    if lowered in _SECRET_NAMES:
        return True
    compact = lowered.replace("-", "_")
    return any(part in compact for part in _SECRET_PARTS)


def mask_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` with secret values masked (for reprs and messages)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: (MASK if is_secret_name(name) else value) for name, value in items}


def mask_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """A copy of structured log fields with secret values masked, and text values scrubbed.

    Nested mappings (metric tags) are masked the same way; a value that is neither text,
    a number nor a mapping (an exception, a list) is logged as its masked ``str()``.
    """
    masked: dict[str, object] = {}
    for name, value in fields.items():
        if is_secret_name(name):
            masked[name] = MASK
        elif isinstance(value, str):
            masked[name] = mask_text(value)
        elif value is None or isinstance(value, int | float):
            masked[name] = value
        elif isinstance(value, Mapping):
            masked[name] = mask_fields({str(key): item for key, item in value.items()})
        else:
            masked[name] = mask_text(str(value))
    return masked


def mask_url(url: str) -> str:
    """``url`` with its user-info and secret query parameters (a presigned URL's
    ``X-Amz-Signature`` and session token) masked; the rest unchanged."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{MASK}@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            query = urlencode(
                [(name, MASK if is_secret_name(name) else value) for name, value in pairs],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return parts._replace(netloc=netloc, query=query).geturl()


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (an error body a server echoed, an exception message) with secrets masked.

    Every value of ``secrets`` that occurs in it (the longest first, so one secret that
    contains another goes whole), every ``name=value`` / ``name: value`` /
    ``"name": "value"`` / ``<Name>value</Name>`` whose name looks secret, and every
    ``Bearer``/``Basic``/``Token`` credential. Runs in linear time, whatever the text.
    """
    known = sorted(
        {secret for secret in secrets if secret and len(secret) >= _MIN_SECRET_LENGTH},
        key=len,
        reverse=True,
    )
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    # Schemes first: `Authorization: Bearer x` would otherwise mask only the word Bearer.
    text = _AUTH_SCHEME.sub(lambda match: f"{match['scheme']}{match['gap']}{MASK}", text)
    text = _XML_ELEMENT.sub(lambda match: f"<{match.group('tag')}>{MASK}</", text)
    return _NAMED_VALUE.sub(_mask_named, text)


def secret_values(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], url: str | None = None
) -> tuple[str, ...]:
    """The secrets a request carries, to pass as ``mask_text(..., secrets=...)``.

    The value of every header whose name is secret, and on their own the credential of
    an ``<scheme> <credential>`` value and each secret ``name=value`` part of it (SigV4's
    ``Signature=...``), since a server may quote just that part; and the value of every
    secret query parameter of ``url`` (a presigned URL's signature).
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: list[str] = []
    for name, value in items:
        if not is_secret_name(name):
            continue
        found.append(value)
        _scheme, _, credential = value.strip().partition(" ")
        if credential:
            found.append(credential.strip())
            for part in credential.split(","):
                key, _, secret = part.partition("=")
                if is_secret_name(key.strip()):
                    found.append(secret.strip())
    if url is not None:
        try:
            query = urlsplit(url).query
        except ValueError:
            query = ""
        found.extend(
            value
            for name, value in parse_qsl(query, keep_blank_values=True)
            if is_secret_name(name)
        )
    return tuple(secret for secret in found if len(secret) >= _MIN_SECRET_LENGTH)


def _mask_named(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('name')}{match.group('sep')}{quote}{MASK}{quote}"


def escape_controls(text: str) -> str:
    """``text`` with control characters (CR, LF, TAB, NUL, ...) escaped, so a value from a
    server cannot forge a log line."""
    if not _CONTROLS.search(text):
        return text
    return _CONTROLS.sub(lambda match: repr(match.group())[1:-1], text)
