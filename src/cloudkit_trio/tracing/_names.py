"""The names of the spans' events and of the attributes that are the runtime's own.

The other attributes follow OpenTelemetry's semantic conventions (HTTP client spans, RPC,
cloud); these are the ones the conventions have no name for, under ``cloudkit.``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SpanAttribute", "SpanEvent"]


class SpanEvent:
    """The events on an operation's span: the decisions the runtime made about it.

    .. versionadded:: 0.2.0
    """

    #: A retry was scheduled: ``cloudkit.retry.delay`` (seconds), ``error.type``,
    #: ``cloudkit.attempt`` (the attempt that failed).
    RETRY: Final = "cloudkit.retry"
    #: The retry policy wanted a retry; the endpoint's retry budget refused it.
    RETRY_SUPPRESSED: Final = "cloudkit.retry_suppressed"
    #: An open breaker refused the attempt without sending it (``CircuitOpenError``);
    #: ``cloudkit.breaker.retry_in`` says when it admits a probe.
    CIRCUIT_OPEN: Final = "cloudkit.circuit_open"
    #: The client's rate limit refused the attempt (``Throttled``).
    THROTTLED: Final = "cloudkit.throttled"
    #: Less time was left than the endpoint's recent latency: refused unsent
    #: (``OperationTimeout(waiting_for="admission")``).
    SHED: Final = "cloudkit.shed"
    #: The endpoint's adaptive concurrency limit was full (``Overloaded``).
    OVERLOADED: Final = "cloudkit.overloaded"
    #: The endpoint rejected the credentials as expired; they were refreshed and the
    #: request sent again.
    CREDENTIALS_REFRESH: Final = "cloudkit.credentials_refresh"

    #: Every event name.
    ALL: Final = (
        RETRY,
        RETRY_SUPPRESSED,
        CIRCUIT_OPEN,
        THROTTLED,
        SHED,
        OVERLOADED,
        CREDENTIALS_REFRESH,
    )


class SpanAttribute:
    """The runtime's own attributes (besides the semantic conventions' ones).

    .. versionadded:: 0.2.0
    """

    #: On the operation's span: ``success``, ``failure``, ``retry_suppressed`` or
    #: ``cancelled``.
    OUTCOME: Final = "cloudkit.outcome"
    #: On the operation's span: the attempts sent.
    ATTEMPTS: Final = "cloudkit.attempts"
    #: On an attempt's span and on events: the attempt's number, from 1.
    ATTEMPT: Final = "cloudkit.attempt"
    #: On a retry event: the backoff before the next attempt, in seconds.
    RETRY_DELAY: Final = "cloudkit.retry.delay"
    #: On a circuit-open event: seconds until the breaker admits a probe.
    BREAKER_RETRY_IN: Final = "cloudkit.breaker.retry_in"
