"""One attempt: breaker permit, sign, send, read, classify, report to the breaker.

This is the only place an attempt touches the network. Foreign failures become the
runtime's errors here and in ``transport._classify`` (the one mapping of HTTP and
transport failures); the signer is user code and is contained here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx
import trio

from .._errors import CircuitOpenError, CloudError, InternalError, OperationTimeout
from .._masking import secret_values
from .._streaming import read_body
from ..transport._classify import error_from_exception, error_from_response
from ._breaker import Outcome, Permit
from ._containment import Spi
from ._flight import Wait
from ._tracing import DecisionKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._credentials import Credentials
    from ._containment import Containment
    from ._events import RuntimeEvents
    from ._flight import Flight
    from ._lifecycle import Lifecycle
    from ._registry import BreakerRegistry
    from ._tracing import TracedAttempt, TracedOperation

__all__ = ["Attempts"]

# A body with this header must go through the (bounded) decoders.
_ENCODED: Final = "content-encoding"
# The default CloudConfig.max_response_size, for runtimes built without a config.
_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024


class Attempts:
    """Sends one attempt of an operation and says how it went."""

    __slots__ = (
        "_breakers",
        "_containment",
        "_events",
        "_lifecycle",
        "_max_response_size",
        "_timeout",
        "_transport",
        "interrupted",
    )

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport,
        breakers: BreakerRegistry,
        events: RuntimeEvents,
        containment: Containment,
        lifecycle: Lifecycle,
        attempt_timeout: float,
        max_response_size: int = _MAX_RESPONSE_SIZE,
    ) -> None:
        self._transport = transport
        self._breakers = breakers
        self._events = events
        self._containment = containment
        self._lifecycle = lifecycle
        self._timeout = attempt_timeout
        self._max_response_size = max_response_size
        #: The error for an operation its own deadline or shutdown cut short (the runner's).
        self.interrupted: Callable[[Flight], CloudError] = _no_interruptions

    async def send(
        self,
        flight: Flight,
        credentials: Credentials | None,
        *,
        stream: bool,
        now: float | None = None,
        trace: TracedOperation | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """One attempt; a successful response and its body, or a :class:`CloudError`.

        A streamed success is returned unread. The attempt runs in one scope that the
        lifecycle owns, whose deadline is the earlier of the attempt's timeout and the
        operation's deadline; which of them (or shutdown) ended it is decided afterwards.
        With ``trace``, an attempt the breaker admits is a span of its own (from its
        permit to its answer); a refusal is an event of the operation's.
        """
        endpoint = flight.endpoint
        breaker = self._breakers.get(endpoint)
        if now is None:
            now = trio.current_time()
        permit: Permit | None = None
        if breaker is not None:
            try:
                permit = breaker.acquire(now)
            except CircuitOpenError as refusal:
                self._events.breaker_rejected(endpoint)
                if trace is not None:
                    trace.decision(
                        DecisionKind.CIRCUIT_OPEN, now, None, refusal, retry_at=refusal.retry_at
                    )
                raise
        outcome = Outcome.IGNORED
        failure: CloudError | None = None
        gate = flight.gate
        counted = gate.acquire()
        answered = False
        attempt: TracedAttempt | None = None if trace is None else trace.attempt(now)
        status: int | None = None
        try:
            request = flight.request
            self._sign(flight, credentials)
            flight.waiting_for = Wait.ATTEMPT
            attempt_deadline = now + self._timeout
            lifecycle = self._lifecycle
            scope = lifecycle.open_scope(min(attempt_deadline, flight.deadline))
            try:
                with scope:
                    try:
                        response, content = await self._exchange(request, stream=stream)
                    except CloudError:
                        answered = True  # a transport failure is the endpoint's answer too
                        raise
            finally:
                lifecycle.close_scope(scope)
            if scope.cancelled_caught:
                if lifecycle.cancelled:
                    raise self.interrupted(flight)
                # Sent, and not answered within the time it had: the endpoint's admission
                # state learns from that as from an attempt timeout (a drop), or an
                # adaptive limit would stop learning just when the endpoint is slow.
                answered = True
                if attempt_deadline >= flight.deadline:
                    raise self.interrupted(flight)
                raise OperationTimeout(
                    f"the attempt timed out after {self._timeout:g}s",
                    timeout=self._timeout,
                    waiting_for=Wait.ATTEMPT,
                )
            answered = True
            if response.status_code >= 300:
                error = error_from_response(
                    response.status_code,
                    response.headers,
                    content,
                    reason=response.reason_phrase,
                    # A server may quote what it was sent: the signature, the token.
                    secrets=secret_values(request.headers, str(request.url)),
                )
                if error is not None:
                    raise error
            outcome = Outcome.SUCCESS
            status = response.status_code
            return response, content
        except CloudError as error:
            failure = error
            if error.retryable:
                outcome = Outcome.FAILURE
            raise
        finally:
            # Synchronous, so slots and a half-open probe permit come back even when
            # cancelled. An attempt cut short by its operation's deadline or by shutdown
            # was not answered: it teaches the gate nothing.
            end = flight.attempt_ended = trio.current_time()
            gate.answered(end, end - now, failure, counted=counted, sent=answered)
            if breaker is not None and permit is not None:
                breaker.release(permit, outcome, end, failure)
            if attempt is not None:
                attempt.end(end, status, failure)

    def _sign(self, flight: Flight, credentials: Credentials | None) -> None:
        signer = flight.signer
        try:
            signer.sign(flight.request, credentials)
        except CloudError:
            raise
        except Exception as exc:
            self._containment.failed(Spi.SIGNER, "sign", exc)
            raise InternalError(
                f"the request signer {type(signer).__name__} raised "
                f"{type(exc).__name__}; the request was not sent"
            ) from exc

    async def _exchange(
        self, request: httpx.Request, *, stream: bool
    ) -> tuple[httpx.Response, bytes]:
        try:
            response = await self._transport.handle_async_request(request)
            body = response.stream
            if stream and response.status_code < 300:
                return response, b""
            limit = self._max_response_size
            if type(body) is httpx.ByteStream and _ENCODED not in response.headers:
                # Already in memory (PooledTransport hands small bodies over this way):
                # the general reader would cost more than the request.
                content = b"".join(body)
                if len(content) <= limit:
                    return response, content
            # Error bodies are read too, for their error code; past the limit they are cut
            # short rather than refused, so a 503 stays a 503.
            content = await read_body(response, limit=limit, truncate=response.status_code >= 300)
            return response, content
        except CloudError:
            raise
        except Exception as exc:
            error = error_from_exception(
                exc,
                headers=request.headers,
                secrets=secret_values(request.headers, str(request.url)),
            )
            # A refused header's exception quotes its raw value: keep it out of the chain.
            raise error from (None if isinstance(exc, httpx.LocalProtocolError) else exc)


def _no_interruptions(flight: Flight) -> CloudError:
    raise AssertionError("Attempts.interrupted was not wired to the runner")
