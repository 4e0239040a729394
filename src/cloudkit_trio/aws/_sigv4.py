"""AWS Signature Version 4: signed headers for requests, signed query strings for URLs.

The canonical request follows AWS's rules, and the tests hold every header and presigned URL
byte for byte against botocore's signers. Two rules differ between the S3 family and the
other services: S3 signs the path exactly as sent, while the others remove dot segments and
empty segments and percent-encode the path a second time; and S3 wants the payload hash in
an ``X-Amz-Content-SHA256`` header on every request, while the others see it only inside
the signature (and get the header only for ``UNSIGNED-PAYLOAD``, which they cannot guess).

Before signing, the path and query of the request are rewritten into AWS's percent-encoding
(only ``A-Z a-z 0-9 - _ . ~`` stay literal). The server computes its canonical request from
the bytes it receives, so it must see exactly the bytes that were signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import ClassVar, Final
from urllib.parse import quote, unquote_to_bytes

import attrs
import httpx

from .._credentials import Credentials
from ._signing_names import uses_s3_rules

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

# The headers sign() owns. Whatever they carry before signing (an earlier attempt's
# values, or a caller's) stays out of the signature and is overwritten or removed.
_SIGNER_HEADERS: Final = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)

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
_UNRESERVED_PATH: Final = re.compile(rb"[A-Za-z0-9._~/-]*")
_HEX_SHA256: Final = re.compile(r"[0-9a-f]{64}")

# Derived signing keys are kept for a handful of (secret, day) pairs: enough for a rotation
# overlap and a day boundary, small enough that stale keys leave quickly.
_KEY_CACHE_SIZE: Final = 8

# A retry signs the same body again. Below this size hashing it again costs less than
# remembering its hash; above it, the hash is kept while the request lives, so a retry of
# a large upload does not hold the event loop for another pass over the body.
_REUSE_HASH_FROM: Final = 64 * 1024


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
    # Nothing to re-encode and no segment that could be a dot segment: the common case,
    # and every retry of a request this module has rewritten already.
    if (
        _UNRESERVED_PATH.fullmatch(raw_path)
        and b"/." not in raw_path
        and not raw_path.startswith(b".")
    ):
        return raw_path.decode("ascii")
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


def _check_now(now: object) -> dt.datetime:
    if not isinstance(now, dt.datetime):
        raise TypeError(f"now must be a datetime, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return now


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


def _presigned_payload(body: object, payload_hash: object) -> str | None:
    """The payload hash a presigned URL was asked to sign, or None for the default."""
    if body is not None and payload_hash is not None:
        raise TypeError("presign() takes body or payload_hash, not both")
    if body is not None:
        if not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, got {type(body).__name__}")
        return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    if payload_hash is not None:
        if not isinstance(payload_hash, str):
            raise TypeError(f"payload_hash must be a str, got {type(payload_hash).__name__}")
        # The value is not quoted back: it could be anything a caller mixed up.
        if payload_hash != UNSIGNED_PAYLOAD and not _HEX_SHA256.fullmatch(payload_hash):
            raise ValueError(
                "payload_hash must be the body's SHA-256 as 64 lowercase hex digits, "
                "or 'UNSIGNED-PAYLOAD'"
            )
        return payload_hash
    return None


@attrs.define(eq=False, repr=False)
class SigV4Signer:
    """Signs requests for one AWS service in one region with Signature Version 4.

    :meth:`sign` adds ``X-Amz-Date``, ``X-Amz-Security-Token`` (for session credentials),
    ``X-Amz-Content-SHA256`` (when the rules below call for it) and ``Authorization`` to an
    :class:`httpx.Request`, in place, and rewrites its path and query into AWS's
    percent-encoding; it satisfies :class:`cloudkit_trio.transport.RequestSigner`, so the
    runtime calls it before every attempt. Every header on the request is signed, except
    the hop-by-hop and tracing headers that proxies rewrite (``Connection``, ``User-Agent``,
    ``Transfer-Encoding``, ``traceparent``, ...): set headers before signing, never after.
    Those four headers belong to the signer: values they carry before signing, from an
    earlier attempt or from the caller, are replaced or removed.

    The body is hashed when it is in memory. A streaming body (an iterator passed as
    ``content=``) is sent as ``UNSIGNED-PAYLOAD`` rather than read twice; S3 accepts that,
    most other services do not. ``unsigned_payload=True`` does the same for every body,
    which saves hashing large uploads but leaves the body unprotected on plain ``http://``.

    The S3 family (``s3``, ``s3-object-lambda``, ``s3-outposts``, ``s3express``) gets the
    payload hash in an ``X-Amz-Content-SHA256`` header on every request, as S3 requires.
    Every other service gets it only inside the signature, exactly as botocore signs them,
    plus the header when the payload is unsigned: the server cannot tell otherwise.

    With ``sign_session_token=False`` the session token is added after the signature is
    computed, outside it: ``X-Amz-Security-Token`` is sent but not in ``SignedHeaders``,
    and a presigned URL carries it after ``X-Amz-Signature``. A few endpoints require
    that, among them AWS IoT's device gateway for MQTT over WebSocket URLs. Everywhere
    else leave the default, which is what every SDK does: a token inside the signature
    cannot be swapped in transit.

    :meth:`presign` returns a URL that carries its signature in the query string and is
    valid for up to seven days.

    Per-attempt work is kept small: the signing key is derived once per secret and day, and
    the credential scope and timestamp once per day and second; the hash of a large body is
    remembered while its request lives, for a retry. Only the last credentials object is
    remembered, by a weak reference, and the key cache holds digests of secrets, never a
    secret; none of it appears in ``repr()`` or in an error message.

    Args:
        service: The signing name of the service (``"s3"``, ``"sqs"``, ``"execute-api"``);
            see :func:`~cloudkit_trio.aws.signing_name` for services whose name differs.
        region: The region to sign for (``"us-east-1"``).
        unsigned_payload: Send ``UNSIGNED-PAYLOAD`` instead of hashing the body.
        normalize_path: Remove dot and empty segments from the signed path and encode it a
            second time, as every service but S3 expects. ``None`` (the default) decides
            by ``service``: off for the S3 family, on for the rest.
        sign_session_token: Whether ``X-Amz-Security-Token`` is covered by the signature
            (the default) or added after it.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Services outside the S3 family no longer get ``X-Amz-Content-SHA256`` unless the
       payload is unsigned; ``sign_session_token``; ``presign(body=, payload_hash=)``.
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
    sign_session_token: bool = attrs.field(
        default=True,
        kw_only=True,
        validator=attrs.validators.instance_of(bool),
        on_setattr=attrs.setters.frozen,
    )
    #: The runtime fetches credentials only for signers that need them.
    needs_credentials: ClassVar[bool] = True
    _raw_path: bool = attrs.field(init=False, default=False)
    _s3_rules: bool = attrs.field(init=False, default=False)
    _keys: dict[tuple[bytes, str], bytes] = attrs.field(init=False, factory=dict)
    # (the credentials last signed with, day, signing key, credential scope). One tuple,
    # replaced whole, so a reader never pairs one call's key with another's credentials.
    _last: tuple[weakref.ref[Credentials], str, bytes, str] | None = attrs.field(
        init=False, default=None
    )
    # (the second or the `now` last signed at, its timestamp)
    _stamp: tuple[int | dt.datetime, str] | None = attrs.field(init=False, default=None)
    _hashes: weakref.WeakKeyDictionary[httpx.Request, tuple[bytes, str]] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary
    )

    def __attrs_post_init__(self) -> None:
        self._s3_rules = uses_s3_rules(self.service)
        if self.normalize_path is None:
            self._raw_path = self._s3_rules
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
        timestamp = self._timestamp(now)
        credentials, key, scope = self._prepare(credentials, timestamp[:8])

        path, query = self._rewrite_url(request)
        headers = request.headers
        items = headers.multi_items()
        # Headers a previous signing set: left out of this signature, then overwritten
        # below or, if this signing sets no such header, removed.
        stale = {name for name, _ in items if name in _SIGNER_HEADERS}
        if stale:
            items = [item for item in items if item[0] not in _SIGNER_HEADERS]
        if not any(name == "host" for name, _ in items):
            host = request.url.netloc.decode("ascii")
            headers["Host"] = host
            items.append(("host", host))

        headers["X-Amz-Date"] = timestamp
        items.append(("x-amz-date", timestamp))
        token = credentials.session_token
        if token is not None and self.sign_session_token:
            headers["X-Amz-Security-Token"] = token
            items.append(("x-amz-security-token", token))
        payload_hash = self._payload_hash(request)
        hash_header = self._s3_rules or payload_hash == UNSIGNED_PAYLOAD
        if hash_header:
            headers["X-Amz-Content-SHA256"] = payload_hash
            items.append(("x-amz-content-sha256", payload_hash))
        elif "x-amz-content-sha256" in stale:
            del headers["X-Amz-Content-SHA256"]
        if token is None and "x-amz-security-token" in stale:
            del headers["X-Amz-Security-Token"]

        header_block, signed_headers = _canonical_headers(items)
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
        signature = _signature(key, timestamp, scope, canonical_request)
        if token is not None and not self.sign_session_token:
            headers["X-Amz-Security-Token"] = token
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
        body: bytes | None = None,
        payload_hash: str | None = None,
    ) -> str:
        """A URL that lets its holder send this one request until ``expires`` seconds pass.

        The signature travels in the query string (``X-Amz-Signature`` and friends), so the
        holder needs no credentials. ``expires`` is at most 604800 (seven days); temporary
        credentials make the URL stop working when they expire, whichever comes first.
        ``headers`` (for example ``Content-Type``) are signed too, and the request must then
        carry them unchanged.

        By default S3 URLs sign ``UNSIGNED-PAYLOAD`` and other services sign an empty body.
        To bind the URL to one body, pass the ``body`` itself or its SHA-256 as
        ``payload_hash`` (64 lowercase hex digits, or ``"UNSIGNED-PAYLOAD"``), not both;
        either is signed whatever the service and whatever ``unsigned_payload`` says, and
        the request must then send exactly that body.

        .. versionadded:: 0.1.0
        .. versionchanged:: 0.2.0
           ``body`` and ``payload_hash``.
        """
        if not isinstance(method, str) or not method:
            raise ValueError("method must be a non-empty HTTP method like 'GET'")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise TypeError(f"expires must be an int of seconds, got {type(expires).__name__}")
        if not 1 <= expires <= _MAX_EXPIRES:
            raise ValueError(
                f"expires must be between 1 and {_MAX_EXPIRES} seconds (7 days), got {expires}"
            )
        signed_payload = _presigned_payload(body, payload_hash)
        timestamp = self._timestamp(now)
        credentials, key, scope = self._prepare(credentials, timestamp[:8])
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

        auth = [
            ("X-Amz-Algorithm", _ALGORITHM),
            ("X-Amz-Credential", _encode(f"{credentials.access_key}/{scope}".encode())),
            ("X-Amz-Date", timestamp),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", _encode(signed_headers.encode())),
        ]
        token = credentials.session_token
        if token is not None and self.sign_session_token:
            auth.append(("X-Amz-Security-Token", _encode(token.encode())))
        if signed_payload is None:
            # S3 cannot know the body of a request that has not been made yet; the other
            # services sign the empty body of a query-authenticated request.
            signed_payload = (
                UNSIGNED_PAYLOAD if self.unsigned_payload or self._s3_rules else EMPTY_SHA256
            )
        canonical_request = "\n".join(
            (
                method.upper(),
                self._canonical_path(path.decode("ascii")),
                _canonical_query([*existing, *auth]),
                header_block,
                signed_headers,
                signed_payload,
            )
        )
        signature = _signature(key, timestamp, scope, canonical_request)
        query = "&".join(f"{name}={value}" for name, value in [*existing, *auth])
        url_text = f"{target.scheme}://{host}{path.decode('ascii')}?{query}"
        url_text += f"&X-Amz-Signature={signature}"
        if token is not None and not self.sign_session_token:
            url_text += f"&X-Amz-Security-Token={_encode(token.encode())}"
        return url_text

    def _rewrite_url(self, request: httpx.Request) -> tuple[str, list[tuple[str, str | None]]]:
        """Put the path and query in AWS's encoding; return them as they will be sent."""
        raw = request.url.raw_path
        raw_path, question, raw_query = raw.partition(b"?")
        path = _encode_path(raw_path)
        query = _encode_query(raw_query) if question else []
        target = path
        if query:
            target += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in query)
        encoded = target.encode("ascii")
        if encoded != raw:
            request.url = request.url.copy_with(raw_path=encoded)
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
        if not body:
            return EMPTY_SHA256
        if len(body) < _REUSE_HASH_FROM:
            return hashlib.sha256(body).hexdigest()
        # Keyed by the request and checked against the very bytes object hashed (bytes are
        # immutable), so new content on the same request is hashed anew. The entry goes
        # with the request: the body is never kept alive past it.
        known = self._hashes.get(request)
        if known is not None and known[0] is body:
            return known[1]
        digest = hashlib.sha256(body).hexdigest()
        self._hashes[request] = (body, digest)
        return digest

    def _timestamp(self, now: dt.datetime | None) -> str:
        """``now`` (default: the current time) as SigV4's UTC timestamp."""
        # Formatting a time costs more than the rest of the date handling together, and
        # requests come many to a second.
        moment: int | dt.datetime = int(time.time()) if now is None else _check_now(now)
        last = self._stamp
        if last is not None and last[0] == moment:
            return last[1]
        if isinstance(moment, int):
            when = dt.datetime.fromtimestamp(moment, dt.UTC)
        else:
            when = moment.astimezone(dt.UTC)
        timestamp = when.strftime(_TIMESTAMP)
        self._stamp = (moment, timestamp)
        return timestamp

    def _prepare(self, credentials: object, day: str) -> tuple[Credentials, bytes, str]:
        """Checked credentials, their signing key for ``day``, and the credential scope."""
        last = self._last
        if last is not None and last[1] == day:
            seen = last[0]()
            # The same frozen object as last time: checked then, and the same secret.
            if seen is not None and seen is credentials:
                return seen, last[2], last[3]
        checked = _check_credentials(credentials)
        scope = f"{day}/{self.region}/{self.service}/{_TERMINATOR}"
        key = self._signing_key(checked.secret_key, day)
        self._last = (weakref.ref(checked), day, key, scope)
        return checked, key, scope

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
            f"unsigned_payload={self.unsigned_payload}, normalize_path={not self._raw_path}, "
            f"sign_session_token={self.sign_session_token})"
        )


def _signature(key: bytes, timestamp: str, scope: str, canonical_request: str) -> str:
    string_to_sign = (
        f"{_ALGORITHM}\n{timestamp}\n{scope}\n"
        f"{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    )
    return hmac.digest(key, string_to_sign.encode("utf-8"), "sha256").hex()
