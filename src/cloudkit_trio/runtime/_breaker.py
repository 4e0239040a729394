"""One endpoint's circuit breaker: a state machine over a sliding window of outcomes.

The state machine is synchronous and O(1) per call, so the hot path reads and updates it
without a message round trip (Trio runs one task at a time: no lock is needed). Only the
timed transition (open → half-open) and eviction belong to the breaker's actor, which is
told about every state change through ``on_change``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

import attrs

from .._errors import CircuitOpenError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..spi import CircuitBreaker

__all__ = ["Breaker", "BreakerSnapshot", "BreakerState", "Outcome", "Permit"]

# Polly splits its sampling window into 10 buckets: old outcomes fall out in tenths.
_BUCKETS: Final = 10


class BreakerState(enum.Enum):
    """Where a breaker stands; the value is the lowercase label used in metrics.

    ``FORCED_OPEN`` and ``FORCED_CLOSED`` are manual overrides that stay until reset.

    .. versionadded:: 0.1.0
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"

    def __str__(self) -> str:
        return self.value


class Outcome(enum.Enum):
    """What an attempt told us about the endpoint's health."""

    SUCCESS = "success"
    #: A retryable failure: network error, timeout, 429, 503, other 5xx.
    FAILURE = "failure"
    #: Says nothing about health: a 404, a validation error, a cancelled caller.
    IGNORED = "ignored"


@attrs.frozen
class Permit:
    """Leave to send one attempt; hand it back with :meth:`Breaker.release`."""

    generation: int
    probe: bool


@attrs.frozen
class BreakerSnapshot:
    """A breaker's state at one instant.

    ``opens_at``/``half_open_at`` are ``trio.current_time()`` values; ``failure_ratio`` is
    over the current sampling window.

    .. versionadded:: 0.1.0
    """

    endpoint: str
    state: BreakerState
    failure_ratio: float
    calls_in_window: int
    #: When an open breaker will admit a probe (``trio.current_time()``), else None.
    half_open_at: float | None
    #: Seconds until then, else None.
    time_until_half_open: float | None
    probes_in_flight: int
    #: Completed transitions since the breaker was created.
    transitions: int
    last_used: float


