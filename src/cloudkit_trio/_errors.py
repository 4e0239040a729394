"""The error tree.

Every operational failure the library reports is a :class:`CloudError`::

    CloudError
    ├── AuthError
    │   ├── MissingCredentials
    │   ├── InvalidCredentials
    │   ├── ExpiredCredentials
    │   ├── InsufficientPermissions
    │   └── TokenRefreshFailed
    ├── NetworkError                 (retryable)
    │   ├── ConnectError             (the request never left: safe to retry anything)
    │   ├── DNSError                 (the request never left)
    │   ├── TLSError                 (the request never left)
    │   ├── ConnectionReset
    │   └── ProtocolError
    ├── NotFound
    ├── AlreadyExists
    ├── ValidationError
    ├── RateLimited                  (retryable, carries ``retry_after``)
    ├── ServiceUnavailable           (retryable, carries ``retry_after``)
    ├── OperationTimeout             (retryable)
    ├── ProviderError                (retryable when ``status`` is 5xx)
    ├── ConfigError                  (also a ValueError: it is raised for bad arguments)
    ├── SerializationError
    ├── ResponseTooLarge             (past ``CloudConfig.max_response_size``)
    ├── InternalError
    ├── CircuitOpenError             (rejected without a network call)
    ├── Throttled                    (a client-side rate limit had no token; nothing sent)
    ├── Overloaded                   (a bounded queue was full)
    └── ContextClosed                (the runtime is shutting down or gone)

Every error can be built from a message alone; context (provider, service, operation,
endpoint, attempt) is keyword-only and may be attached later, at the boundary that knows it,
with :meth:`CloudError.add_context`.
"""

from __future__ import annotations

from typing import ClassVar, Final, TypedDict, Unpack

import attrs

__all__ = [
    "AlreadyExists",
    "AuthError",
    "CircuitFailure",
    "CircuitOpenError",
    "CloudError",
    "ConfigError",
    "ConnectError",
    "ConnectionReset",
    "ContextClosed",
    "DNSError",
    "ExpiredCredentials",
    "InsufficientPermissions",
    "InternalError",
    "InvalidCredentials",
    "MissingCredentials",
    "NetworkError",
    "NotFound",
    "OperationTimeout",
    "Overloaded",
    "ProtocolError",
    "ProviderError",
    "RateLimited",
    "ResponseTooLarge",
    "SerializationError",
    "ServiceUnavailable",
    "TLSError",
    "Throttled",
    "TokenRefreshFailed",
    "ValidationError",
]

_CONTEXT_FIELDS: Final = ("provider", "service", "operation", "endpoint", "attempt")
# 5xx statuses that say the request itself can never succeed, however often it is sent.
_FINAL_5XX: Final = frozenset({501, 505})


class ErrorContext(TypedDict, total=False):
    """The keyword context every :class:`CloudError` accepts."""

    provider: str | None
    service: str | None
    operation: str | None
    endpoint: str | None
    attempt: int | None


