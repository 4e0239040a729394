"""The one boundary where HTTP responses and httpx exceptions become :class:`CloudError`.

Two functions, one table each: :func:`error_from_response` reads the status, the
``Retry-After`` header and the provider's own error code (an AWS XML or JSON body, Azure's
``x-ms-error-code`` header, a GCP JSON ``error.status``); :func:`error_from_exception`
translates httpx's exception classes. A test pins both tables against httpx's exception
list and every status class.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeAlias, Unpack

import attrs
import httpx

from .. import _errors as e
from .._errors import CloudError, ErrorContext, SerializationError
from .._masking import MASK, escape_controls, is_secret_name, mask_text
from .._xml import Element, parse_xml

__all__ = [
    "ProviderCode",
    "describe_refused_header",
    "error_from_exception",
    "error_from_response",
    "parse_provider_code",
    "parse_retry_after",
    "scrub",
]

# Text from a server is masked whole and only then cut to these lengths: a cut first could
# leave a piece of a secret that masking would no longer recognise. (Masking takes linear
# time, and error bodies past _MAX_ERROR_BODY are not read for a message at all.)
_MAX_MESSAGE: Final = 300
_MAX_CODE: Final = 128
# Bodies bigger than this are not parsed for an error code: error documents are small.
_MAX_ERROR_BODY: Final = 64 * 1024

_Factory: TypeAlias = Callable[[str, int, str | None, float | None], CloudError]


@attrs.frozen
class ProviderCode:
    """The provider's own error code and message, as parsed from a response."""

    code: str | None = None
    message: str | None = None


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP-date); None if absent or bad.

    A date in the past means "now": ``0.0``.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        current = now if now is not None else dt.datetime.now(dt.UTC)
        return max((when - current).total_seconds(), 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _text(element: Element | None) -> str | None:
    if element is None:
        return None
    return element.text.strip() or None


def _from_xml(body: bytes) -> ProviderCode | None:
    try:
        root = parse_xml(body, what="error")
    except SerializationError:
        return None
    # S3 answers <Error><Code/>; other AWS query APIs and Azure wrap it in <ErrorResponse>.
    error = (
        root
        if root.tag.endswith("Error")
        else next((element for element in root.iter() if element.tag == "Error"), None)
    )
    if error is None:
        return None
    code = _text(error.find("Code"))
    message = _text(error.find("Message"))
    return ProviderCode(code, message) if code or message else None


def _from_json(body: bytes) -> ProviderCode | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, dict):
        # GCP: {"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}; Azure
        # management APIs: {"error": {"code": "ResourceNotFound", "message": "..."}}.
        status = error.get("status")
        code = status if isinstance(status, str) else error.get("code")
        message = error.get("message")
        return ProviderCode(
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    # AWS JSON protocols: {"__type": "com.amazon#ThrottlingException", "message": "..."}.
    kind = document.get("__type") or document.get("code")
    message = document.get("message") or document.get("Message")
    if isinstance(kind, str):
        return ProviderCode(kind.rsplit("#", 1)[-1], message if isinstance(message, str) else None)
    return None


def parse_provider_code(headers: Mapping[str, str], body: bytes) -> ProviderCode:
    """Find the provider's error code and message in a response's headers and body."""
    lowered = {k.lower(): v for k, v in headers.items()}
    header_code = lowered.get("x-ms-error-code") or lowered.get("x-amzn-errortype")
    if header_code:
        header_code = header_code.split(":", 1)[0].strip()
    parsed: ProviderCode | None = None
    if body and len(body) <= _MAX_ERROR_BODY:
        stripped = body.lstrip()
        if stripped.startswith(b"<"):
            parsed = _from_xml(stripped)
        elif stripped.startswith(b"{"):
            parsed = _from_json(stripped)
    code = header_code or (parsed.code if parsed else None)
    message = parsed.message if parsed else None
    return ProviderCode(code, message)


def _not_found(message: str, status: int, code: str | None, _after: float | None) -> CloudError:
    return e.NotFound(message)


def _exists(message: str, status: int, code: str | None, _after: float | None) -> CloudError:
    return e.AlreadyExists(message)


def _simple(kind: type[CloudError]) -> _Factory:
    def build(message: str, status: int, code: str | None, _after: float | None) -> CloudError:
        return kind(message)

    return build


def _rate_limited(message: str, status: int, code: str | None, after: float | None) -> CloudError:
    return e.RateLimited(message, retry_after=after)


def _unavailable(message: str, status: int, code: str | None, after: float | None) -> CloudError:
    return e.ServiceUnavailable(message, retry_after=after)


def _timeout(message: str, status: int, code: str | None, _after: float | None) -> CloudError:
    return e.OperationTimeout(message)


# Provider codes win over the status: S3 answers ExpiredToken with 400 and SlowDown with 503.
_BY_CODE: Final[Mapping[str, _Factory]] = {
    **dict.fromkeys(
        (
            "NoSuchKey",
            "NoSuchBucket",
            "NoSuchUpload",
            "NoSuchVersion",
            "NotFound",
            "ResourceNotFoundException",
            "BlobNotFound",
            "ContainerNotFound",
            "ResourceNotFound",
            "NOT_FOUND",
        ),
        _not_found,
    ),
    **dict.fromkeys(
        (
            "BucketAlreadyExists",
            "BucketAlreadyOwnedByYou",
            "ContainerAlreadyExists",
            "BlobAlreadyExists",
            "ResourceAlreadyExists",
            "ResourceInUseException",
            "ALREADY_EXISTS",
        ),
        _exists,
    ),
    **dict.fromkeys(
        ("ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "RequestExpired"),
        _simple(e.ExpiredCredentials),
    ),
    **dict.fromkeys(
        (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "InvalidToken",
            "AuthenticationFailed",
            "UNAUTHENTICATED",
        ),
        _simple(e.InvalidCredentials),
    ),
    **dict.fromkeys(
        (
            "AccessDenied",
            "AccessDeniedException",
            "AuthorizationFailure",
            "AuthorizationPermissionMismatch",
            "PERMISSION_DENIED",
        ),
        _simple(e.InsufficientPermissions),
    ),
    # botocore's throttling codes, plus Azure's and GCP's.
    **dict.fromkeys(
        (
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestThrottledException",
            "TooManyRequestsException",
            "ProvisionedThroughputExceededException",
            "TransactionInProgressException",
            "RequestLimitExceeded",
            "BandwidthLimitExceeded",
            "LimitExceededException",
            "RequestThrottled",
            "SlowDown",
            "PriorRequestNotComplete",
            "EC2ThrottledException",
            "ServerBusy",
            "RESOURCE_EXHAUSTED",
        ),
        _rate_limited,
    ),
    **dict.fromkeys(("ServiceUnavailable", "UNAVAILABLE"), _unavailable),
    **dict.fromkeys(
        ("RequestTimeout", "RequestTimeoutException", "OperationTimedOut", "DEADLINE_EXCEEDED"),
        _timeout,
    ),
    **dict.fromkeys(
        ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"),
        _simple(e.ValidationError),
    ),
}

_BY_STATUS: Final[Mapping[int, _Factory]] = {
    400: _simple(e.ValidationError),
    401: _simple(e.InvalidCredentials),
    403: _simple(e.InsufficientPermissions),
    404: _not_found,
    408: _timeout,
    409: _exists,
    422: _simple(e.ValidationError),
    429: _rate_limited,
    503: _unavailable,
}


def _message(status: int, reason: str, parsed: ProviderCode, secrets: Iterable[str]) -> str:
    # Servers echo what they were sent: gateways quote the signature, Vault its token. Each
    # part is masked on its own, so `SignatureDoesNotMatch: <message>` does not read as a
    # secret named SignatureDoesNotMatch.
    reason, code, detail = (
        mask_text(part, secrets) if part else "" for part in (reason, parsed.code, parsed.message)
    )
    head = f"HTTP {status}" + (f" {reason}" if reason else "")
    if code and detail:
        text = f"{head}: {code}: {detail}"
    elif code or detail:
        text = f"{head}: {code or detail}"
    else:
        text = head
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    reason: str = "",
    now: dt.datetime | None = None,
    secrets: Iterable[str] = (),
    **context: Unpack[ErrorContext],
) -> CloudError | None:
    """The error a response stands for, or None for 1xx/2xx.

    The provider's code (when the response carries one) decides first, then the status:
    400/422 validation, 401 invalid credentials, 403 insufficient permissions, 404 not
    found, 408 timeout, 409 already exists, 429 rate limited, 503 service unavailable,
    other 5xx :class:`~cloudkit_trio.ProviderError` (retryable), anything else a
    non-retryable :class:`~cloudkit_trio.ProviderError`. ``Retry-After`` fills
    ``retry_after``. Only the provider's short message is kept, never the body, and it is
    masked (:func:`~cloudkit_trio._masking.mask_text`), as is the code: error bodies can
    echo signatures and tokens. ``secrets`` are the request's own secret values (see
    :func:`~cloudkit_trio._masking.secret_values`), masked wherever they are echoed.
    """
    if status < 300:
        return None
    secrets = tuple(secrets)
    parsed = parse_provider_code(headers, body)
    message = _message(status, reason, parsed, secrets)
    retry_after = parse_retry_after(
        next((v for k, v in headers.items() if k.lower() == "retry-after"), None), now=now
    )
    factory = _BY_CODE.get(parsed.code) if parsed.code else None
    if factory is None:
        factory = _BY_STATUS.get(status)
    # The code is matched as sent, but kept (metric labels, log lines) only masked.
    code = mask_text(parsed.code, secrets)[:_MAX_CODE] if parsed.code else None
    if factory is not None:
        error = factory(message, status, code, retry_after)
    else:
        error = e.ProviderError(message, status=status, code=code)
    error.status_code = status
    error.code = code
    error.add_context(**context)
    return error


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# Query parameters of presigned URLs that must never reach a message.
_SECRET_PARAMS: Final = re.compile(
    r"(?i)\b(x-amz-signature|x-amz-security-token|x-amz-credential|signature|sig|token)=[^&\s'\"]+"
)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with secret-looking query parameters (signatures, tokens, the credential
    scope) and everything :func:`~cloudkit_trio._masking.mask_text` finds masked."""
    return mask_text(_SECRET_PARAMS.sub(lambda match: f"{match.group(1)}={MASK}", text), secrets)


# h11 (under both transports) quotes the whole value it refuses, a token included.
_REFUSED_VALUE: Final = re.compile(
    r"""Illegal header value (?:b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")"""
)
# What HTTP forbids in a field value besides the obvious: any control but TAB.
_FORBIDDEN_IN_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_QUOTED_VALUE: Final = 60


def describe_refused_header(name: str | None, value: str | None = None) -> str:
    """Why a header value cannot be sent, naming the header and never quoting a secret.

    The value of a header whose name is secret (``Authorization``, a token) is never
    shown; another header's value is shown masked and escaped, cut short.
    """
    what = (
        f"the value of the header {escape_controls(name)!r}"
        if name is not None
        else "a header value"
    )
    text = f"{what} contains CR, LF, NUL or another control character HTTP forbids"
    if name is None or value is None or is_secret_name(name):
        shown = "the value is not shown: it may hold a secret"
    else:
        quoted = escape_controls(mask_text(value))
        if len(quoted) > _MAX_QUOTED_VALUE:
            quoted = quoted[: _MAX_QUOTED_VALUE - 3] + "..."
        shown = f"value '{quoted}'"
    return (
        f"{text} ({shown}); fix where it comes from: the credential source, the signer "
        "or the operation's headers"
    )


def _refused_header(text: str, headers: Mapping[str, str] | None) -> str:
    if not _REFUSED_VALUE.search(text):
        return text
    bad = [
        (name, value)
        for name, value in (headers or {}).items()
        if _FORBIDDEN_IN_VALUE.search(value)
    ]
    name, value = bad[0] if len(bad) == 1 else (None, None)
    return _REFUSED_VALUE.sub(lambda _match: describe_refused_header(name, value), text)


_Translate: TypeAlias = Callable[[Exception, str], CloudError]


def _connect_error(exc: Exception, text: str) -> CloudError:
    if _caused_by(exc, socket.gaierror):
        return e.DNSError(f"could not resolve the endpoint's host: {text}")
    if _caused_by(exc, ssl.SSLError):
        return e.TLSError(f"TLS handshake failed: {text}")
    return e.ConnectError(f"could not connect: {text}")


def _status_error(exc: Exception, text: str) -> CloudError:
    assert isinstance(exc, httpx.HTTPStatusError)
    response = exc.response
    error = error_from_response(
        response.status_code, response.headers, response.content, reason=response.reason_phrase
    )
    return error if error is not None else e.InternalError(f"not an error status: {text}")


def _fixed(build: Callable[[str], CloudError]) -> _Translate:
    return lambda _exc, text: build(text)


# One entry per httpx exception class, the abstract bases included: a class that httpx adds
# later fails the completeness test instead of being mapped silently through a base.
_BY_EXCEPTION: Final[Mapping[type[Exception], _Translate]] = {
    httpx.HTTPError: _fixed(lambda t: e.NetworkError(f"HTTP request failed: {t}")),
    httpx.RequestError: _fixed(lambda t: e.NetworkError(f"HTTP request failed: {t}")),
    httpx.TransportError: _fixed(lambda t: e.NetworkError(f"transport failed: {t}")),
    httpx.TimeoutException: _fixed(lambda t: e.OperationTimeout(f"timed out: {t}")),
    httpx.ConnectTimeout: _fixed(lambda t: e.ConnectError(f"timed out connecting: {t}")),
    httpx.ReadTimeout: _fixed(
        lambda t: e.OperationTimeout(f"timed out waiting for the response: {t}")
    ),
    httpx.WriteTimeout: _fixed(lambda t: e.OperationTimeout(f"timed out sending the request: {t}")),
    httpx.PoolTimeout: _fixed(
        lambda t: e.OperationTimeout(
            f"timed out waiting for a free connection: {t}", request_sent=False
        )
    ),
    httpx.NetworkError: _fixed(lambda t: e.ConnectionReset(f"network failure: {t}")),
    httpx.ConnectError: _connect_error,
    httpx.ReadError: _fixed(
        lambda t: e.ConnectionReset(f"connection broke while reading the response: {t}")
    ),
    httpx.WriteError: _fixed(
        lambda t: e.ConnectionReset(f"connection broke while sending the request: {t}")
    ),
    httpx.CloseError: _fixed(lambda t: e.ConnectionReset(f"closing the connection failed: {t}")),
    httpx.ProxyError: _fixed(lambda t: e.ConnectError(f"the proxy refused the request: {t}")),
    httpx.UnsupportedProtocol: _fixed(
        lambda t: e.ConfigError(f"unsupported URL scheme; use http:// or https:// ({t})")
    ),
    httpx.ProtocolError: _fixed(lambda t: e.ProtocolError(f"HTTP protocol violation: {t}")),
    httpx.RemoteProtocolError: _fixed(
        lambda t: e.ProtocolError(f"the server broke the HTTP protocol: {t}")
    ),
    httpx.LocalProtocolError: _fixed(
        lambda t: e.ValidationError(f"the request is not valid HTTP: {t}")
    ),
    httpx.DecodingError: _fixed(
        lambda t: e.SerializationError(f"the response body could not be decoded: {t}")
    ),
    httpx.TooManyRedirects: _fixed(
        lambda t: e.ProviderError(f"too many redirects: {t}", code="TooManyRedirects")
    ),
    httpx.HTTPStatusError: _status_error,
    httpx.InvalidURL: _fixed(lambda t: e.ConfigError(f"invalid URL: {t}")),
    httpx.CookieConflict: _fixed(lambda t: e.InternalError(f"cookie conflict: {t}")),
    httpx.StreamError: _fixed(lambda t: e.InternalError(f"request/response stream misuse: {t}")),
    httpx.StreamConsumed: _fixed(lambda t: e.InternalError(f"stream already consumed: {t}")),
    httpx.StreamClosed: _fixed(lambda t: e.InternalError(f"stream already closed: {t}")),
    httpx.ResponseNotRead: _fixed(lambda t: e.InternalError(f"response not read: {t}")),
    httpx.RequestNotRead: _fixed(lambda t: e.InternalError(f"request not read: {t}")),
}


def error_from_exception(
    exc: Exception,
    *,
    secrets: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    **context: Unpack[ErrorContext],
) -> CloudError:
    """Translate an exception raised by httpx (or a transport) into a :class:`CloudError`.

    A :class:`CloudError` passes through unchanged (context filled in); an exception that
    is not httpx's becomes :class:`~cloudkit_trio.InternalError`. The original is kept
    as ``__cause__`` by the caller's ``raise ... from``; messages have signatures and
    tokens masked, ``secrets`` (the request's own) included. A header value refused for
    a CR/LF/NUL is never quoted; ``headers`` (the request's) lets the message name it.
    """
    if isinstance(exc, CloudError):
        error = exc
    else:
        text = scrub(_refused_header(str(exc), headers), secrets) or type(exc).__name__
        for cls in type(exc).__mro__:
            translate = _BY_EXCEPTION.get(cls)
            if translate is not None:
                error = translate(exc, text)
                break
        else:
            error = e.InternalError(f"unexpected {type(exc).__name__}: {text}")
    error.add_context(**context)
    return error
