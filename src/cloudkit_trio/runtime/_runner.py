"""The retry loop that ``execute``, ``stream`` and channel submissions share.

An operation departs (a :class:`~._flight.Flight` is made and counted), runs inside one
cancel scope that the lifecycle owns and its deadline bounds — admission, credentials,
every attempt and every backoff lie inside it —, and lands exactly once, which is where
it is reported. It runs on the caller's task for ``execute`` and ``stream`` and on a
router worker for submissions; either way it reads fresh state (credentials, a closed
breaker) without a message round trip and reports without blocking.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final, TypeVar

import attrs
import httpx
import trio

from .._errors import (
    CircuitOpenError,
    CloudError,
    ContextClosed,
    ExpiredCredentials,
    InternalError,
    OperationTimeout,
    Overloaded,
    Throttled,
)
from .._operation import Operation, Response
from .._streaming import StreamingResponse
from ..spi import DO_NOT_RETRY, OperationMetrics, OperationOutcome, Retry, RetryPolicy
from ..transport._classify import error_from_exception
from ._containment import Spi
from ._fast_retries import FAST_RETRIES
from ._flight import Flight, Wait
from ._tracing import CURRENT, DecisionKind, TracedOperation

if TYPE_CHECKING:
    from .._credentials import Credentials
    from .._provider import ProviderType
    from ._admission import Admission
    from ._attempt import Attempts
    from ._containment import Containment
    from ._credentials import CredentialRefresher
    from ._events import RuntimeEvents
    from ._lifecycle import Lifecycle
    from ._signers import Signers
    from ._targets import Targets
    from ._tracing import Tracer

__all__ = ["OperationRunner", "RunnerStatistics"]

_T = TypeVar("_T")
# Errors no retry can help: the breaker is open, the context is closing, the client's own
# rate limit said no.
_FINAL: Final = (CircuitOpenError, ContextClosed, Throttled)
_E = TypeVar("_E", bound=CloudError)

# How long closing a streamed body may take once the caller's block is done.
_BODY_CLOSE_BUDGET: Final = 1.0
# The defaults of CloudConfig.stream_timeout and max_response_size, for runners built
# without a config.
_STREAM_TIMEOUT: Final = 300.0
_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024


@attrs.frozen
class RunnerStatistics:
    """Operations the pipeline is running, and the deadlines that ran out, per wait.

    .. versionadded:: 0.1.0
    """

    inflight: int
    max_concurrency: int
    endpoints_with_bulkheads: int
    deadlines_expired: dict[str, int] = attrs.field(factory=dict)


class OperationRunner:
    """Runs operations to completion: every attempt, every retry, one result, one report."""

    def __init__(
        self,
        *,
        provider: ProviderType,
        lifecycle: Lifecycle,
        targets: Targets,
        admission: Admission,
        attempts: Attempts,
        policy: RetryPolicy,
        refresher: CredentialRefresher,
        signers: Signers,
        events: RuntimeEvents,
        containment: Containment,
        stream_timeout: float = _STREAM_TIMEOUT,
        max_response_size: int = _MAX_RESPONSE_SIZE,
        tracer: Tracer | None = None,
        region: str | None = None,
    ) -> None:
        self._provider = provider
        self._provider_name = str(provider)
        self._lifecycle = lifecycle
        self._targets = targets
        self._admission = admission
        self._attempts = attempts
        attempts.interrupted = self.interrupted
        self._policy = policy
        self._refresher = refresher
        self._signers = signers
        self._needs_credentials = signers.needs_credentials
        self._events = events
        self._containment = containment
        self._stream_timeout = stream_timeout
        self._max_response_size = max_response_size
        #: None unless the context was built with ``.tracing()``. Untraced, an operation
        #: pays an ``is None`` test at its start and end and at each attempt's: no record
        #: is built and no clock read for tracing.
        self._tracer = tracer
        self._region = region
        self.deadlines_expired = dict.fromkeys(Wait.ALL, 0)
        self.inflight = 0
        self._idle = trio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no operation is in flight."""
        await self._idle.wait()

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics(
            inflight=self.inflight,
            max_concurrency=self._admission.max_concurrency,
            endpoints_with_bulkheads=self._admission.endpoints,
            deadlines_expired=dict(self.deadlines_expired),
        )

    # -- one operation ---------------------------------------------------------------------

    async def run(
        self,
        operation: Operation,
        *,
        deadline: float = math.inf,
        accepted_at: float | None = None,
        trace_parent: object = CURRENT,
    ) -> Response:
        """Run ``operation`` until it succeeds, fails for good, or its deadline passes.

        ``deadline`` is the caller's ``timeout=``; ``Operation.timeout`` counts from
        ``accepted_at`` (a submission's acceptance) or from now. The caller's enclosing
        Trio deadline is not enforced here — the caller's own scope does that — but no
        retry is started that could not finish before it. ``trace_parent`` is the trace
        context a submission was made in (its caller's task is not this one).
        """
        flight = self._depart(operation, deadline, math.inf, accepted_at)
        trace = None if self._tracer is None else self._trace(flight, trace_parent)
        error: CloudError | None = None
        attempts = 0
        status: int | None = None
        ended: float | None = None
        try:
            response, content, attempts = await self._start(flight, stream=False, trace=trace)
            self._admission.release(flight)
            status = response.status_code
            # The body was read within the attempt: its end is the operation's.
            ended = flight.attempt_ended
        except CloudError as exc:
            error = exc
            attempts = exc.attempt or attempts
            raise
        except Exception as exc:  # a bug of ours must cost this operation a CloudError only
            error = self._unexpected(flight, exc)
            raise error from exc
        finally:
            self._land(flight, attempts, status, error, ended)
            if trace is not None:
                trace.end(
                    trio.current_time() if ended is None else ended,
                    status,
                    error,
                    suppressed=flight.retry_suppressed,
                )
        return Response(
            status_code=response.status_code,
            headers=response.headers,
            content=content,
            url=flight.url,
            attempts=attempts,
            elapsed=ended - flight.start,
        )

    @asynccontextmanager
    async def stream(
        self, operation: Operation, *, deadline: float = math.inf, plan_deadline: float = math.inf
    ) -> AsyncIterator[StreamingResponse]:
        """Run ``operation`` up to a successful response's headers; the caller reads the body.

        Retries, credentials and the breaker apply until the headers arrive; the operation
        keeps its concurrency slots until the body is closed, and its deadline bounds each
        read of the body too; when the caller set no deadline at all, ``stream_timeout``
        from the headers on does, so a server dripping its body cannot hold the slots. It
        is reported once, when the block exits: a success unless reading the body failed.
        """
        flight = self._depart(operation, deadline, plan_deadline, None)
        trace = None if self._tracer is None else self._trace(flight, CURRENT)
        error: CloudError | None = None
        attempts = 0
        status: int | None = None
        try:
            try:
                response, _, attempts = await self._start(flight, stream=True, trace=trace)
            except CloudError as exc:
                error = exc
                attempts = exc.attempt or attempts
                raise
            except Exception as exc:
                error = self._unexpected(flight, exc)
                raise error from exc
            status = response.status_code
            now = trio.current_time()
            # A deadline the caller set (timeout=, Operation.timeout, an enclosing scope)
            # is theirs to choose; only a body nobody bounded gets stream_timeout.
            unbounded = flight.plan_deadline == math.inf
            body_deadline = now + self._stream_timeout if unbounded else flight.deadline
            try:
                body = StreamingResponse._create(
                    response,
                    url=flight.url,
                    attempts=attempts,
                    elapsed=now - flight.start,
                    guard=partial(self._guard_body, flight, body_deadline),
                    max_size=self._max_response_size,
                )
                try:
                    yield body
                finally:
                    # Shielded so a cancelled caller still gives the connection back;
                    # bounded so a server that never finishes cannot hold it.
                    with trio.CancelScope(
                        shield=True, deadline=trio.current_time() + _BODY_CLOSE_BUDGET
                    ):
                        await body._aclose()
                    error = body._failure
            finally:
                self._admission.release(flight)
        finally:
            self._land(flight, attempts, status, error)
            if trace is not None:
                trace.end(
                    trio.current_time(),
                    status,
                    error,
                    suppressed=flight.retry_suppressed,
                )

    def _trace(self, flight: Flight, parent: object) -> TracedOperation | None:
        """Start the trace of ``flight`` (only ever called with a tracer)."""
        assert self._tracer is not None
        return TracedOperation.start(
            self._tracer,
            self._containment,
            flight,
            provider=self._provider,
            region=self._region,
            parent=parent,
        )

    def _depart(
        self,
        operation: Operation,
        deadline: float,
        plan_deadline: float,
        accepted_at: float | None,
    ) -> Flight:
        """Everything an operation needs before its first attempt; counts it in flight."""
        now = trio.current_time()
        start = now if accepted_at is None else accepted_at
        if operation.timeout is not None:
            deadline = min(deadline, start + operation.timeout)
        url, target = self._targets.resolve(operation)
        gate = self._admission.gate(target.endpoint)
        flight = Flight(
            operation,
            start=start,
            deadline=deadline,
            plan_deadline=plan_deadline,
            url=url,
            endpoint=target.endpoint,
            request=self._targets.request(operation, target),
            signer=self._signers.for_operation(operation),
            gate=gate,
        )
        if accepted_at is not None:
            flight.waiting_for = Wait.QUEUE
        self.inflight += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        return flight

    def _land(
        self,
        flight: Flight,
        attempts: int,
        status: int | None,
        error: CloudError | None,
        ended: float | None = None,
    ) -> None:
        """The operation is over, whichever way: uncount it and report it, once."""
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()
        if not self._events.metrics_wanted:
            return  # every collector discards it: build nothing
        operation = flight.operation
        if error is None and status is None:
            # Neither an answer nor an error: the caller was cancelled (its own deadline,
            # its nursery) before the operation ended.
            outcome, error_code = OperationOutcome.FAILURE, "Cancelled"
        elif error is None:
            outcome, error_code = OperationOutcome.SUCCESS, None
        elif flight.retry_suppressed:
            outcome, error_code = OperationOutcome.RETRY_SUPPRESSED, error.code
            error_code = error_code or type(error).__name__
            status = error.status_code
        else:
            outcome, error_code = OperationOutcome.FAILURE, error.code or type(error).__name__
            status = error.status_code
        self._events.operation(
            OperationMetrics(
                provider=self._provider,
                service=operation.service,
                operation=operation.name,
                duration=max((trio.current_time() if ended is None else ended) - flight.start, 0.0),
                outcome=outcome,
                retry_count=max(attempts - 1, 0),
                status_code=status,
                error_code=error_code,
                endpoint=flight.endpoint,
            )
        )

    def expired_in_queue(self, operation: Operation, accepted_at: float | None) -> CloudError:
        """Report a submission whose deadline passed in the queue; the error to answer."""
        self.deadlines_expired[Wait.QUEUE] += 1
        error = OperationTimeout(
            "the operation ran past its deadline while waiting for queue",
            timeout=operation.timeout,
            waiting_for=Wait.QUEUE,
            provider=self._provider_name,
            service=operation.service,
            operation=operation.name,
        )
        self.report_unrun(operation, accepted_at, error)
        return error

    def report_unrun(
        self, operation: Operation, accepted_at: float | None, error: CloudError
    ) -> None:
        """Report a submission answered ``error`` without running (shutdown, its deadline)."""
        now = trio.current_time()
        self._events.operation(
            OperationMetrics(
                provider=self._provider,
                service=operation.service,
                operation=operation.name,
                duration=0.0 if accepted_at is None else max(now - accepted_at, 0.0),
                outcome=OperationOutcome.FAILURE,
                error_code=type(error).__name__,
            )
        )

    async def _start(
        self, flight: Flight, *, stream: bool, trace: TracedOperation | None = None
    ) -> tuple[httpx.Response, bytes, int]:
        """Admission and attempts; returns holding the operation's slots."""
        if self._lifecycle.cancelled:
            raise self._closed(flight, "started")
        if flight.deadline != math.inf and trio.current_time() >= flight.deadline:
            # It spent its whole budget in the queue.
            raise self.interrupted(flight)
        admission = self._admission
        if not admission.try_admit(flight):
            try:
                await self._wait(flight, Wait.CAPACITY, partial(admission.admit, flight))
            except Overloaded as error:
                # The endpoint's adaptive limit is full: refused before anything was sent.
                self._events.admission_refused(flight.endpoint, "overloaded")
                if trace is not None:
                    trace.decision(DecisionKind.OVERLOADED, trio.current_time(), None, error)
                self._in_context(error, flight)
                raise
        try:
            return await self._retry_loop(flight, stream=stream, trace=trace)
        except BaseException:
            admission.release(flight)
            raise

    async def _wait(
        self, flight: Flight, waiting_for: str, waiting: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Await ``waiting`` inside a scope the lifecycle owns and the deadline bounds.

        Every wait an operation makes goes through here or through the attempt's own
        scope, so shutdown and the deadline reach it wherever it is; the fast paths (free
        slots, fresh credentials) make no wait and open no scope.
        """
        flight.waiting_for = waiting_for
        lifecycle = self._lifecycle
        scope = lifecycle.open_scope(flight.deadline)
        try:
            with scope:
                return await waiting()
            raise self.interrupted(flight)
        finally:
            lifecycle.close_scope(scope)

    async def _retry_loop(
        self, flight: Flight, *, stream: bool, trace: TracedOperation | None = None
    ) -> tuple[httpx.Response, bytes, int]:
        operation = flight.operation
        refresher = self._refresher
        attempt = 0  # attempts counted against the policy
        sent = 0  # every attempt made, a forced credential retry included
        refreshed = False
        gate = flight.gate
        # One clock read per attempt's start, shared by the budget, admission and the
        # attempt itself; None once a wait has made it stale.
        started = trio.current_time()
        gate.first_attempt(started)
        now: float | None = started
        while True:
            attempt += 1
            sent += 1
            credentials: Credentials | None = None
            try:
                if self._lifecycle.cancelled:
                    raise self._closed(flight, "was retried")
                if self._needs_credentials:
                    credentials = refresher.current_nowait()
                    if credentials is None:
                        credentials = await self._wait(flight, Wait.CREDENTIALS, refresher.current)
                        now = None
                if now is None:
                    now = trio.current_time()
                token_delay = gate.admit(flight, now)
                if token_delay:
                    await self._wait_for_token(flight, token_delay)
                    now = None
                response, content = await self._attempts.send(
                    flight, credentials, stream=stream, now=now, trace=trace
                )
            except CloudError as error:
                error.add_context(
                    provider=self._provider_name,
                    service=operation.service,
                    operation=operation.name,
                    endpoint=flight.endpoint,
                    attempt=sent,
                )
                if (
                    isinstance(error, ExpiredCredentials)
                    and self._needs_credentials
                    and not refreshed
                    and not self._lifecycle.cancelled
                ):
                    # One refresh and one more attempt, whatever the policy says. Counted
                    # and logged like any retry (no backoff), so dashboards show expired
                    # credentials as a cause; it does not use up the policy's attempts.
                    refreshed = True
                    attempt -= 1
                    self._events.retry(
                        operation.service,
                        operation.name,
                        flight.endpoint,
                        sent,
                        0.0,
                        type(error).__name__,
                    )
                    if trace is not None:
                        trace.decision(
                            DecisionKind.CREDENTIALS_REFRESH, trio.current_time(), sent, error
                        )
                    await self._wait(
                        flight,
                        Wait.CREDENTIALS,
                        partial(refresher.refresh_after_rejection, credentials),
                    )
                    now = None
                    continue
                delay = self._retry_delay(flight, error, attempt)
                if delay is None:
                    error.attempt = sent
                    if trace is not None:
                        trace.not_retried(flight, error, trio.current_time(), sent)
                    raise
                self._events.retry(
                    operation.service,
                    operation.name,
                    flight.endpoint,
                    sent,
                    delay,
                    type(error).__name__,
                )
                if trace is not None:
                    trace.decision(
                        DecisionKind.RETRY, trio.current_time(), sent, error, delay=delay
                    )
                await self._wait(flight, Wait.BACKOFF, partial(trio.sleep, delay))
                now = None
                continue
            return response, content, sent

    async def _wait_for_token(self, flight: Flight, delay: float) -> None:
        """Wait ``delay`` seconds for the attempt's rate-limit token (reserved already)."""
        due = trio.current_time() + delay
        try:
            await self._wait(flight, Wait.RATE_LIMIT, partial(trio.sleep_until, due))
        except BaseException:
            flight.gate.give_back(trio.current_time(), due)
            raise

    def _retry_delay(self, flight: Flight, error: CloudError, attempt: int) -> float | None:
        """The backoff before the next attempt, or None: the error is final."""
        if isinstance(error, Throttled):
            self._events.admission_refused(flight.endpoint, "throttled")
            return None
        if isinstance(error, OperationTimeout) and error.waiting_for == Wait.ADMISSION:
            self._events.admission_refused(flight.endpoint, "shed")
            return None  # the deadline is too short for this endpoint: so is a retry's
        if isinstance(error, _FINAL) or self._lifecycle.cancelled:
            return None
        policy = self._policy
        fast = FAST_RETRIES
        if fast.enabled and fast.attempts is not None and attempt >= fast.attempts:
            return None
        try:
            if attempt >= policy.max_attempts:
                return None
            if error.request_sent and not flight.operation.is_idempotent:
                if error.retryable:
                    error.not_retried = (
                        f"{flight.operation.method} is not idempotent and the request may "
                        "have reached the server; pass Operation(idempotent=True) if "
                        "repeating it is safe"
                    )
                return None
            decision = policy.should_retry(error, attempt)
        except Exception as exc:  # the policy is user code: its failure ends the retries
            self._containment.failed(Spi.RETRY_POLICY, "should_retry", exc)
            return None
        if decision is DO_NOT_RETRY:
            return None
        if not isinstance(decision, Retry) or not (
            isinstance(decision.delay, int | float) and 0 <= decision.delay < math.inf
        ):
            self._containment.failed(
                Spi.RETRY_POLICY,
                "should_retry",
                TypeError(f"should_retry returned {type(decision).__name__}, not a RetryDecision"),
            )
            return None
        # A retry is never scheduled past the deadline: it could not finish in time.
        # Nor past the caller's enclosing deadline, read here rather than per operation:
        # only an operation that is about to be retried pays for the walk of its scopes.
        plan_deadline = min(flight.plan_deadline, trio.current_effective_deadline())
        now = trio.current_time()
        # The testing switch: every retry at once (Retry-After included), nothing else
        # changed; the budget and the deadline still decide.
        delay = 0.0 if fast.enabled else float(decision.delay)
        if now + delay >= plan_deadline:
            return None
        # Counted when scheduled, not when sent: a retry that waits out its backoff has
        # still been granted.
        if not flight.gate.may_retry(now):
            flight.retry_suppressed = True
            error.not_retried = (
                f"the retry budget of {flight.endpoint} is spent (retries are limited to a "
                "share of recent first attempts; see RetryBudget)"
            )
            self._events.retry_suppressed(flight.endpoint)
            return None
        return delay

    async def _guard_body(
        self, flight: Flight, body_deadline: float, read: Awaitable[bytes]
    ) -> bytes:
        """Await one read of a streamed body within its deadline, mapping its failures.

        ``body_deadline`` is the operation's deadline, or when it has none the end of
        ``stream_timeout``.
        """
        flight.waiting_for = Wait.BODY
        scope = self._lifecycle.open_scope(body_deadline)
        try:
            with scope:
                try:
                    return await read
                except (httpx.HTTPError, CloudError) as exc:
                    # Transport failures become the runtime's errors; StopAsyncIteration and
                    # misuse (httpx.StreamConsumed) pass through as themselves.
                    error = error_from_exception(exc)
                    error.request_sent = True
                    raise self._in_context(error, flight) from exc
        finally:
            self._lifecycle.close_scope(scope)
        if body_deadline < flight.deadline and not self._lifecycle.cancelled:
            self.deadlines_expired[Wait.BODY] += 1
            error = OperationTimeout(
                f"the body was not read within stream_timeout={self._stream_timeout:g}s; "
                "pass timeout= to stream() (or raise CloudConfig.stream_timeout) for longer "
                "downloads",
                timeout=self._stream_timeout,
                waiting_for=Wait.BODY,
            )
            raise self._in_context(error, flight)
        raise self.interrupted(flight)

    # -- errors ----------------------------------------------------------------------------

    def interrupted(self, flight: Flight) -> CloudError:
        """The error for an operation its own scope cut short: shutdown or its deadline."""
        if self._lifecycle.cancelled and trio.current_time() < flight.deadline:
            return self._closed(flight, "finished")
        waiting_for = flight.waiting_for
        self.deadlines_expired[waiting_for] += 1
        error = OperationTimeout(
            f"the operation ran past its deadline while waiting for {waiting_for}",
            timeout=flight.deadline - flight.start,
            waiting_for=waiting_for,
        )
        return self._in_context(error, flight)

    def _closed(self, flight: Flight, when: str) -> ContextClosed:
        error = ContextClosed(f"the cloud context shut down before the operation {when}")
        return self._in_context(error, flight)

    def _unexpected(self, flight: Flight, exc: Exception) -> InternalError:
        error = InternalError(f"unexpected {type(exc).__name__} while running the operation")
        return self._in_context(error, flight)

    def _in_context(self, error: _E, flight: Flight) -> _E:
        operation = flight.operation
        error.add_context(
            provider=self._provider_name,
            service=operation.service,
            operation=operation.name,
            endpoint=flight.endpoint,
        )
        return error