class CloudError(Exception):
    """Root of every operational error raised by cloudkit_trio.

    Catch this to handle anything that went wrong talking to a cloud; misuse of the API
    (wrong argument types, invalid values) raises builtin-derived errors instead, except
    :class:`ConfigError`, which is both.

    Args:
        message: What went wrong and, where possible, what to do about it.
        provider: The provider's display name (``"aws"``), when known.
        service: The service (``"s3"``), when known.
        operation: The operation name (``"put_object"``), when known.
        endpoint: The endpoint as ``scheme://host:port``, when known.
        attempt: Which attempt (1-based) produced the error, when known.

    .. versionadded:: 0.1.0
    """

    #: Whether the default retry policies may retry this error. Subclasses override it;
    #: :class:`ProviderError` decides per status code.
    _retryable: ClassVar[bool] = False
    #: Whether the request may have reached the server. ``False`` only when it provably did
    #: not (a connect failure, a pool timeout, a rejection by an open breaker), which makes
    #: a retry safe even for a non-idempotent operation.
    request_sent: bool = True
    #: The HTTP status of the response that produced the error, when there was one.
    status_code: int | None = None
    #: The provider's own error code (``NoSuchKey``, ``SlowDown``), when there was one.
    code: str | None = None
    #: Why the runtime did not retry this error although the retry policy might have
    #: (a non-idempotent operation whose request may have reached the server), else None.
    #: Shown by ``str()``. (.. versionadded:: 0.2.0)
    not_retried: str | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        service: str | None = None,
        operation: str | None = None,
        endpoint: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.service = service
        self.operation = operation
        self.endpoint = endpoint
        self.attempt = attempt

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request may succeed."""
        return self._retryable

    def add_context(self, **context: Unpack[ErrorContext]) -> None:
        """Fill in context fields that are still unknown; never overwrite known ones."""
        for name, value in context.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def _details(self) -> list[str]:
        """Extra ``key=value`` parts for ``str()``; subclasses append their own."""
        return []

    def __str__(self) -> str:
        parts = [f"{name}={value}" for name in _CONTEXT_FIELDS if (value := getattr(self, name))]
        parts.extend(self._details())
        text = f"{self.message} ({', '.join(parts)})" if parts else self.message
        if self.not_retried is not None:
            text = f"{text}; not retried: {self.not_retried}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only context would be lost by the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[CloudError], message: str, state: dict[str, object]) -> CloudError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


# -- authentication -------------------------------------------------------------------------


class AuthError(CloudError):
    """Credentials are missing, wrong, expired or not allowed to do this.

    .. versionadded:: 0.1.0
    """


class MissingCredentials(AuthError):
    """No credentials could be found; the message says where the library looked.

    .. versionadded:: 0.1.0
    """


class InvalidCredentials(AuthError):
    """The provider rejected the credentials (HTTP 401, a bad signature, an unknown key).

    .. versionadded:: 0.1.0
    """


class ExpiredCredentials(AuthError):
    """The provider says the credentials have expired.

    The runtime answers this error by refreshing credentials once and retrying the
    operation once, whatever the retry policy says.

    .. versionadded:: 0.1.0
    """


class InsufficientPermissions(AuthError):
    """The credentials are valid but not allowed to perform the operation (HTTP 403).

    .. versionadded:: 0.1.0
    """


class TokenRefreshFailed(AuthError):
    """Fetching fresh credentials from the auth provider failed.

    .. versionadded:: 0.1.0
    """


# -- network --------------------------------------------------------------------------------


class NetworkError(CloudError):
    """The request or response was lost on the way.

    :attr:`request_sent` tells whether the request may have reached the server: ``False``
    means it provably did not (connect, DNS and TLS handshake failures), so even a
    non-idempotent operation can be retried safely.

    .. versionadded:: 0.1.0
    """

    _retryable = True


class ConnectError(NetworkError):
    """The TCP connection could not be established.

    .. versionadded:: 0.1.0
    """

    request_sent = False


class DNSError(NetworkError):
    """The endpoint's host name could not be resolved.

    .. versionadded:: 0.1.0
    """

    request_sent = False


class TLSError(NetworkError):
    """The TLS handshake failed (certificate not trusted, protocol mismatch).

    .. versionadded:: 0.1.0
    """

    request_sent = False


class ConnectionReset(NetworkError):
    """The connection broke while the request or response was in flight.

    .. versionadded:: 0.1.0
    """


class ProtocolError(NetworkError):
    """The peer broke the HTTP protocol (garbage bytes, a truncated response).

    .. versionadded:: 0.1.0
    """


# -- request outcomes -----------------------------------------------------------------------


class _ResourceError(CloudError):
    """An error about one named resource (a bucket, an object, a container)."""

    def __init__(
        self,
        message: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.resource_type = resource_type
        self.resource_id = resource_id


class NotFound(_ResourceError):
    """The resource does not exist (HTTP 404, ``NoSuchKey``, ``BlobNotFound``, ...).

    .. versionadded:: 0.1.0
    """


class AlreadyExists(_ResourceError):
    """The resource already exists or conflicts with the request (HTTP 409).

    .. versionadded:: 0.1.0
    """


class ValidationError(CloudError):
    """The provider rejected the request as malformed (HTTP 400 or 422).

    .. versionadded:: 0.1.0
    """


class _RetryAfterError(CloudError):
    """An error that may carry the server's hint for when to try again."""

    _retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, **context: Unpack[ErrorContext]
    ) -> None:
        super().__init__(message, **context)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after!r}")
        #: Seconds the server asked us to wait before retrying, or None.
        self.retry_after = retry_after

    def _details(self) -> list[str]:
        return [] if self.retry_after is None else [f"retry_after={self.retry_after:g}s"]


class RateLimited(_RetryAfterError):
    """The provider is throttling us (HTTP 429, ``SlowDown``, ``Throttling``).

    ``retry_after`` is the server's ``Retry-After`` in seconds, or None. The built-in retry
    policies never retry sooner than that.

    .. versionadded:: 0.1.0
    """


class ServiceUnavailable(_RetryAfterError):
    """The service is temporarily unavailable (HTTP 503).

    .. versionadded:: 0.1.0
    """


