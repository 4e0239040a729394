"""One HTTP GET of a JSON credentials document, with every failure turned into a typed error.

The credential endpoints (Vault, the container credentials endpoint) are asked rarely, once
per lease, so each fetch uses its own short-lived client: no connection pool outlives it and
no provider needs closing. An injected transport belongs to the caller and is not closed.

Every request carries a token, so none goes through a proxy named by the environment
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``): a proxy would read the token in clear
text, and botocore's container fetcher ignores them for the same reason. An error body is
masked before any of it reaches a message, since servers quote the token they were sent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Mapping
from typing import Final

import httpx
import trio

from .._errors import (
    CloudError,
    InsufficientPermissions,
    InvalidCredentials,
    OperationTimeout,
    SerializationError,
    TokenRefreshFailed,
)
from .._masking import escape_controls, is_secret_name, mask_text
from ..transport._classify import error_from_exception

__all__ = [
    "BorrowedTransport",
    "fetch_json",
    "header_safe",
    "is_loopback",
    "optional_text",
    "required_text",
]

# Credential documents are a few hundred bytes; anything this big is not one.
_MAX_BODY: Final = 64 * 1024
_MAX_DETAIL: Final = 200


class BorrowedTransport(httpx.AsyncBaseTransport):
    """Lends a caller's transport to a short-lived client without letting it close it."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        pass  # the owner closes it


def _status_error(source: str, status: int, detail: str) -> CloudError:
    message = f"{source} answered HTTP {status}" + (f": {detail}" if detail else "")
    error: CloudError
    if status == 401:
        error = InvalidCredentials(message + "; check the token it was sent")
    elif status == 403:
        error = InsufficientPermissions(message + "; the token is not allowed to read these")
    elif status == 429 or status >= 500:
        error = TokenRefreshFailed(message + "; the source is unwell, try again later")
    else:
        error = InvalidCredentials(message)
    error.status_code = status
    return error


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as :attr:`httpx.URL.host` gives it) names this machine: plain
    http to it cannot be read on the network."""
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _detail(body: bytes, secrets: list[str]) -> str:
    """A short, masked reason from an error body: Vault's ``errors`` or AWS's ``message``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    reasons: list[str] = []
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list):
            reasons.extend(item for item in errors if isinstance(item, str))
        for key in ("message", "Message"):
            value = document.get(key)
            if isinstance(value, str):
                reasons.append(value)
    # Masked before it is cut short: a token cut in half would no longer be recognised.
    text = escape_controls(mask_text("; ".join(reasons), secrets))
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


async def fetch_json(
    source: str,
    url: str,
    *,
    headers: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None,
    http_timeout: float,
) -> tuple[dict[str, object], dt.datetime]:
    """GET ``url`` and return its JSON object and the time the response arrived.

    ``source`` names the endpoint in every error (and must itself hold no secret):
    unreachable or too slow → :class:`~cloudkit_trio.TokenRefreshFailed` (the network error
    as its cause); 401 and other 4xx → :class:`~cloudkit_trio.InvalidCredentials`; 403 →
    :class:`~cloudkit_trio.InsufficientPermissions`; 429 and 5xx →
    :class:`~cloudkit_trio.TokenRefreshFailed`; a body that is not a JSON object →
    :class:`~cloudkit_trio.SerializationError`.
    """
    secrets = [value for name, value in headers.items() if is_secret_name(name)]
    # The transport is built here rather than by the client: a client with trust_env
    # builds one with the environment's proxies, and without trust_env the transport it
    # builds would forget SSL_CERT_FILE and SSL_CERT_DIR, which are a trust decision the
    # user made, not a place the token goes.
    own: httpx.AsyncBaseTransport = (
        httpx.AsyncHTTPTransport() if transport is None else BorrowedTransport(transport)
    )
    failure: CloudError | None = None
    body = bytearray()
    too_big = False
    status = 0
    # One deadline for the whole exchange: httpx's timeouts are per read, so a peer that
    # trickles bytes forever would otherwise never time out.
    with trio.move_on_after(http_timeout) as deadline:
        async with httpx.AsyncClient(
            transport=own, timeout=http_timeout, follow_redirects=False, trust_env=False
        ) as client:
            try:
                async with client.stream("GET", url, headers=headers) as response:
                    status = response.status_code
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > _MAX_BODY:
                        too_big = True
                    else:
                        # The loop always runs to the end: leaving it early would abandon
                        # httpx's stream generators half-way, to the garbage collector.
                        async for chunk in response.aiter_bytes():
                            if too_big or len(body) + len(chunk) > _MAX_BODY:
                                too_big = True
                            else:
                                body += chunk
            except httpx.HTTPError as exc:
                failure = error_from_exception(exc)
    if deadline.cancelled_caught:
        failure = OperationTimeout(
            f"timed out: no complete answer within {http_timeout:g} s", timeout=http_timeout
        )
    if failure is not None:
        # Raised outside the handler so that httpx's exception, whose text may quote the
        # request, is reachable only through the scrubbed error kept as the cause.
        reason = mask_text(str(failure), secrets)
        raise TokenRefreshFailed(f"{source} could not be reached: {reason}") from failure
    arrived = dt.datetime.now(dt.UTC)
    if not 200 <= status <= 299:
        # A huge error page still says what the status says; its reason is simply lost.
        raise _status_error(source, status, "" if too_big else _detail(bytes(body), secrets))
    if too_big:
        raise SerializationError(f"{source} sent more than {_MAX_BODY} bytes")
    document = _parse(bytes(body))
    if document is None:
        raise SerializationError(f"{source} answered HTTP {status} without a JSON object")
    return document, arrived


def _parse(body: bytes) -> dict[str, object] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def required_text(document: Mapping[str, object], key: str, source: str) -> str:
    """``document[key]`` as a non-empty string, or a SerializationError naming the key only."""
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise SerializationError(f"{source} answered without a {key!r} string")
    return value


def optional_text(document: Mapping[str, object], key: str, source: str) -> str | None:
    """``document[key]`` as a string, None when absent, null or empty."""
    value = document.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SerializationError(f"{source} answered with a {key!r} that is not a string")
    return value


def header_safe(value: object) -> bool:
    """Whether ``value`` can be sent as an HTTP header value as it is."""
    return isinstance(value, str) and bool(value) and value.isascii() and value.isprintable()
