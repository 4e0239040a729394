"""The package's validators for what users pass in: durations, counts, ranges, URLs, headers.

One definition of "seconds" (a finite int or float, never a bool), of "a count", of "a
number in a range", of "an http(s) URL" and of "a header", so every field that takes one
refuses the same values with the same :class:`ConfigError` (also a ``ValueError``), naming
the field. Nothing refused escapes as another exception later (``httpx.InvalidURL``,
``UnicodeEncodeError`` on the wire), and no message quotes a secret: URLs are shown through
:func:`~cloudkit_trio._masking.mask_url`, header values never.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ._errors import ConfigError
from ._masking import mask_text, mask_url

__all__ = [
    "check_count",
    "check_headers",
    "check_number",
    "check_params",
    "check_path",
    "check_seconds",
    "check_url",
    "count",
    "seconds",
]

# RFC 9110 §5.1: a field name is a token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: a field value is visible ASCII with spaces and tabs inside, never at its
# ends (h11 refuses those on the wire); obs-text is not sent.
_FIELD_VALUE: Final = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")
# C0 controls, space's neighbours included, and DEL: never part of a URL we send.
_URL_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f]")


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    above: bool = False,
    field: str | None = None,
) -> float:
    """``value`` as a float: finite, at least ``minimum`` (above it with ``above``), at most
    ``maximum``. ``name`` is how the message names it (``"ExponentialBackoff.max_delay"``),
    ``field`` the error's ``field`` (default: the last part of ``name``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
        or (above and value == minimum)
        or value > maximum
    ):
        low = f"> {minimum:g}" if above else f">= {minimum:g}"
        bound = low if maximum == math.inf else f"{low} and <= {maximum:g}"
        if minimum == -math.inf:
            bound = f"<= {maximum:g}"
        raise ConfigError(
            f"{name} must be a finite number {bound}, got {value!r}",
            field=field or name.rsplit(".", 1)[-1],
            value=value,
        )
    return float(value)


def check_seconds(
    name: str, value: object, *, allow_zero: bool = False, field: str | None = None
) -> float:
    """``value`` as float seconds: finite, above zero (or at least zero with ``allow_zero``)."""
    return check_number(name, value, minimum=0.0, above=not allow_zero, field=field)


