"""What the runner tells a tracer, and the boundary that contains what the tracer does.

The runtime imports no tracing library. It calls a :class:`Tracer` (the OpenTelemetry one
lives in ``cloudkit_trio.tracing``) at five points of an operation's life: when it starts,
when each attempt starts and ends, when a breaker, budget or admission decision is made,
and when it ends. Every payload is a frozen record of plain values (trio times, counts,
error class names): never an exception, a header or a URL with its query string, so no
tracer can record a secret it was not given.

Without tracing the runner holds ``None`` where a :class:`TracedOperation` would be: no
record is built and no clock is read. With it, every call goes through
:class:`TracedOperation` and :class:`TracedAttempt`, which contain the tracer like any
other extension point: a tracer that raises costs that operation its trace, never its
result (``snapshot().spi_failures["tracer"]`` counts it); ``trio.Cancelled`` and
``KeyboardInterrupt`` pass through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

import attrs

from .._errors import CloudError, OperationTimeout, Throttled
from .._masking import mask_url
from .._operation import Operation
from .._provider import ProviderType
from ._flight import Wait

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._containment import Containment
    from ._flight import Flight

__all__ = [
    "CURRENT",
    "TRACER",
    "AttemptEnd",
    "AttemptTrace",
    "Decision",
    "DecisionKind",
    "OperationEnd",
    "OperationStart",
    "OperationTrace",
    "TracedAttempt",
    "TracedOperation",
    "Tracer",
    "Tracing",
    "contained_capture",
    "open_tracer",
]

#: The name tracer failures are counted under (``snapshot().spi_failures``).
TRACER: Final = "tracer"

#: The parent of an awaited operation: whatever trace context is current on its task.
CURRENT: Final = object()

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class DecisionKind:
    """The decisions a trace hears about (the OpenTelemetry events are named after them)."""

    #: A retry was scheduled after a failed attempt (``delay`` seconds of backoff).
    RETRY: Final = "retry"
    #: The policy wanted a retry; the endpoint's retry budget refused it.
    RETRY_SUPPRESSED: Final = "retry_suppressed"
    #: An open breaker refused the attempt; nothing was sent.
    CIRCUIT_OPEN: Final = "circuit_open"
    #: The client's rate limit refused the attempt (``Throttled``).
    THROTTLED: Final = "throttled"
    #: Less time was left than the endpoint's recent latency: refused unsent.
    SHED: Final = "shed"
    #: The endpoint's adaptive concurrency limit was full (``Overloaded``).
    OVERLOADED: Final = "overloaded"
    #: The endpoint rejected the credentials as expired: refreshed, and sent again.
    CREDENTIALS_REFRESH: Final = "credentials_refresh"


@attrs.frozen(kw_only=True)
class OperationStart:
    """An operation that starts: who it is, where it goes, and under which parent."""

    operation: Operation
    provider: ProviderType
    #: The region it is signed for, when one is known.
    region: str | None
    method: str
    #: The URL with its user-info masked and its query string and fragment dropped.
    url: str
    host: str
    port: int | None
    #: ``trio.current_time()`` when it was accepted (a submission) or started.
    at: float
    #: :data:`CURRENT`, a context the tracer captured (:meth:`Tracer.capture`), or None:
    #: a root.
    parent: object


@attrs.frozen(kw_only=True)
class Decision:
    """A breaker, budget, admission or credential decision about an operation."""

    kind: str
    at: float
    #: The attempts sent so far (the one that failed included); None where the runner
    #: does not count them (an open breaker, a full concurrency limit).
    attempt: int | None
    #: The class name of the error behind it, if one was.
    error_type: str | None = None
    #: A retry's backoff, in seconds.
    delay: float | None = None
    #: When an open breaker will admit a probe (``trio.current_time()``).
    retry_at: float | None = None


@attrs.frozen(kw_only=True)
class AttemptEnd:
    """How one attempt ended: its status, or the class name of its error."""

    at: float
    status_code: int | None
    error_type: str | None


@attrs.frozen(kw_only=True)
class OperationEnd:
    """How an operation ended (``outcome``: an ``OperationOutcome`` value or ``cancelled``)."""

    at: float
    outcome: str
    #: Attempts sent to the endpoint (each one a span).
    attempts: int
    status_code: int | None
    error_type: str | None


class AttemptTrace(Protocol):
    """One attempt's span."""

    def end(self, end: AttemptEnd, /) -> None: ...


class OperationTrace(Protocol):
    """One operation's span; attempts are its children, decisions its events."""

    def start_attempt(self, at: float, /) -> AttemptTrace: ...

    def decision(self, decision: Decision, /) -> None: ...

    def end(self, end: OperationEnd, /) -> None: ...


class Tracer(Protocol):
    """A tracer for one run of a context (``cloudkit_trio.tracing`` implements it)."""

    def capture(self) -> object:
        """The caller's current trace context, kept with a submission (cheap, no copy)."""
        ...

    def start_operation(self, start: OperationStart, /) -> OperationTrace: ...


