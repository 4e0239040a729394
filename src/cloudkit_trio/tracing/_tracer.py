"""The OpenTelemetry tracer behind ``CloudContextBuilder.tracing()``.

It implements the runtime's tracing hooks (``cloudkit_trio.runtime._tracing``): one span
per operation, a CLIENT span per attempt under it, and the runtime's decisions as events
on the operation's span. Timestamps come from Trio's clock (``trio.current_time()``),
placed on the wall clock when the operation's span starts: it nests under the caller's
span (which the SDK times by the wall clock), and within it the durations are the ones
the runtime measured and waited — under ``MockClock``, the times a test asked for.

What it is given is already free of secrets: no headers, no bodies, no error messages,
URLs without their query string and user-info. It records nothing else.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Final

import trio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._provider import ProviderType
from ..runtime._tracing import CURRENT, DecisionKind
from ._names import SpanAttribute, SpanEvent

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from ..runtime._tracing import (
        AttemptEnd,
        Decision,
        OperationEnd,
        OperationStart,
    )

__all__ = ["INSTRUMENTATION_SCOPE", "OpenTelemetryTracing"]

#: The instrumentation scope (the tracer's name) of every span the runtime records.
INSTRUMENTATION_SCOPE: Final = "cloudkit_trio"

# The semantic conventions' cloud.provider values.
_CLOUD_PROVIDERS: Final = {
    ProviderType.AWS: "aws",
    ProviderType.AZURE: "azure",
    ProviderType.GCP: "gcp",
    ProviderType.ORACLE: "oracle_cloud",
}
# The conventions' rpc.system for the APIs they name.
_RPC_SYSTEMS: Final = {ProviderType.AWS: "aws-api"}
# HTTP methods the conventions know; any other is recorded as _OTHER.
_KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_EVENTS: Final = {
    DecisionKind.RETRY: SpanEvent.RETRY,
    DecisionKind.RETRY_SUPPRESSED: SpanEvent.RETRY_SUPPRESSED,
    DecisionKind.CIRCUIT_OPEN: SpanEvent.CIRCUIT_OPEN,
    DecisionKind.THROTTLED: SpanEvent.THROTTLED,
    DecisionKind.SHED: SpanEvent.SHED,
    DecisionKind.OVERLOADED: SpanEvent.OVERLOADED,
    DecisionKind.CREDENTIALS_REFRESH: SpanEvent.CREDENTIALS_REFRESH,
}


def _library_version() -> str | None:
    try:
        return version("cloudkit-trio")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return None


class OpenTelemetryTracing:
    """What the builder keeps: the provider to trace with (None: the global one)."""

    __slots__ = ("_provider",)

    def __init__(self, tracer_provider: trace.TracerProvider | None) -> None:
        self._provider = tracer_provider

    def open(self) -> _Tracer:
        # With no provider, get_tracer follows the global one, even one set later.
        tracer = trace.get_tracer(
            INSTRUMENTATION_SCOPE, _library_version(), tracer_provider=self._provider
        )
        return _Tracer(tracer)

    def __repr__(self) -> str:
        provider = "global" if self._provider is None else type(self._provider).__name__
        return f"<OpenTelemetryTracing provider={provider}>"


class _Tracer:
    """One run's tracer."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def capture(self) -> object:
        return otel_context.get_current()

    def start_operation(self, start: OperationStart) -> _OperationSpan:
        operation = start.operation
        if start.parent is CURRENT:
            parent: otel_context.Context | None = None  # the caller's, on this task
        elif isinstance(start.parent, otel_context.Context):
            parent = start.parent
        else:
            parent = otel_context.Context()  # captured nothing: a root span
        attributes: dict[str, AttributeValue] = {
            "rpc.service": operation.service,
            "rpc.method": operation.name,
            "cloud.provider": _CLOUD_PROVIDERS[start.provider],
            "server.address": start.host,
        }
        system = _RPC_SYSTEMS.get(start.provider)
        if system is not None:
            attributes["rpc.system"] = system
        if start.region:
            attributes["cloud.region"] = start.region
        if start.port is not None:
            attributes["server.port"] = start.port
        # Where Trio's clock stands on the wall clock now: re-read for every operation, so
        # the two drifting apart over a long run never shows.
        epoch = time.time_ns() - round(trio.current_time() * 1e9)
        span = self._tracer.start_span(
            f"{operation.service}.{operation.name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=epoch + round(start.at * 1e9),
        )
        return _OperationSpan(self._tracer, span, start, epoch)


class _OperationSpan:
    """One operation's span; it starts its attempts' spans and records decisions."""

    __slots__ = ("_attempts", "_context", "_epoch", "_span", "_start", "_tracer")

    def __init__(
        self, tracer: trace.Tracer, span: trace.Span, start: OperationStart, epoch: int
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._start = start
        self._epoch = epoch
        self._context = trace.set_span_in_context(span)
        self._attempts = 0

    def ns(self, at: float) -> int:
        """A Trio time as the wall-clock nanoseconds OpenTelemetry timestamps are in."""
        return self._epoch + round(at * 1e9)

    def start_attempt(self, at: float) -> _AttemptSpan:
        start = self._start
        method = start.method if start.method in _KNOWN_METHODS else "_OTHER"
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "server.address": start.host,
            "url.full": start.url,
            SpanAttribute.ATTEMPT: self._attempts + 1,
        }
        if method == "_OTHER":
            attributes["http.request.method_original"] = start.method
        if start.port is not None:
            attributes["server.port"] = start.port
        if self._attempts:
            attributes["http.request.resend_count"] = self._attempts
        self._attempts += 1
        span = self._tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self.ns(at),
        )
        return _AttemptSpan(self, span)

    def decision(self, decision: Decision) -> None:
        attributes: dict[str, AttributeValue] = {}
        attempt = decision.attempt if decision.attempt is not None else self._attempts
        if attempt:
            attributes[SpanAttribute.ATTEMPT] = attempt
        if decision.error_type is not None:
            attributes["error.type"] = decision.error_type
        if decision.delay is not None:
            attributes[SpanAttribute.RETRY_DELAY] = decision.delay
        if decision.retry_at is not None:
            attributes[SpanAttribute.BREAKER_RETRY_IN] = max(decision.retry_at - decision.at, 0.0)
        self._span.add_event(_EVENTS[decision.kind], attributes, timestamp=self.ns(decision.at))

    def end(self, end: OperationEnd) -> None:
        span = self._span
        span.set_attribute(SpanAttribute.OUTCOME, end.outcome)
        span.set_attribute(SpanAttribute.ATTEMPTS, end.attempts)
        if end.status_code is not None:
            span.set_attribute("http.response.status_code", end.status_code)
        if end.error_type is not None:
            span.set_attribute("error.type", end.error_type)
            span.set_status(Status(StatusCode.ERROR, end.error_type))
        span.end(end_time=self.ns(end.at))


class _AttemptSpan:
    __slots__ = ("_operation", "_span")

    def __init__(self, operation: _OperationSpan, span: trace.Span) -> None:
        self._operation = operation
        self._span = span

    def end(self, end: AttemptEnd) -> None:
        span = self._span
        if end.status_code is not None:
            span.set_attribute("http.response.status_code", end.status_code)
        if end.error_type is not None:
            span.set_attribute("error.type", end.error_type)
            span.set_status(Status(StatusCode.ERROR, end.error_type))
        span.end(end_time=self._operation.ns(end.at))
