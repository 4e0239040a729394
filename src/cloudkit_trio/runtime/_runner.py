"""The per-operation pipeline: credentials, permit, send, classify, retry, report.

This is the hot path. It runs on the caller's task for ``execute`` and on a router worker
for channel submissions; either way it reads fresh state (credentials, a closed breaker)
without a message round trip, and it reports to the metrics aggregator without blocking.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import trio

from .._errors import (
    CircuitOpenError,
    CloudError,
    ContextClosed,
    ExpiredCredentials,
    OperationTimeout,
)
from .._operation import Operation, Response, endpoint_of
from .._streaming import StreamingResponse
from ..spi import DO_NOT_RETRY, OperationMetrics, OperationOutcome, RetryPolicy
from ..transport._classify import error_from_exception, error_from_response
from ._breaker import Outcome, Permit

if TYPE_CHECKING:
    from .._config import CloudConfig
    from .._credentials import Credentials
    from .._provider import ProviderType
    from ..transport._signing import RequestSigner
    from ._credentials import CredentialRefresher
    from ._events import RuntimeEvents
    from ._registry import BreakerRegistry

__all__ = ["OperationRunner", "RunnerStatistics"]

# Bulkheads of endpoints nobody uses are dropped once more than this many exist.
_MAX_IDLE_BULKHEADS: Final = 1024
# Headers that frame a request body; a caller who sets one is taken at their word.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
# httpx (and curl) send Content-Length: 0 for these methods even without a body.
_EMPTY_BODY_NEEDS_LENGTH: Final = frozenset({"POST", "PUT", "PATCH"})
# A body with this header must go through httpx's decoders.
_ENCODED: Final = "content-encoding"


@attrs.frozen
class RunnerStatistics:
    """Operations the pipeline is running.

    .. versionadded:: 0.1.0
    """

    inflight: int
    max_concurrency: int
    endpoints_with_bulkheads: int


class _Target:
    """A parsed operation URL, kept for the next operation to the same URL."""

    __slots__ = ("endpoint", "host", "url")

    def __init__(self, endpoint: str, url: httpx.URL, host: str) -> None:
        self.endpoint = endpoint
        self.url = url
        #: The Host header's value.
        self.host = host


class _Flight:
    """One operation between admission and its end; also the token its slots are held by."""

    __slots__ = ("bulkhead", "deadline", "endpoint", "request", "start", "url")

    def __init__(
        self,
        start: float,
        deadline: float,
        url: str,
        endpoint: str,
        request: httpx.Request,
        bulkhead: trio.CapacityLimiter,
    ) -> None:
        self.start = start
        self.deadline = deadline
        self.url = url
        self.endpoint = endpoint
        self.request = request
        self.bulkhead = bulkhead


class _Closing:
    """Why an operation's scope was cancelled by the runtime."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None