class Tracing(Protocol):
    """What the builder stores: makes the :class:`Tracer` of each run of the context."""

    def open(self) -> Tracer:
        """The tracer of a run that starts now (called on the run's Trio task)."""
        ...


class TracedOperation:
    """One operation's trace, contained: every call into the tracer is guarded."""

    __slots__ = ("_containment", "_sent", "_trace")

    def __init__(self, trace: OperationTrace, containment: Containment) -> None:
        self._trace = trace
        self._containment = containment
        # Attempts that went past the breaker to the endpoint; refusals before it (an
        # open breaker, a rate limit, shedding) are counted by the runner, not here.
        self._sent = 0

    @classmethod
    def start(
        cls,
        tracer: Tracer,
        containment: Containment,
        flight: Flight,
        *,
        provider: ProviderType,
        region: str | None,
        parent: object,
    ) -> TracedOperation | None:
        """The trace of ``flight``, or None when the tracer failed to start one."""
        operation = flight.operation
        url = flight.request.url
        port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)
        try:
            start = OperationStart(
                operation=operation,
                provider=provider,
                region=operation.region or region,
                method=operation.method,
                url=mask_url(flight.url.partition("#")[0].partition("?")[0]),
                host=url.host,
                port=port,
                at=flight.start,
                parent=parent,
            )
            return cls(tracer.start_operation(start), containment)
        except Exception as exc:
            containment.failed(TRACER, "start_operation", exc)
            return None

    def attempt(self, at: float) -> TracedAttempt | None:
        """An attempt starts (after its breaker permit); None if the tracer failed."""
        self._sent += 1
        try:
            return TracedAttempt(self._trace.start_attempt(at), self._containment)
        except Exception as exc:
            self._containment.failed(TRACER, "start_attempt", exc)
            return None

    def decision(
        self,
        kind: str,
        at: float,
        attempt: int | None,
        error: CloudError | None = None,
        *,
        delay: float | None = None,
        retry_at: float | None = None,
    ) -> None:
        try:
            self._trace.decision(
                Decision(
                    kind=kind,
                    at=at,
                    attempt=attempt,
                    error_type=None if error is None else type(error).__name__,
                    delay=delay,
                    retry_at=retry_at,
                )
            )
        except Exception as exc:
            self._containment.failed(TRACER, "decision", exc)

    def not_retried(self, flight: Flight, error: CloudError, at: float, attempt: int) -> None:
        """The error is final: say so when a budget or admission decision made it final."""
        if flight.retry_suppressed:
            kind = DecisionKind.RETRY_SUPPRESSED
        elif isinstance(error, Throttled):
            kind = DecisionKind.THROTTLED
        elif isinstance(error, OperationTimeout) and error.waiting_for == Wait.ADMISSION:
            kind = DecisionKind.SHED
        else:
            return  # the policy's own answer, or an open breaker (told at the attempt)
        self.decision(kind, at, attempt, error)

    def end(
        self,
        at: float,
        status: int | None,
        error: CloudError | None,
        *,
        suppressed: bool,
    ) -> None:
        if error is None and status is None:
            outcome, error_type = "cancelled", "Cancelled"
        elif error is None:
            outcome, error_type = "success", None
        else:
            outcome = "retry_suppressed" if suppressed else "failure"
            error_type, status = type(error).__name__, error.status_code
        try:
            self._trace.end(
                OperationEnd(
                    at=at,
                    outcome=outcome,
                    attempts=self._sent,
                    status_code=status,
                    error_type=error_type,
                )
            )
        except Exception as exc:
            self._containment.failed(TRACER, "end", exc)


class TracedAttempt:
    """One attempt's trace, contained."""

    __slots__ = ("_containment", "_trace")

    def __init__(self, trace: AttemptTrace, containment: Containment) -> None:
        self._trace = trace
        self._containment = containment

    def end(self, at: float, status: int | None, error: CloudError | None) -> None:
        if error is not None:
            status = error.status_code if status is None else status
            error_type: str | None = type(error).__name__
        else:
            error_type = None if status is not None else "Cancelled"
        try:
            self._trace.end(AttemptEnd(at=at, status_code=status, error_type=error_type))
        except Exception as exc:
            self._containment.failed(TRACER, "end_attempt", exc)


def open_tracer(tracing: Tracing | None, containment: Containment) -> Tracer | None:
    """The tracer of a run that starts now, or None: not traced, or it failed to open."""
    if tracing is None:
        return None
    try:
        return tracing.open()
    except Exception as exc:
        containment.failed(TRACER, "open", exc)
        return None


def contained_capture(tracer: Tracer, containment: Containment) -> Callable[[], object]:
    """``tracer.capture`` for new submissions: one that fails leaves its submission untraced."""

    def capture() -> object:
        try:
            return tracer.capture()
        except Exception as exc:
            containment.failed(TRACER, "capture", exc)
            return None

    return capture
