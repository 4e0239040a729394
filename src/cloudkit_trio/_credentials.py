"""Credentials: a frozen triple plus an optional expiry, which never shows its secrets."""

from __future__ import annotations

import datetime as dt

import attrs

from ._errors import ConfigError

__all__ = ["Credentials"]

_REDACTED = "***"


def _printable(name: str, value: str) -> None:
    # A newline in a key would end up in a signed header (or be refused there with an error
    # that quotes it); credential sources (files with continuation lines, environment
    # variables, HTTP answers) are where it comes from, so it is refused where they meet.
    if not value.isprintable():
        field = f"Credentials.{name}"
        raise ConfigError(
            f"{field} holds a control character (a newline, tab, NUL, ...): check the "
            "credential source it came from",
            field=field,
        )


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"Credentials.{attribute.name} must be a str, got {type(value).__name__}")
    if not value:
        raise ConfigError(
            f"Credentials.{attribute.name} must not be empty", field=f"Credentials.{attribute.name}"
        )
    _printable(attribute.name, value)


def _optional_str(
    _instance: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"Credentials.{attribute.name} must be a str or None")
    if value is not None:
        _printable(attribute.name, value)


def _aware(_instance: object, _attribute: object, value: dt.datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, dt.datetime):
        raise TypeError("Credentials.expires_at must be a datetime or None")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "Credentials.expires_at must be timezone-aware, e.g. datetime.now(timezone.utc)"
        )


@attrs.frozen(repr=False)
class Credentials:
    """An access key, its secret, an optional session token and an optional expiry.

    The three strings are read together as one frozen value, so a refresh can never mix the
    key of one set with the secret of another. ``repr()`` and ``str()`` show the access key
    and the expiry but never the secret or the token.

    An empty key or secret, or any of the three strings holding a control character (a
    newline from a credential file, say), is refused with :class:`~cloudkit_trio.ConfigError`
    naming the field, never quoting the value; a provider that builds such credentials
    fails its refresh with it.

    Args:
        access_key: The public key id (``AKIA...``).
        secret_key: The secret; never logged.
        session_token: The session token of temporary credentials; never logged.
        expires_at: When temporary credentials expire, as an aware ``datetime``.

    .. versionadded:: 0.1.0
    """

    access_key: str = attrs.field(validator=_non_empty)
    secret_key: str = attrs.field(validator=_non_empty)
    session_token: str | None = attrs.field(default=None, validator=_optional_str)
    expires_at: dt.datetime | None = attrs.field(default=None, validator=_aware)

    def is_expired(self, now: dt.datetime | None = None, skew: float = 0.0) -> bool:
        """Whether the credentials are expired at ``now``, or will be within ``skew`` seconds.

        Credentials without ``expires_at`` never expire. ``now`` defaults to the current
        UTC time.
        """
        if self.expires_at is None:
            return False
        if now is None:
            now = dt.datetime.now(dt.UTC)
        return now + dt.timedelta(seconds=skew) >= self.expires_at

    def __repr__(self) -> str:
        token = "None" if self.session_token is None else repr(_REDACTED)
        expires = "None" if self.expires_at is None else self.expires_at.isoformat()
        return (
            f"Credentials(access_key={self.access_key!r}, secret_key={_REDACTED!r}, "
            f"session_token={token}, expires_at={expires})"
        )

    __str__ = __repr__
