"""Admission: the context's concurrency limit, and one decision per endpoint.

An operation takes a slot of the global limit first, then one of its endpoint's bulkhead,
and gives both back when it ends. Waiting for either is a wait like any other: it happens
inside the operation's scope, so its deadline and shutdown bound it.

Each endpoint also has a :class:`Gate`: the one place that decides, for every attempt,
whether it is admitted now, delayed (a rate limit's token), or refused with a typed error
(a deadline shorter than the endpoint's recent latency, a fail-fast rate limit), and for
every retry whether the endpoint's retry budget allows it. It learns from each answer:
the adaptive concurrency limit (which sets the bulkhead's size), the adaptive rate, the
latency estimate. Gates of endpoints nobody uses are dropped once they have come to rest,
so memory stays bounded however many endpoints a program talks to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._errors import CloudError, OperationTimeout, Overloaded, RateLimited, Throttled
from .._masking import mask_url
from ..spi import AdaptiveConcurrency, RateLimit, RetryBudget
from ._budget import RetryBudgetSnapshot, RetryBudgetState
from ._concurrency import ConcurrencyLimit, ConcurrencyLimitSnapshot, LimitOutcome
from ._flight import Wait
from ._latency import LatencyEstimate, LatencySnapshot
from ._ratelimit import TokenBucket, TokenBucketSnapshot

if TYPE_CHECKING:
    from ._flight import Flight

__all__ = ["Admission", "AdmissionSettings", "EndpointAdmission", "Gate"]

# How long a gate nobody uses is kept after it has come to rest (the breakers' default).
_IDLE_EVICTION: Final = 300.0
# How often, at most, the hot path looks for gates to drop.
_SWEEP_INTERVAL: Final = 10.0
# Past this many gates a sweep is made at once, whatever the interval.
_MAX_GATES: Final = 10_000


@attrs.frozen(kw_only=True)
class AdmissionSettings:
    """What the builder configured (validated there)."""

    budget: RetryBudget | None = None
    #: Rate limits by endpoint; the key None applies to every endpoint not listed.
    rate_limits: Mapping[str | None, RateLimit] = attrs.field(factory=dict)
    concurrency: AdaptiveConcurrency | None = None
    #: Refuse attempts whose deadline is shorter than the endpoint's recent latency.
    shed: bool = True


@attrs.frozen
class EndpointAdmission:
    """One endpoint's admission state at one instant (``snapshot().admission``).

    .. versionadded:: 0.2.0
    """

    endpoint: str
    #: The bulkhead's size now: ``max_concurrency_per_endpoint``, or the adaptive limit.
    concurrency_limit: int
    budget: RetryBudgetSnapshot | None
    rate_limit: TokenBucketSnapshot | None
    concurrency: ConcurrencyLimitSnapshot | None
    latency: LatencySnapshot
    #: Retries the budget refused, attempts a fail-fast limit refused, attempts shed.
    retries_suppressed: int
    throttled: int
    shed: int
    #: Operations refused for want of a slot under the adaptive concurrency limit.
    overloaded: int = 0


class Gate:
    """Every admission decision of one endpoint, and what it learns from answers."""

    __slots__ = (
        "_shed",
        "bucket",
        "budget",
        "bulkhead",
        "concurrency",
        "endpoint",
        "latency",
        "max_wait",
        "overloaded",
        "shed",
        "throttled",
    )

    def __init__(
        self,
        endpoint: str,
        settings: AdmissionSettings,
        bulkhead_size: int,
        now: float,
    ) -> None:
        self.endpoint = endpoint
        self.budget = (
            None if settings.budget is None else RetryBudgetState(endpoint, settings.budget, now)
        )
        limits = settings.rate_limits
        limit = limits.get(endpoint) or limits.get(None)
        self.bucket = None if limit is None else TokenBucket(endpoint, limit, now)
        self.concurrency = (
            None
            if settings.concurrency is None
            else ConcurrencyLimit(endpoint, settings.concurrency, now)
        )
        #: How long an operation may wait for a bulkhead slot; None: up to its deadline.
        self.max_wait: float | None = None
        if settings.concurrency is not None:
            bulkhead_size = settings.concurrency.initial_limit
            self.max_wait = settings.concurrency.max_wait
        self.bulkhead = trio.CapacityLimiter(bulkhead_size)
        self.latency = LatencyEstimate(endpoint, now)
        self._shed = settings.shed
        self.shed = 0
        self.throttled = 0
        self.overloaded = 0

    # -- per attempt -----------------------------------------------------------------------

    def first_attempt(self, now: float) -> None:
        """The operation's first attempt is about to be made: it feeds the retry budget."""
        budget = self.budget
        if budget is not None:
            budget.deposit(now)

    def admit(self, flight: Flight, now: float) -> float:
        """Admit one attempt: seconds to wait for its rate-limit token (usually 0.0).

        Raises :class:`~cloudkit_trio.Throttled` (a fail-fast limit has no token, or the
        next token comes after the deadline) or :class:`~cloudkit_trio.OperationTimeout`
        (the deadline left is shorter than the endpoint's recent latency), before anything
        is sent.
        """
        remaining = flight.deadline - now
        # A deadline already past is the attempt's scope's to report, as a timeout.
        if self._shed and 0.0 < remaining != math.inf and self.latency.sheds(remaining):
            self.shed += 1
            median = self.latency.median or 0.0
            raise OperationTimeout(
                f"refused at admission: {remaining:.3f} s left before the deadline, and "
                f"{mask_url(self.endpoint)} answers in {median:.3f} s (recent median); "
                "the attempt was not sent",
                timeout=flight.deadline - flight.start,
                waiting_for=Wait.ADMISSION,
            )
        bucket = self.bucket
        if bucket is None:
            return 0.0
        if not bucket.settings.wait:
            if bucket.try_take(now):
                return 0.0
            self.throttled += 1
            raise Throttled(
                f"the rate limit of {mask_url(self.endpoint)} ({bucket.rate:g}/s) has no "
                "token now and waiting is off (RateLimit(wait=False)); nothing was sent",
                retry_after=1.0 / bucket.rate,
            )
        # The token must come early enough for the attempt to be answered in time, as the
        # endpoint answers lately; a later one would be spent on a request sent to fail.
        usual = self.latency.median if self._shed else None
        delay = bucket.reserve(now, remaining - usual if usual is not None else remaining)
        if delay == math.inf:
            self.throttled += 1
            raise Throttled(
                f"the rate limit of {mask_url(self.endpoint)} ({bucket.rate:g}/s) has no "
                f"token before the operation's deadline ({remaining:.3f} s left); nothing "
                "was sent",
                retry_after=1.0 / bucket.rate,
            )
        return delay

    async def enter(self, flight: Flight) -> None:
        """Wait for a slot of the bulkhead, at most :attr:`max_wait` seconds.

        Raises :class:`~cloudkit_trio.Overloaded` when none came in time.
        """
        bulkhead, max_wait = self.bulkhead, self.max_wait
        if max_wait is None:
            await bulkhead.acquire_on_behalf_of(flight)
            return
        if max_wait > 0.0:
            with trio.move_on_after(max_wait):
                await bulkhead.acquire_on_behalf_of(flight)
                return
        else:
            try:
                bulkhead.acquire_on_behalf_of_nowait(flight)
            except trio.WouldBlock:
                pass
            else:
                return
        self.overloaded += 1
        waited = "" if max_wait == 0.0 else f" within {max_wait:g} s"
        raise Overloaded(
            f"the adaptive concurrency limit of {mask_url(self.endpoint)} "
            f"({int(bulkhead.total_tokens)} in flight) had no free slot{waited} "
            f"(AdaptiveConcurrency.max_wait={max_wait:g}); nothing was sent"
        )

    def give_back(self, now: float, due: float) -> None:
        """The caller stopped waiting for the token due at ``due``: it is not spent."""
        bucket = self.bucket
        if bucket is not None:
            bucket.cancel(now, due)

    def acquire(self) -> bool:
        """Count an attempt against the adaptive limit; False when it was not counted."""
        concurrency = self.concurrency
        return concurrency is not None and concurrency.try_acquire()

    def answered(
        self, now: float, rtt: float, error: CloudError | None, *, counted: bool, sent: bool
    ) -> None:
        """Learn from one attempt's end: ``error`` None for a success.

        ``counted`` says whether :meth:`acquire` counted it; ``sent`` whether it got an
        answer or a failure of its own (a cancelled attempt teaches nothing).
        """
        if not sent:
            outcome = LimitOutcome.IGNORED
        elif error is None:
            outcome = LimitOutcome.SUCCESS
            self.latency.record(now, rtt)
        elif error.retryable:
            outcome = LimitOutcome.DROPPED
        else:
            outcome = LimitOutcome.IGNORED
        bucket = self.bucket
        if bucket is not None and sent:
            bucket.on_response(now, isinstance(error, RateLimited))
        concurrency = self.concurrency
        if concurrency is not None and counted:
            concurrency.release(now, rtt, outcome)
            limit = concurrency.limit
            if self.bulkhead.total_tokens != limit:
                self.bulkhead.total_tokens = limit

    # -- per retry -------------------------------------------------------------------------

    def may_retry(self, now: float) -> bool:
        """Whether the retry budget allows a retry scheduled now (True counts it)."""
        budget = self.budget
        return budget is None or budget.try_withdraw(now)

    # -- registry --------------------------------------------------------------------------

    def idle_since(self) -> float:
        """Since when every part of the gate has been at rest."""
        since = self.latency.idle_since
        for part in (self.budget, self.bucket, self.concurrency):
            if part is not None and part.idle_since > since:
                since = part.idle_since
        return since

    def evictable(self) -> bool:
        bulkhead = self.bulkhead
        if bulkhead.borrowed_tokens or bulkhead.statistics().tasks_waiting:
            return False
        return self.concurrency is None or self.concurrency.evictable

    def snapshot(self, now: float) -> EndpointAdmission:
        budget = self.budget
        return EndpointAdmission(
            endpoint=self.endpoint,
            concurrency_limit=int(self.bulkhead.total_tokens),
            budget=None if budget is None else budget.snapshot(now),
            rate_limit=None if self.bucket is None else self.bucket.snapshot(now),
            concurrency=None if self.concurrency is None else self.concurrency.snapshot(now),
            latency=self.latency.snapshot(now),
            retries_suppressed=0 if budget is None else budget.suppressed,
            throttled=self.throttled,
            shed=self.shed,
            overloaded=self.overloaded,
        )