class Breaker:
    """The state of one endpoint's breaker; see :class:`~cloudkit_trio.CircuitBreaker`.

    Args:
        endpoint: ``scheme://host:port``.
        settings: The validated breaker settings.
        now: The current ``trio.current_time()``.
        on_change: Called with ``(breaker, old_state, new_state)`` after every transition.
    """

    __slots__ = (
        "_bucket_width",
        "_epochs",
        "_failures",
        "_successes",
        "endpoint",
        "generation",
        "half_open_at",
        "last_used",
        "on_change",
        "probes",
        "settings",
        "state",
        "transitions",
    )

    def __init__(
        self,
        endpoint: str,
        settings: CircuitBreaker,
        now: float,
        on_change: Callable[[Breaker, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.state = BreakerState.CLOSED
        self.generation = 0
        self.half_open_at: float | None = None
        self.probes = 0
        self.transitions = 0
        self.last_used = now
        self.on_change = on_change
        self._bucket_width = settings.sampling_window / _BUCKETS
        self._epochs = [-1] * _BUCKETS
        self._successes = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS

    # -- the hot path ----------------------------------------------------------------------

    def acquire(self, now: float) -> Permit:
        """A permit for one attempt, or :class:`~cloudkit_trio.CircuitOpenError`."""
        self.last_used = now
        state = self.state
        if state is BreakerState.CLOSED or state is BreakerState.FORCED_CLOSED:
            return Permit(self.generation, probe=False)
        if (
            state is BreakerState.OPEN
            and self.half_open_at is not None
            and now >= self.half_open_at
        ):
            # The actor's timer has not run yet (it is busy or restarting): move on anyway.
            self._transition(BreakerState.HALF_OPEN, now)
            state = self.state
        if state is BreakerState.HALF_OPEN and self.probes < self.settings.half_open_probes:
            self.probes += 1
            return Permit(self.generation, probe=True)
        retry_at = self.half_open_at if state is BreakerState.OPEN else None
        raise CircuitOpenError(
            f"circuit for {self.endpoint} is {state}: rejected without a network call",
            endpoint=self.endpoint,
            retry_at=retry_at,
        )

    def release(self, permit: Permit, outcome: Outcome, now: float) -> None:
        """Report how the permitted attempt went. Synchronous: safe in cancelled cleanup."""
        self.last_used = now
        if permit.generation != self.generation:
            return  # the breaker changed state since; this outcome describes the old era
        if permit.probe:
            self.probes -= 1
            if outcome is Outcome.SUCCESS:
                self._transition(BreakerState.CLOSED, now)
            elif outcome is Outcome.FAILURE:
                self._open(now)
            return
        if outcome is Outcome.IGNORED:
            return
        index = self._bucket(now)
        if outcome is Outcome.SUCCESS:
            self._successes[index] += 1
            return
        self._failures[index] += 1
        if self.state is BreakerState.CLOSED:
            calls, failures = self._totals(now)
            if calls >= self.settings.minimum_throughput and (
                failures >= self.settings.failure_ratio * calls
            ):
                self._open(now)

    # -- timed and manual transitions ------------------------------------------------------

    def half_open_if_due(self, now: float) -> None:
        """Open → half-open once the break is over (the actor's timer calls this)."""
        if (
            self.state is BreakerState.OPEN
            and self.half_open_at is not None
            and now >= self.half_open_at
        ):
            self._transition(BreakerState.HALF_OPEN, now)

    def force_open(self, now: float) -> None:
        """Reject every call until :meth:`reset`."""
        self._transition(BreakerState.FORCED_OPEN, now)

    def force_closed(self, now: float) -> None:
        """Admit every call and ignore failures until :meth:`reset`."""
        self._transition(BreakerState.FORCED_CLOSED, now)

    def reset(self, now: float) -> None:
        """Back to closed with an empty window."""
        self._transition(BreakerState.CLOSED, now)

    @property
    def evictable(self) -> bool:
        """Whether the breaker holds nothing worth keeping: closed, no probes in flight."""
        return self.state is BreakerState.CLOSED and self.probes == 0

    def snapshot(self, now: float) -> BreakerSnapshot:
        """The state as of ``now`` (a break that is over reads as half-open)."""
        self.half_open_if_due(now)
        calls, failures = self._totals(now)
        until = None
        if self.state is BreakerState.OPEN and self.half_open_at is not None:
            until = max(self.half_open_at - now, 0.0)
        return BreakerSnapshot(
            endpoint=self.endpoint,
            state=self.state,
            failure_ratio=failures / calls if calls else 0.0,
            calls_in_window=calls,
            half_open_at=self.half_open_at if self.state is BreakerState.OPEN else None,
            time_until_half_open=until,
            probes_in_flight=self.probes,
            transitions=self.transitions,
            last_used=self.last_used,
        )

    # -- internals -------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._transition(BreakerState.OPEN, now)

    def _transition(self, new: BreakerState, now: float) -> None:
        old = self.state
        if new is old and new is not BreakerState.OPEN:
            return
        self.state = new
        self.generation += 1
        self.transitions += 1
        self.probes = 0
        self.half_open_at = now + self.settings.break_duration if new is BreakerState.OPEN else None
        if new is BreakerState.CLOSED or new is BreakerState.FORCED_CLOSED:
            self._epochs = [-1] * _BUCKETS
            self._successes = [0] * _BUCKETS
            self._failures = [0] * _BUCKETS
        if self.on_change is not None:
            self.on_change(self, old, new)

    def _bucket(self, now: float) -> int:
        epoch = int(now // self._bucket_width)
        index = epoch % _BUCKETS
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._successes[index] = 0
            self._failures[index] = 0
        return index

    def _totals(self, now: float) -> tuple[int, int]:
        oldest = int(now // self._bucket_width) - _BUCKETS + 1
        calls = failures = 0
        for index in range(_BUCKETS):
            if self._epochs[index] >= oldest:
                calls += self._successes[index] + self._failures[index]
                failures += self._failures[index]
        return calls, failures
