"""S3 names: bucket-name rules, object-key encoding, and where a bucket's URL points.

Keys are percent-encoded here, once, in AWS's encoding (only ``A-Z a-z 0-9 - _ . ~`` and the
``/`` separators stay literal), so the URL the runtime sends is the URL that was signed, and a
server that does not sign (an anonymous MinIO bucket) sees the same bytes.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, urlsplit

import attrs

from .._errors import ConfigError

__all__ = [
    "Addressing",
    "S3Endpoint",
    "check_bucket_name",
    "check_key",
    "encode_key",
    "encode_query",
]

# The current rules for new buckets (lowercase, 3-63 characters, labels of letters, digits
# and hyphens joined by dots); AWS's legacy us-east-1 names are not supported.
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES: Final = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES: Final = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_MAX_KEY_BYTES: Final = 1024
# Host labels: a virtual-hosted bucket name becomes one.
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_AWS_HOST: Final = re.compile(r"(?:^|\.)amazonaws\.com(?:\.cn)?$")


class Addressing(enum.Enum):
    """Where the bucket name goes in an S3 URL.

    ``PATH`` puts it in the path (``https://endpoint/bucket/key``), ``VIRTUAL`` in the host
    name (``https://bucket.endpoint/key``). ``AUTO`` picks virtual-hosted addressing for AWS's
    own endpoints when the bucket name is a single DNS label (a name with dots does not match
    AWS's TLS certificates), and path-style addressing everywhere else, which is what MinIO,
    moto and most S3-compatible servers expect by default.

    .. versionadded:: 0.1.0
    """

    AUTO = "auto"
    PATH = "path"
    VIRTUAL = "virtual"

    @classmethod
    def parse(cls, value: Addressing | str) -> Addressing:
        """``value`` as an :class:`Addressing`; strings are matched case-insensitively."""
        if isinstance(value, Addressing):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise ConfigError(
            f"addressing must be one of 'auto', 'path', 'virtual', got {value!r}",
            field="addressing",
            value=value,
        )


def check_bucket_name(bucket: str) -> str:
    """Return ``bucket`` if it follows S3's naming rules; raise :class:`ConfigError` if not."""
    if not isinstance(bucket, str):
        raise ConfigError(
            f"bucket must be a str, got {type(bucket).__name__}",
            field="bucket",
            value=type(bucket).__name__,
        )
    problem: str | None = None
    if not 3 <= len(bucket) <= 63:
        problem = "must be 3 to 63 characters long"
    elif not _BUCKET.fullmatch(bucket):
        problem = (
            "may contain only lowercase letters, digits, dots and hyphens, and must begin "
            "and end with a letter or digit"
        )
    elif ".." in bucket or ".-" in bucket or "-." in bucket:
        problem = "must not have two dots in a row, or a dot next to a hyphen"
    elif _is_ip_address(bucket):
        problem = "must not look like an IP address"
    elif bucket.startswith(_RESERVED_PREFIXES) or bucket.endswith(_RESERVED_SUFFIXES):
        problem = "uses a prefix or suffix that S3 reserves"
    if problem is not None:
        raise ConfigError(
            f"invalid S3 bucket name {bucket!r}: it {problem}", field="bucket", value=bucket
        )
    return bucket


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_key(key: str) -> str:
    """Return ``key`` if S3 can store it; raise :class:`ConfigError` if not."""
    if not isinstance(key, str):
        raise ConfigError(
            f"key must be a str, got {type(key).__name__}", field="key", value=type(key).__name__
        )
    if not key:
        raise ConfigError("key must not be empty", field="key", value=key)
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError(
            "key must be valid Unicode text (it contains a lone surrogate)", field="key"
        ) from None
    if size > _MAX_KEY_BYTES:
        raise ConfigError(
            f"key is {size} bytes of UTF-8; S3 allows at most {_MAX_KEY_BYTES}",
            field="key",
            value=key[:64] + "...",
        )
    return key


def _encode_segment(segment: str) -> str:
    encoded = quote(segment, safe="")
    # A key segment "." or ".." is a name, not navigation: encoded, it survives URL
    # normalisation by httpx and by the server.
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def encode_key(key: str) -> str:
    """``key`` percent-encoded for a URL path, its ``/`` kept as separators."""
    return "/".join(_encode_segment(segment) for segment in key.split("/"))


def encode_query(pairs: Iterable[tuple[str, str | None]]) -> str:
    """A query string in AWS's encoding; a value of None writes the name alone (``?uploads``)."""
    return "&".join(
        quote(name, safe="") if value is None else f"{quote(name, safe='')}={quote(value, safe='')}"
        for name, value in pairs
    )


def _can_be_host_label(bucket: str) -> bool:
    return len(bucket) <= 63 and _DNS_LABEL.fullmatch(bucket) is not None


@attrs.frozen
class S3Endpoint:
    """The base URL of an S3 service and how bucket names are placed in it."""

    scheme: str
    #: ``host`` or ``host:port``, as it appears in URLs.
    netloc: str
    host: str
    #: A path prefix the service lives under (``""`` for most endpoints).
    base_path: str
    addressing: Addressing

    @classmethod
    def parse(cls, url: str, addressing: Addressing) -> S3Endpoint:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"the S3 endpoint must be an absolute http:// or https:// URL, got {url!r}",
                field="endpoint",
                value=url,
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                "the S3 endpoint must not carry user-info; configure credentials through an "
                "AuthProvider",
                field="endpoint",
            )
        if parts.query or parts.fragment:
            raise ConfigError(
                f"the S3 endpoint must not have a query or fragment, got {url!r}",
                field="endpoint",
                value=url,
            )
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            raise ConfigError(
                f"the S3 endpoint has an invalid port: {url!r}", field="endpoint", value=url
            ) from None
        netloc = parts.netloc.lower()
        return cls(parts.scheme, netloc, parts.hostname, parts.path.rstrip("/"), addressing)

    @property
    def url(self) -> str:
        """The endpoint itself, where bucket-less requests (listing buckets) go."""
        return f"{self.scheme}://{self.netloc}{self.base_path}/"

    def virtual_for(self, bucket: str) -> bool:
        """Whether requests about ``bucket`` name it in the host."""
        if self.addressing is Addressing.PATH:
            return False
        if self.addressing is Addressing.VIRTUAL:
            # A name with dots is several host labels: fine over http://, but it does not
            # match a wildcard TLS certificate. The caller asked for it.
            return True
        return (
            _AWS_HOST.search(self.host) is not None
            and "." not in bucket
            and _can_be_host_label(bucket)
        )

    def bucket_url(self, bucket: str, key: str | None = None, query: str = "") -> str:
        """The URL of ``bucket`` (or of ``key`` in it), with an encoded ``query``."""
        tail = "" if key is None else encode_key(key)
        if self.virtual_for(bucket):
            url = f"{self.scheme}://{bucket}.{self.netloc}{self.base_path}/{tail}"
        else:
            url = f"{self.scheme}://{self.netloc}{self.base_path}/{bucket}"
            if key is not None:
                url += f"/{tail}"
        return f"{url}?{query}" if query else url