class Admission:
    """Concurrency slots (one global limiter, one bulkhead per endpoint) and the gates."""

    __slots__ = (
        "_gates",
        "_limiter",
        "_next_sweep",
        "_per_endpoint",
        "max_concurrency",
        "on_shared_bucket",
        "settings",
    )

    def __init__(
        self,
        *,
        max_concurrency: int,
        max_per_endpoint: int,
        settings: AdmissionSettings | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self._per_endpoint = max_per_endpoint
        self.settings = settings if settings is not None else AdmissionSettings()
        self._limiter = trio.CapacityLimiter(max_concurrency)
        self._gates: dict[str, Gate] = {}
        self._next_sweep = -math.inf
        #: Called when a gate with a shared rate limit is made: its first lease is taken
        #: at once, so a process that starts sending paces on its share, not the limit.
        self.on_shared_bucket: Callable[[], None] | None = None

    @property
    def endpoints(self) -> int:
        return len(self._gates)

    def gate(self, endpoint: str) -> Gate:
        """The endpoint's gate, made on first use."""
        gate = self._gates.get(endpoint)
        if gate is None:
            now = trio.current_time()
            if now >= self._next_sweep or len(self._gates) >= _MAX_GATES:
                self.sweep(now)
            gate = self._gates[endpoint] = Gate(endpoint, self.settings, self._per_endpoint, now)
            notify = self.on_shared_bucket
            if notify is not None and gate.bucket is not None and gate.bucket.settings.shared:
                notify()
        return gate

    def sweep(self, now: float) -> None:
        """Drop the gates that have been at rest for ``_IDLE_EVICTION`` seconds."""
        self._next_sweep = now + _SWEEP_INTERVAL
        horizon = now - _IDLE_EVICTION
        idle = [
            endpoint
            for endpoint, gate in self._gates.items()
            if gate.idle_since() <= horizon and gate.evictable()
        ]
        for endpoint in idle:
            del self._gates[endpoint]

    def try_admit(self, flight: Flight) -> bool:
        """Take both slots if both are free now (the common case: no wait, no scope)."""
        limiter, bulkhead = self._limiter, flight.bulkhead
        try:
            limiter.acquire_on_behalf_of_nowait(flight)
        except trio.WouldBlock:
            return False
        try:
            bulkhead.acquire_on_behalf_of_nowait(flight)
        except trio.WouldBlock:
            limiter.release_on_behalf_of(flight)
            return False
        return True

    async def admit(self, flight: Flight) -> None:
        """Wait for a slot of the global limit, then one of the endpoint's bulkhead.

        Raises :class:`~cloudkit_trio.Overloaded` when an adaptive limit's bulkhead had
        no slot within its ``max_wait``.
        """
        limiter = self._limiter
        await limiter.acquire_on_behalf_of(flight)
        try:
            await flight.gate.enter(flight)
        except BaseException:
            limiter.release_on_behalf_of(flight)
            raise

    def release(self, flight: Flight) -> None:
        flight.bulkhead.release_on_behalf_of(flight)
        self._limiter.release_on_behalf_of(flight)

    def slots_in_use(self) -> int:
        return int(self._limiter.borrowed_tokens)

    def snapshots(self, now: float) -> tuple[EndpointAdmission, ...]:
        return tuple(gate.snapshot(now) for gate in self._gates.values())

    def shared_buckets(self) -> list[tuple[str, TokenBucket]]:
        """(endpoint, bucket) of every gate whose rate limit is shared by processes."""
        return [
            (endpoint, gate.bucket)
            for endpoint, gate in self._gates.items()
            if gate.bucket is not None and gate.bucket.settings.shared
        ]

    def gauges(self) -> list[tuple[str, int, float | None]]:
        """(endpoint, concurrency limit, adaptive rate or None) of the adaptive gates."""
        return [
            (
                gate.endpoint,
                int(gate.bulkhead.total_tokens),
                None
                if gate.bucket is None or not gate.bucket.settings.adaptive
                else gate.bucket.rate,
            )
            for gate in self._gates.values()
            if gate.concurrency is not None
            or (gate.bucket is not None and gate.bucket.settings.adaptive)
        ]
