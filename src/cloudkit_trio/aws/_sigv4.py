"""AWS Signature Version 4: signed headers for requests, signed query strings for URLs.

The canonical request follows AWS's rules, and the tests hold every header and presigned URL
byte for byte against botocore's signers. Two rules differ between S3 and the other
services: S3 signs the path exactly as sent, while the others remove dot segments and empty
segments and percent-encode the path a second time.

Before signing, the path and query of the request are rewritten into AWS's percent-encoding
(only ``A-Z a-z 0-9 - _ . ~`` stay literal). The server computes its canonical request from
the bytes it receives, so it must see exactly the bytes that were signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import ClassVar, Final
from urllib.parse import quote, unquote_to_bytes

import attrs
import httpx

from .._credentials import Credentials

__all__ = ["EMPTY_SHA256", "UNSIGNED_PAYLOAD", "SigV4Signer"]

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TERMINATOR: Final = "aws4_request"
_TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"

#: The payload hash sent when the body is not hashed.
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
#: SHA-256 of the empty body, in hex.
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

#: AWS caps presigned URLs at seven days.
_MAX_EXPIRES: Final = 7 * 24 * 3600

# Proxies, load balancers and HTTP clients may add, drop or rewrite these on the way, so a
# signature over them would break in transit. The list is the one AWS's SDKs agree on.
_UNSIGNED_HEADERS: Final = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

# Services whose signature covers the path as sent: no dot-segment removal, no second
# encoding. Object keys may legitimately contain "//" or "%2F".
_RAW_PATH_SERVICES: Final = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})

# Query parameters that only a signer may set; finding one in a URL to presign means it
# has been signed already.
_QUERY_AUTH_PARAMS: Final = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-security-token",
        "x-amz-signature",
    }
)

_UNRESERVED_ONLY: Final = re.compile(rb"[A-Za-z0-9._~-]*")

# Derived signing keys are kept for a handful of (secret, day) pairs: enough for a rotation
# overlap and a day boundary, small enough that stale keys leave quickly.
_KEY_CACHE_SIZE: Final = 8


def _check_name(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"SigV4Signer.{attribute.name} must be a str, got {type(value).__name__}")
    if not value or not value.isascii() or not value.isprintable() or "/" in value or " " in value:
        raise ValueError(
            f"SigV4Signer.{attribute.name} must be a non-empty name without spaces or '/', "
            f"like 's3' or 'us-east-1', got {value!r}"
        )


def _encode(raw: bytes) -> str:
    # quote() keeps letters, digits and "-_.~" literal: exactly SigV4's unreserved set.
    return quote(raw, safe="")


def _reencode(raw: bytes) -> str:
    """A percent-encoded URL component, decoded and encoded again the AWS way."""
    if _UNRESERVED_ONLY.fullmatch(raw):
        return raw.decode("ascii")  # nothing to decode, nothing to encode: the common case
    return _encode(unquote_to_bytes(raw))


def _encode_segment(segment: bytes) -> str:
    encoded = _reencode(segment)
    # A "." or ".." that arrived encoded is part of a name (an S3 key), not navigation:
    # it stays encoded, or httpx would remove it as a dot segment.
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _encode_path(raw_path: bytes) -> str:
    return "/".join(_encode_segment(segment) for segment in raw_path.split(b"/"))


def _encode_query(raw_query: bytes) -> list[tuple[str, str | None]]:
    """The query's (name, value) pairs in AWS's encoding; value None when there was no "="."""
    # "+" means a space, as in HTML forms and in httpx's own encoding of ``params=``;
    # a literal plus sign is written "%2B".
    pairs: list[tuple[str, str | None]] = []
    for piece in raw_query.replace(b"+", b"%20").split(b"&"):
        if not piece:
            continue
        name, equals, value = piece.partition(b"=")
        pairs.append((_reencode(name), _reencode(value) if equals else None))
    return pairs


def _remove_dot_segments(path: str) -> str:
    # AWS's path normalisation: RFC 3986 dot-segment removal that also drops empty
    # segments, keeping a trailing slash only when something is left before it.
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and kept else ""
    return lead + "/".join(kept) + trail


def _canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _canonical_headers(items: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The canonical header block and the signed-header list, from (lowercase name, value)."""
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        if name not in _UNSIGNED_HEADERS:
            # Trimall: surrounding whitespace goes, inner runs collapse to one space.
            grouped.setdefault(name, []).append(" ".join(value.split()))
    names = sorted(grouped)
    block = "".join(f"{name}:{','.join(grouped[name])}\n" for name in names)
    return block, ";".join(names)


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(now, dt.datetime):
        raise TypeError(f"now must be a datetime, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return now.astimezone(dt.UTC)


def _check_credentials(credentials: object) -> Credentials:
    if not isinstance(credentials, Credentials):
        raise TypeError(f"credentials must be Credentials, got {type(credentials).__name__}")
    # httpx would reject these only after echoing the whole value in its error.
    if not _header_safe(credentials.access_key):
        raise ValueError("the access key must be printable ASCII to be sent in a request")
    token = credentials.session_token
    if token is not None and not _header_safe(token):
        raise ValueError("the session token must be printable ASCII to be sent in a request")
    return credentials


@attrs.define(eq=False, repr=False)
class SigV4Signer:
    """Signs requests for one AWS service in one region with Signature Version 4.

    :meth:`sign` adds ``X-Amz-Date``, ``X-Amz-Security-Token`` (for session credentials),
    ``X-Amz-Content-SHA256`` and ``Authorization`` to an :class:`httpx.Request`, in place,
    and rewrites its path and query into AWS's percent-encoding; it satisfies
    :class:`cloudkit_trio.transport.RequestSigner`, so the runtime calls it before every
    attempt. Every header on
    the request is signed, except the hop-by-hop and tracing headers that proxies rewrite
    (``Connection``, ``User-Agent``, ``Transfer-Encoding``, ``traceparent``, ...): set
    headers before signing, never after.

    The body is hashed when it is in memory. A streaming body (an iterator passed as
    ``content=``) is sent as ``UNSIGNED-PAYLOAD`` rather than read twice; S3 accepts that,
    most other services do not. ``unsigned_payload=True`` does the same for every body,
    which saves hashing large uploads but leaves the body unprotected on plain ``http://``.

    :meth:`presign` returns a URL that carries its signature in the query string and is
    valid for up to seven days.

    Derived signing keys are cached per secret and day on the instance (a few at most);
    neither they nor any secret appear in ``repr()`` or in an error message.

    Args:
        service: The signing name of the service (``"s3"``, ``"sqs"``, ``"execute-api"``).
        region: The region to sign for (``"us-east-1"``).
        unsigned_payload: Send ``UNSIGNED-PAYLOAD`` instead of hashing the body.
        normalize_path: Remove dot and empty segments from the signed path and encode it a
            second time, as every service but S3 expects. ``None`` (the default) decides
            by ``service``: off for ``s3``, ``s3-object-lambda``, ``s3-outposts`` and
            ``s3express``, on for the rest.

    .. versionadded:: 0.1.0
    """

    service: str = attrs.field(validator=_check_name, on_setattr=attrs.setters.frozen)
    region: str = attrs.field(validator=_check_name, on_setattr=attrs.setters.frozen)
    unsigned_payload: bool = attrs.field(
        default=False,
        kw_only=True,
        validator=attrs.validators.instance_of(bool),
        on_setattr=attrs.setters.frozen,
    )
    normalize_path: bool | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(attrs.validators.instance_of(bool)),
        on_setattr=attrs.setters.frozen,
    )
    #: The runtime fetches credentials only for signers that need them.
    needs_credentials: ClassVar[bool] = True
    _raw_path: bool = attrs.field(init=False, default=False)
    _keys: dict[tuple[bytes, str], bytes] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.normalize_path is None:
            self._raw_path = self.service in _RAW_PATH_SERVICES
        else:
            self._raw_path = not self.normalize_path

    def sign(
        self,
        request: httpx.Request,
        credentials: Credentials | None,
        *,
        now: dt.datetime | None = None,
    ) -> None:
        """Sign ``request`` in place with ``credentials`` at ``now`` (default: the current time).

        Signing again (a retry) replaces the previous signature headers. Raises
        :class:`TypeError`/:class:`ValueError` for unusable arguments, never a
        :class:`~cloudkit_trio.CloudError`.
        """
        if not isinstance(request, httpx.Request):
            raise TypeError(f"request must be an httpx.Request, got {type(request).__name__}")
        credentials = _check_credentials(credentials)
        when = _utc(now)
        timestamp = when.strftime(_TIMESTAMP)

        path, query = self._rewrite_url(request)
        url = request.url

        headers = request.headers
        headers.pop("Authorization", None)
        if "host" not in headers:
            headers["Host"] = url.netloc.decode("ascii")
        headers["X-Amz-Date"] = timestamp
        if credentials.session_token is None:
            headers.pop("X-Amz-Security-Token", None)
        else:
            headers["X-Amz-Security-Token"] = credentials.session_token
        payload_hash = self._payload_hash(request)
        headers["X-Amz-Content-SHA256"] = payload_hash

        header_block, signed_headers = _canonical_headers(headers.multi_items())
        canonical_request = "\n".join(
            (
                request.method.upper(),
                self._canonical_path(path),
                _canonical_query((name, value or "") for name, value in query),
                header_block,
                signed_headers,
                payload_hash,
            )
        )
        scope = self._scope(timestamp)
        signature = self._signature(credentials.secret_key, timestamp, canonical_request)
        headers["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )

    def presign(
        self,
        method: str,
        url: str | httpx.URL,
        credentials: Credentials,
        *,
        expires: int = 3600,
        now: dt.datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A URL that lets its holder send this one request until ``expires`` seconds pass.

        The signature travels in the query string (``X-Amz-Signature`` and friends), so the
        holder needs no credentials. ``expires`` is at most 604800 (seven days); temporary
        credentials make the URL stop working when they expire, whichever comes first.
        ``headers`` (for example ``Content-Type``) are signed too, and the request must then
        carry them unchanged. S3 URLs sign ``UNSIGNED-PAYLOAD``; other services sign an
        empty body.

        .. versionadded:: 0.1.0
        """
        if not isinstance(method, str) or not method:
            raise ValueError("method must be a non-empty HTTP method like 'GET'")
        credentials = _check_credentials(credentials)
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise TypeError(f"expires must be an int of seconds, got {type(expires).__name__}")
        if not 1 <= expires <= _MAX_EXPIRES:
            raise ValueError(
                f"expires must be between 1 and {_MAX_EXPIRES} seconds (7 days), got {expires}"
            )
        when = _utc(now)
        timestamp = when.strftime(_TIMESTAMP)
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            target = None
        if target is None or target.scheme not in ("http", "https") or not target.host:
            # The text is left out on purpose: a URL handed in may already carry a token.
            raise ValueError("url must be an absolute http:// or https:// URL")

        raw_path, _, raw_query = target.raw_path.partition(b"?")
        # Let httpx normalise the re-encoded path exactly as it will when the URL is used.
        path = target.copy_with(raw_path=_encode_path(raw_path).encode("ascii")).raw_path
        existing = [(name, value or "") for name, value in _encode_query(raw_query)]
        if any(name.lower() in _QUERY_AUTH_PARAMS for name, _ in existing):
            raise ValueError("url is already signed: it carries X-Amz-* signing parameters")

        host = target.netloc.decode("ascii")
        header_items = [("host", host)]
        for name, value in (headers or {}).items():
            if name.lower() != "host":
                header_items.append((name.lower(), value))
        header_block, signed_headers = _canonical_headers(header_items)

        scope = self._scope(timestamp)
        auth = [
            ("X-Amz-Algorithm", _ALGORITHM),
            ("X-Amz-Credential", _encode(f"{credentials.access_key}/{scope}".encode())),
            ("X-Amz-Date", timestamp),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", _encode(signed_headers.encode())),
        ]
        if credentials.session_token is not None:
            auth.append(("X-Amz-Security-Token", _encode(credentials.session_token.encode())))
        # S3 cannot know the body of a request that has not been made yet; the other
        # services sign the empty body of a query-authenticated request.
        payload_hash = (
            UNSIGNED_PAYLOAD
            if self.unsigned_payload or self.service in _RAW_PATH_SERVICES
            else EMPTY_SHA256
        )
        canonical_request = "\n".join(
            (
                method.upper(),
                self._canonical_path(path.decode("ascii")),
                _canonical_query([*existing, *auth]),
                header_block,
                signed_headers,
                payload_hash,
            )
        )
        signature = self._signature(credentials.secret_key, timestamp, canonical_request)
        query = "&".join(f"{name}={value}" for name, value in [*existing, *auth])
        return f"{target.scheme}://{host}{path.decode('ascii')}?{query}&X-Amz-Signature={signature}"

    def _rewrite_url(self, request: httpx.Request) -> tuple[str, list[tuple[str, str | None]]]:
        """Put the path and query in AWS's encoding; return them as they will be sent."""
        raw_path, question, raw_query = request.url.raw_path.partition(b"?")
        path = _encode_path(raw_path)
        query = _encode_query(raw_query) if question else []
        target = path
        if query:
            target += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in query)
        if target.encode("ascii") != request.url.raw_path:
            request.url = request.url.copy_with(raw_path=target.encode("ascii"))
        return path, query

    def _canonical_path(self, path: str) -> str:
        if self._raw_path:
            return path or "/"
        # The path is already encoded once; encoding it again turns "%" into "%25".
        return quote(_remove_dot_segments(path) or "/", safe="/")

    def _payload_hash(self, request: httpx.Request) -> str:
        if self.unsigned_payload:
            return UNSIGNED_PAYLOAD
        try:
            body = request.content
        except httpx.RequestNotRead:
            return UNSIGNED_PAYLOAD
        return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256

    def _scope(self, timestamp: str) -> str:
        return f"{timestamp[:8]}/{self.region}/{self.service}/{_TERMINATOR}"

    def _signature(self, secret: str, timestamp: str, canonical_request: str) -> str:
        string_to_sign = "\n".join(
            (
                _ALGORITHM,
                timestamp,
                self._scope(timestamp),
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            )
        )
        key = self._signing_key(secret, timestamp[:8])
        return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

    def _signing_key(self, secret: str, day: str) -> bytes:
        # Keyed by a digest so the cache never holds the secret itself.
        cache_key = (hashlib.sha256(secret.encode("utf-8")).digest(), day)
        key = self._keys.get(cache_key)
        if key is None:
            key = hmac.digest(f"AWS4{secret}".encode(), day.encode("utf-8"), "sha256")
            for part in (self.region, self.service, _TERMINATOR):
                key = hmac.digest(key, part.encode("utf-8"), "sha256")
            if len(self._keys) >= _KEY_CACHE_SIZE:
                del self._keys[next(iter(self._keys))]
            self._keys[cache_key] = key
        return key

    def __repr__(self) -> str:
        return (
            f"SigV4Signer(service={self.service!r}, region={self.region!r}, "
            f"unsigned_payload={self.unsigned_payload}, normalize_path={not self._raw_path})"
        )