class OperationTimeout(CloudError):
    """An attempt or the whole operation ran out of time.

    ``timeout`` is the budget that was exceeded, in seconds, when known. ``waiting_for``
    says which wait the operation's deadline ran out in, when the runtime cut it short:
    ``"queue"``, ``"capacity"`` (the concurrency limit or the endpoint's bulkhead),
    ``"credentials"``, ``"attempt"`` (sending or reading a response), ``"backoff"`` or
    ``"body"`` (reading a streamed body). A single attempt that ran past
    ``CloudConfig.timeout`` says ``"attempt"`` too, with that ``timeout``.

    .. versionadded:: 0.1.0
    """

    _retryable = True

    def __init__(
        self,
        message: str,
        *,
        timeout: float | None = None,
        request_sent: bool = True,
        waiting_for: str | None = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.timeout = timeout
        self.request_sent = request_sent
        self.waiting_for = waiting_for

    def _details(self) -> list[str]:
        details = [] if self.timeout is None else [f"timeout={self.timeout:g}s"]
        if self.waiting_for is not None:
            details.append(f"waiting_for={self.waiting_for}")
        return details


class ProviderError(CloudError):
    """Any other error response; ``status`` is the HTTP status and ``code`` the provider's code.

    Retryable when the status is a 5xx (the server failed, not the request), except 501 Not
    Implemented and 505 HTTP Version Not Supported, which say the request can never succeed.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.status_code = status
        self.code = code

    @property
    def status(self) -> int | None:
        """The HTTP status (same as :attr:`status_code`)."""
        return self.status_code

    @property
    def retryable(self) -> bool:
        return (
            self.status is not None and 500 <= self.status <= 599 and self.status not in _FINAL_5XX
        )

    def _details(self) -> list[str]:
        details = []
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code is not None:
            details.append(f"code={self.code}")
        return details


class ConfigError(CloudError, ValueError):
    """A configuration value or argument is invalid; the message names the field and value.

    Also a :class:`ValueError`, because it is raised for bad arguments.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: object = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.field = field
        self.value = value


class SerializationError(CloudError):
    """A response body could not be parsed, or a request body could not be built.

    .. versionadded:: 0.1.0
    """


class ResponseTooLarge(CloudError):
    """A response body is larger than the runtime will hold in memory.

    Raised by :meth:`Cloud.execute() <cloudkit_trio.Cloud.execute>` and
    :meth:`StreamingResponse.aread() <cloudkit_trio.StreamingResponse.aread>` once the body
    (after decoding) would pass ``limit`` bytes, ``CloudConfig.max_response_size``; no more
    than ``limit`` bytes are ever buffered. ``size`` is the length the server declared
    (``Content-Length``), when it did. Not retryable: the same request gets the same body.
    Raise the limit, or read the body in pieces with
    :meth:`Cloud.stream() <cloudkit_trio.Cloud.stream>` and ``aiter_bytes()``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        limit: int | None = None,
        size: int | None = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.limit = limit
        self.size = size

    def _details(self) -> list[str]:
        details = [] if self.limit is None else [f"limit={self.limit}"]
        if self.size is not None:
            details.append(f"size={self.size}")
        return details


class InternalError(CloudError):
    """A bug or broken invariant inside cloudkit_trio; please report it.

    .. versionadded:: 0.1.0
    """


# -- runtime --------------------------------------------------------------------------------


@attrs.frozen
class CircuitFailure:
    """One of the failures that opened a circuit: what it was, never what it said.

    .. versionadded:: 0.2.0
    """

    #: The error's class name (``ServiceUnavailable``, ``ConnectError``).
    error: str
    #: The HTTP status, when a response was received.
    status_code: int | None
    #: The provider's error code (``SlowDown``), when it sent one.
    code: str | None
    #: When it happened (``trio.current_time()``).
    at: float

    @classmethod
    def of(cls, error: CloudError, at: float) -> CircuitFailure:
        return cls(type(error).__name__, error.status_code, error.code, at)

    def __str__(self) -> str:
        return " ".join(
            str(part) for part in (self.error, self.status_code, self.code) if part is not None
        )


class CircuitOpenError(CloudError):
    """The endpoint's circuit breaker is open: the call was rejected without a network call.

    ``retry_at`` is the ``trio.current_time()`` at which the breaker will admit a probe,
    when known. ``opened_at`` is when the circuit opened (``trio.current_time()``), and
    ``failures`` the last failures that it saw before (at most five, the latest last):
    their error types, status codes and provider codes, nothing a server said.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``opened_at`` and ``failures``.
    """

    request_sent = False

    def __init__(
        self,
        message: str,
        *,
        retry_at: float | None = None,
        opened_at: float | None = None,
        failures: tuple[CircuitFailure, ...] = (),
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.retry_at = retry_at
        self.opened_at = opened_at
        self.failures = tuple(failures)


class Throttled(CloudError):
    """The endpoint's client-side rate limit (:class:`~cloudkit_trio.RateLimit`) had no
    token for this attempt, so nothing was sent.

    Raised when the limit fails fast (``wait=False``) and no token is free, or when the
    next token would come after the operation's deadline. ``retry_after`` is the time
    one token takes to come back, in seconds. Not retried by the runtime: the limit is
    the caller's own choice.

    .. versionadded:: 0.2.0
    """

    request_sent = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class Overloaded(CloudError):
    """A bounded queue or limit was full; nothing was sent. Retry later or slow down.

    Raised by a submission when the context's queue is full (it was not accepted), and
    as the reply of an operation whose endpoint's adaptive concurrency limit
    (:class:`~cloudkit_trio.AdaptiveConcurrency`) had no free slot within ``max_wait``.
    Not retried by the runtime: a retry would meet the same limit.

    .. versionadded:: 0.1.0
    """

    request_sent = False


class ContextClosed(CloudError):
    """The runtime is shutting down or has shut down, so the operation was not completed.

    .. versionadded:: 0.1.0
    """