class OperationRunner:
    """Runs operations to completion: every attempt, every retry, one result."""

    def __init__(
        self,
        *,
        provider: ProviderType,
        config: CloudConfig,
        transport: httpx.AsyncBaseTransport,
        signer: RequestSigner,
        policy: RetryPolicy,
        refresher: CredentialRefresher,
        breakers: BreakerRegistry,
        events: RuntimeEvents,
        max_concurrency: int,
        max_per_endpoint: int,
    ) -> None:
        self._provider = provider
        self._provider_name = str(provider)
        self._config = config
        self._transport = transport
        self._signer = signer
        self._needs_credentials = signer.needs_credentials
        self._policy = policy
        self._refresher = refresher
        self._breakers = breakers
        self._events = events
        self._limiter = trio.CapacityLimiter(max_concurrency)
        self._max_concurrency = max_concurrency
        self._max_per_endpoint = max_per_endpoint
        self._bulkheads: OrderedDict[str, trio.CapacityLimiter] = OrderedDict()
        self._urls: dict[str, _Target] = {}
        self._attempt_timeout = config.timeout
        self._timeouts = {
            "connect": config.connect_timeout,
            "read": config.timeout,
            "write": config.timeout,
            "pool": config.timeout,
        }
        self._scopes: set[trio.CancelScope] = set()
        self._closing = _Closing()
        self._cancelled = False
        self.inflight = 0
        self._idle = trio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing.reason is not None

    def begin_closing(self) -> None:
        """Refuse new operations from now on (running ones go on)."""
        if self._closing.reason is None:
            self._closing.reason = "shutting down"

    async def wait_idle(self) -> None:
        """Return once no operation is running."""
        await self._idle.wait()

    def cancel_all(self) -> None:
        """Cancel every running operation and refuse new ones: all end in :class:`ContextClosed`."""
        self.begin_closing()
        self._cancelled = True
        for scope in list(self._scopes):
            scope.cancel()

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics(
            inflight=self.inflight,
            max_concurrency=self._max_concurrency,
            endpoints_with_bulkheads=len(self._bulkheads),
        )

    def check_open(self, operation: Operation) -> None:
        if self._closing.reason is not None:
            raise ContextClosed(
                "the cloud context is shutting down; the operation was not started",
                provider=self._provider_name,
                service=operation.service,
                operation=operation.name,
            )

    # -- one operation ---------------------------------------------------------------------

    async def run(self, operation: Operation, deadline: float = math.inf) -> Response:
        """Run ``operation`` until it succeeds, fails for good, or ``deadline`` passes.

        Runs even while closing: operations admitted before shutdown may finish within the
        grace period. Callers that admit new work check :meth:`check_open` first.
        """
        flight = self._depart(operation, deadline)
        error: CloudError | None = None
        attempts = 0
        try:
            await self._admit(flight, operation)
            try:
                response, content, attempts = await self._attempts(
                    operation, flight.request, flight.endpoint, flight.deadline, stream=False
                )
            finally:
                self._release(flight)
        except CloudError as exc:
            error = exc
            attempts = exc.attempt or attempts
            raise
        finally:
            self._land(flight, operation, attempts, error)
        self._report(
            operation,
            flight.endpoint,
            flight.start,
            OperationOutcome.SUCCESS,
            attempts,
            None,
            response.status_code,
        )
        return Response(
            status_code=response.status_code,
            headers=response.headers,
            content=content,
            url=flight.url,
            attempts=attempts,
            elapsed=trio.current_time() - flight.start,
        )

    @asynccontextmanager
    async def stream(
        self, operation: Operation, deadline: float = math.inf
    ) -> AsyncIterator[StreamingResponse]:
        """Run ``operation`` up to a successful response's headers; the body is read by the caller.

        Retries, credentials and the breaker apply until the headers arrive (the breaker
        counts the attempt then); the operation keeps its concurrency slots until the body
        is closed, and its deadline bounds reading the body too. The operation is reported
        when the context exits: a success, unless reading the body failed.
        """
        flight = self._depart(operation, deadline)
        endpoint, deadline = flight.endpoint, flight.deadline
        error: CloudError | None = None
        attempts = 0
        try:
            await self._admit(flight, operation)
            try:
                response, _, attempts = await self._attempts(
                    operation, flight.request, endpoint, deadline, stream=True
                )
                body = StreamingResponse._create(
                    response,
                    url=flight.url,
                    attempts=attempts,
                    elapsed=trio.current_time() - flight.start,
                    guard=partial(self._guard_body, operation, endpoint, deadline),
                )
                try:
                    yield body
                finally:
                    with trio.CancelScope(shield=True):
                        await body._aclose()
                error = body._failure
            finally:
                self._release(flight)
        except CloudError as exc:
            error = exc
            attempts = exc.attempt or attempts
            raise
        finally:
            self._land(flight, operation, attempts, error)
        self._report(
            operation,
            endpoint,
            flight.start,
            OperationOutcome.SUCCESS,
            attempts,
            None,
            response.status_code,
        )

    def _depart(self, operation: Operation, deadline: float) -> _Flight:
        """Everything an operation needs before its first attempt; counts it in flight."""
        start = trio.current_time()
        if self._cancelled:
            raise self._closed_error(operation, None, "started")
        if operation.timeout is not None:
            deadline = min(deadline, start + operation.timeout)
        url = operation.resolve_url(self._config.endpoint)
        target = self._urls.get(url) or self._parse(url)
        endpoint = target.endpoint
        flight = _Flight(
            start,
            deadline,
            url,
            endpoint,
            self._request(operation, target),
            self._bulkhead(endpoint),
        )
        self.inflight += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        return flight

    def _land(
        self, flight: _Flight, operation: Operation, attempts: int, error: CloudError | None
    ) -> None:
        """The operation is over: uncount it, drop an idle bulkhead, report a failure."""
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()
        self._release_bulkhead(flight.endpoint, flight.bulkhead)
        if error is not None:
            self._report(
                operation, flight.endpoint, flight.start, OperationOutcome.FAILURE, attempts, error
            )

    async def _admit(self, flight: _Flight, operation: Operation) -> None:
        """Take a slot of the global limit and one of the endpoint's bulkhead, in that order."""
        token, bulkhead = flight, flight.bulkhead
        try:
            self._limiter.acquire_on_behalf_of_nowait(token)
        except trio.WouldBlock:
            await self._wait_for(
                partial(self._limiter.acquire_on_behalf_of, token),
                operation,
                flight.endpoint,
                flight.deadline,
            )
        try:
            try:
                bulkhead.acquire_on_behalf_of_nowait(token)
            except trio.WouldBlock:
                await self._wait_for(
                    partial(bulkhead.acquire_on_behalf_of, token),
                    operation,
                    flight.endpoint,
                    flight.deadline,
                )
        except BaseException:
            self._limiter.release_on_behalf_of(token)
            raise

    def _release(self, flight: _Flight) -> None:
        flight.bulkhead.release_on_behalf_of(flight)
        self._limiter.release_on_behalf_of(flight)

    async def _guard_body(
        self, operation: Operation, endpoint: str, deadline: float, read: Awaitable[bytes]
    ) -> bytes:
        """Await one read of a streamed body within the deadline, mapping its failures."""
        scope = trio.CancelScope(deadline=deadline)
        self._scopes.add(scope)
        try:
            with scope:
                try:
                    return await read
                except (httpx.HTTPError, CloudError) as exc:
                    # Transport failures become the runtime's errors; StopAsyncIteration and
                    # misuse (httpx.StreamConsumed) pass through as themselves.
                    error = error_from_exception(exc)
                    error.request_sent = True
                    error.add_context(
                        provider=self._provider_name,
                        service=operation.service,
                        operation=operation.name,
                        endpoint=endpoint,
                    )
                    raise error from exc
        finally:
            self._scopes.discard(scope)
        raise self._interrupted(operation, endpoint, deadline)

    def _request(self, operation: Operation, target: _Target) -> httpx.Request:
        # httpx.Request(content=...) would encode the body and prepare the Host and
        # Content-Length headers through several generic layers; for an in-memory body
        # the result is the same list of headers, built here at half the cost.
        url = target.url if not operation.params else httpx.URL(target.url, params=operation.params)
        body = operation.body
        headers: list[tuple[str, str]] = [("Host", target.host)]
        framed = False
        if operation.headers:
            for name in operation.headers:
                lowered = name.lower()
                if lowered == "host":
                    headers.clear()
                elif lowered in _FRAMING:
                    framed = True
            headers.extend(operation.headers.items())
        if not framed:
            if body:
                headers.append(("Content-Length", str(len(body))))
            elif operation.method in _EMPTY_BODY_NEEDS_LENGTH:
                headers.append(("Content-Length", "0"))
        request = httpx.Request(
            operation.method,
            url,
            headers=headers,
            stream=httpx.ByteStream(bytes(body)),
            extensions={"timeout": self._timeouts},
        )
        # Signers read request.content (SigV4 hashes it).
        request.read()
        return request

    async def _wait_for(
        self,
        waiting: Callable[[], Awaitable[None]],
        operation: Operation,
        endpoint: str,
        deadline: float,
    ) -> None:
        """Await ``waiting`` (a queue for capacity, a backoff sleep) within the deadline."""
        scope = trio.CancelScope(deadline=deadline)
        self._scopes.add(scope)
        try:
            with scope:
                await waiting()
        finally:
            self._scopes.discard(scope)
        if scope.cancelled_caught:
            raise self._interrupted(operation, endpoint, deadline)

    def _interrupted(self, operation: Operation, endpoint: str, deadline: float) -> CloudError:
        """The error for an operation our own scope cut short: shutdown or its deadline."""
        if self._cancelled and trio.current_time() < deadline:
            return self._closed_error(operation, endpoint, "finished")
        return OperationTimeout(
            "the operation ran past its deadline",
            provider=self._provider_name,
            service=operation.service,
            operation=operation.name,
            endpoint=endpoint,
        )

    def _closed_error(self, operation: Operation, endpoint: str | None, when: str) -> ContextClosed:
        return ContextClosed(
            f"the cloud context shut down before the operation {when}",
            provider=self._provider_name,
            service=operation.service,
            operation=operation.name,
            endpoint=endpoint,
        )

    async def _attempts(
        self,
        operation: Operation,
        request: httpx.Request,
        endpoint: str,
        deadline: float,
        *,
        stream: bool,
    ) -> tuple[httpx.Response, bytes, int]:
        attempt = 0  # attempts counted against the policy
        sent = 0  # every attempt made, a forced credential retry included
        refreshed = False
        while True:
            attempt += 1
            sent += 1
            credentials: Credentials | None = None
            try:
                if self._needs_credentials:
                    credentials = await self._refresher.current()
                response, content = await self._attempt(
                    request, operation, endpoint, credentials, deadline, stream=stream
                )
            except CloudError as error:
                error.add_context(
                    provider=self._provider_name,
                    service=operation.service,
                    operation=operation.name,
                    endpoint=endpoint,
                    attempt=sent,
                )
                if (
                    isinstance(error, ExpiredCredentials)
                    and self._needs_credentials
                    and not refreshed
                ):
                    # One refresh and one more attempt, whatever the policy says.
                    refreshed = True
                    attempt -= 1
                    # Counted and logged like any retry (no backoff), so dashboards show
                    # expired credentials as a cause; it does not use up the policy's attempts.
                    self._events.retry(
                        operation.service, operation.name, endpoint, sent, 0.0, type(error).__name__
                    )
                    await self._refresher.refresh_after_rejection(credentials)
                    continue
                delay = self._retry_delay(operation, error, attempt, deadline)
                if delay is None:
                    error.attempt = sent
                    raise
                self._events.retry(
                    operation.service, operation.name, endpoint, sent, delay, type(error).__name__
                )
                await self._wait_for(partial(trio.sleep, delay), operation, endpoint, deadline)
                continue
            return response, content, sent

    def _retry_delay(
        self, operation: Operation, error: CloudError, attempt: int, deadline: float
    ) -> float | None:
        if (
            isinstance(error, CircuitOpenError | ContextClosed)
            or attempt >= self._policy.max_attempts
        ):
            return None
        if error.request_sent and not operation.is_idempotent:
            return None
        decision = self._policy.should_retry(error, attempt)
        if decision is DO_NOT_RETRY:
            return None
        # A retry is never scheduled past the deadline: it could not finish in time.
        if trio.current_time() + decision.delay >= deadline:
            return None
        return decision.delay

    async def _attempt(
        self,
        request: httpx.Request,
        operation: Operation,
        endpoint: str,
        credentials: Credentials | None,
        deadline: float,
        *,
        stream: bool,
    ) -> tuple[httpx.Response, bytes]:
        breaker = self._breakers.get(endpoint)
        now = trio.current_time()
        permit: Permit | None = None
        if breaker is not None:
            try:
                permit = breaker.acquire(now)
            except CircuitOpenError:
                self._events.breaker_rejected(endpoint)
                raise
        outcome = Outcome.IGNORED
        attempt_deadline = now + self._attempt_timeout
        # One scope per attempt: the attempt's timeout, the operation's deadline and
        # shutdown all cancel it; which one it was is decided afterwards.
        scope = trio.CancelScope(deadline=min(deadline, attempt_deadline))
        self._scopes.add(scope)
        try:
            self._signer.sign(request, credentials)
            with scope:
                try:
                    response = await self._transport.handle_async_request(request)
                    body = response.stream
                    if stream and response.status_code < 300:
                        # A streamed success is left unread for the caller.
                        content = b""
                    elif type(body) is httpx.ByteStream and _ENCODED not in response.headers:
                        # Already in memory (PooledTransport hands small bodies over this
                        # way): httpx's aread() machinery would cost more than the request.
                        content = b"".join(body)
                    else:
                        # Error bodies are read whole as well: they carry the error code.
                        try:
                            content = await response.aread()
                        finally:
                            await response.aclose()
                except CloudError:
                    raise
                except Exception as exc:
                    raise error_from_exception(exc) from exc
            if scope.cancelled_caught:
                if self._cancelled or trio.current_time() >= deadline:
                    raise self._interrupted(operation, endpoint, deadline)
                raise OperationTimeout(
                    f"the attempt timed out after {self._attempt_timeout:g}s",
                    timeout=self._attempt_timeout,
                )
            if response.status_code >= 300:
                error = error_from_response(
                    response.status_code, response.headers, content, reason=response.reason_phrase
                )
                if error is not None:
                    raise error
            outcome = Outcome.SUCCESS
            return response, content
        except CloudError as error:
            if error.retryable:
                outcome = Outcome.FAILURE
            raise
        finally:
            self._scopes.discard(scope)
            if breaker is not None and permit is not None:
                # Synchronous, so a half-open probe permit comes back even when cancelled.
                breaker.release(permit, outcome, trio.current_time())

    # -- helpers ---------------------------------------------------------------------------

    def _parse(self, url: str) -> _Target:
        # Parsing a URL costs several microseconds and most operations repeat a few URLs:
        # memoise (httpx.URL is immutable), within a bound.
        if len(self._urls) >= _MAX_IDLE_BULKHEADS:
            self._urls.clear()
        parsed = httpx.URL(url)
        target = self._urls[url] = _Target(endpoint_of(url), parsed, parsed.netloc.decode("ascii"))
        return target

    def _bulkhead(self, endpoint: str) -> trio.CapacityLimiter:
        bulkhead = self._bulkheads.get(endpoint)
        if bulkhead is None:
            bulkhead = self._bulkheads[endpoint] = trio.CapacityLimiter(self._max_per_endpoint)
        return bulkhead

    def _release_bulkhead(self, endpoint: str, bulkhead: trio.CapacityLimiter) -> None:
        if (
            len(self._bulkheads) > _MAX_IDLE_BULKHEADS
            and bulkhead.borrowed_tokens == 0
            and bulkhead.statistics().tasks_waiting == 0
        ):
            self._bulkheads.pop(endpoint, None)

    def _report(
        self,
        operation: Operation,
        endpoint: str,
        start: float,
        outcome: OperationOutcome,
        attempts: int,
        error: CloudError | None,
        status: int | None = None,
    ) -> None:
        self._events.operation(
            OperationMetrics(
                provider=self._provider,
                service=operation.service,
                operation=operation.name,
                duration=trio.current_time() - start,
                outcome=outcome,
                retry_count=max(attempts - 1, 0),
                status_code=status if error is None else error.status_code,
                error_code=None if error is None else (error.code or type(error).__name__),
                endpoint=endpoint,
            )
        )