def check_count(
    name: str,
    value: object,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    field: str | None = None,
) -> int:
    """``value`` as an int of at least ``minimum`` and at most ``maximum`` (bools refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(
            f"{name} must be an int {bound}, got {value!r}",
            field=field or name.rsplit(".", 1)[-1],
            value=value,
        )
    return value


# attrs validators built on the same checks, for frozen records' fields.
_Validator = Callable[[Any, Any, Any], None]


def seconds(*, allow_zero: bool = False) -> _Validator:
    """An attrs validator: the field holds seconds (see :func:`check_seconds`)."""

    def validate(_instance: object, attribute: Any, value: object) -> None:
        check_seconds(attribute.name, value, allow_zero=allow_zero)

    return validate


def count(*, minimum: int = 1) -> _Validator:
    """An attrs validator: the field holds an int of at least ``minimum``."""

    def validate(_instance: object, attribute: Any, value: object) -> None:
        check_count(attribute.name, value, minimum=minimum)

    return validate


def _encodable(value: str) -> bool:
    # A lone surrogate cannot be UTF-8 encoded, so it cannot be percent-encoded either.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _url_problem(value: str, *, allow_query: bool) -> str | None:
    """Why ``value`` is not an absolute http(s) URL we can send to, or None."""
    if _URL_CONTROLS.search(value):
        return "must not contain control characters (CR, LF, TAB, NUL, ...)"
    if not _encodable(value):
        return "must be encodable as UTF-8"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL (check any [IPv6] host's brackets)"
    try:
        port = parts.port
    except ValueError:
        # The text after the host's colon: never part of the user-info or the query.
        text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
        return f"has an invalid port {text[:16]!r} (give a number in 1..65535)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry user-info; configure credentials through an AuthProvider instead"
    if port is None and ":" in parts.netloc.rsplit("]", 1)[-1]:
        return "has an empty port (give a number in 1..65535, or none)"
    if port == 0:
        return "has port 0, which cannot be connected to"
    if not allow_query and (parts.query or parts.fragment):
        return "must not have a query or fragment"
    try:
        httpx.URL(value)
    except httpx.InvalidURL:
        return "is not a URL httpx can send to (check the host name)"
    return None


def check_url(
    name: str, value: object, *, allow_query: bool = True, field: str | None = None
) -> str:
    """``value`` as an absolute ``http://`` or ``https://`` URL with a host that can be sent:
    no control characters, no user-info, a valid port (1-65535), and with ``allow_query``
    false no query or fragment. The message shows the URL masked (no signature, no token)."""
    field = field or name.rsplit(".", 1)[-1]
    if not isinstance(value, str):
        raise ConfigError(
            f"{name} must be a URL string, got {type(value).__name__}",
            field=field,
            value=type(value).__name__,
        )
    problem = _url_problem(value, allow_query=allow_query)
    if problem is not None:
        shown = mask_url(value)
        raise ConfigError(f"{name} {problem}, got {shown!r}", field=field, value=shown)
    return value


def check_path(name: str, value: object, *, field: str | None = None) -> str:
    """``value`` as a path relative to an endpoint: a str without a scheme, control
    characters or lone surrogates."""
    field = field or name.rsplit(".", 1)[-1]
    if not isinstance(value, str):
        raise ConfigError(
            f"{name} must be a path string, got {type(value).__name__}",
            field=field,
            value=type(value).__name__,
        )
    if "://" in value or _URL_CONTROLS.search(value) or not _encodable(value):
        shown = mask_url(value)
        raise ConfigError(
            f"{name} must be a path relative to the configured endpoint, without control "
            f"characters, got {shown!r}",
            field=field,
            value=shown,
        )
    return value


def _shown_name(key: str) -> str:
    # A whole header line passed as a name ("Authorization: Bearer x") must not leak.
    return repr(mask_text(key)[:64])


def _check_mapping(name: str, value: object, field: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{name} must be a mapping of str to str, got {type(value).__name__}",
            field=field,
            value=type(value).__name__,
        )
    return value


def check_headers(name: str, value: object, *, field: str | None = None) -> Mapping[str, str]:
    """``value`` as request headers: a mapping whose names are RFC 9110 tokens and whose
    values are visible ASCII, spaces and tabs. A refused value is never quoted."""
    field = field or name.rsplit(".", 1)[-1]
    mapping = _check_mapping(name, value, field)
    for key, item in mapping.items():
        if not isinstance(key, str) or not _TOKEN.fullmatch(key):
            shown = _shown_name(key) if isinstance(key, str) else type(key).__name__
            raise ConfigError(
                f"{name}: header names must be non-empty str tokens (letters, digits and "
                f"!#$%&'*+-.^_`|~), got {shown}",
                field=field,
                value=shown,
            )
        if not isinstance(item, str):
            raise ConfigError(
                f"{name}: the value of header {key!r} must be a str, got {type(item).__name__}",
                field=field,
                value=key,
            )
        if not _FIELD_VALUE.fullmatch(item):
            raise ConfigError(
                f"{name}: the value of header {key!r} must be printable ASCII, with no "
                "CR, LF, NUL, non-ASCII characters or whitespace at either end (percent- or "
                "base64-encode other text)",
                field=field,
                value=key,
            )
    return mapping


def check_params(name: str, value: object, *, field: str | None = None) -> Mapping[str, str]:
    """``value`` as query parameters: a mapping of str to str (percent-encoded when sent,
    so any text that UTF-8 can encode). A refused value is never quoted."""
    field = field or name.rsplit(".", 1)[-1]
    mapping = _check_mapping(name, value, field)
    for key, item in mapping.items():
        if not isinstance(key, str) or not _encodable(key):
            shown = type(key).__name__ if not isinstance(key, str) else "a lone surrogate"
            raise ConfigError(
                f"{name}: parameter names must be str that UTF-8 can encode, got {shown}",
                field=field,
                value=shown,
            )
        if not isinstance(item, str) or not _encodable(item):
            raise ConfigError(
                f"{name}: the value of parameter {_shown_name(key)} must be a str that UTF-8 "
                f"can encode, got {type(item).__name__}",
                field=field,
                value=key,
            )
    return mapping
