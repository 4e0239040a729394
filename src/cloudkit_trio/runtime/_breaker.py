"""One endpoint's circuit breaker: a transition table over a sliding window of outcomes.

Every state change is an event looked up in :data:`TRANSITIONS`, as h11's ``_state.py``
does it: the table is the whole state machine, so it can be read, tested and reviewed on
its own, and an event the table does not expect for the current state is a bug in this
package (:class:`IllegalTransition`), never a silently accepted move.

The breaker is synchronous and O(1) per call, so the hot path reads and updates it without
a message round trip (Trio runs one task at a time: no lock is needed); in CLOSED an
acquire is a few attribute reads and writes. Timed work belongs to the breaker's actor in
the registry, which asks :meth:`Breaker.timer_due` when to look again and calls
:meth:`Breaker.on_timer` then, and is told about every state change through
``on_change``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from fractions import Fraction
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import attrs

from .._errors import CircuitFailure, CircuitOpenError, CloudError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..spi import CircuitBreaker

__all__ = [
    "Breaker",
    "BreakerEvent",
    "BreakerSnapshot",
    "BreakerState",
    "IllegalTransition",
    "Outcome",
    "Permit",
    "TRANSITIONS",
]

# Polly splits its sampling window into 10 buckets: old outcomes fall out in tenths.
_BUCKETS: Final = 10
# How many of the latest failures a CircuitOpenError tells about.
_RECENT_FAILURES: Final = 5


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


class BreakerEvent(enum.Enum):
    """What can happen to a breaker; :data:`TRANSITIONS` says where each event leads."""

    #: Closed, and the window's failure share reached ``failure_ratio``.
    FAILURE_THRESHOLD_REACHED = "failure_threshold_reached"
    #: Open for ``break_duration`` seconds.
    BREAK_ELAPSED = "break_elapsed"
    PROBE_SUCCEEDED = "probe_succeeded"
    PROBE_FAILED = "probe_failed"
    #: Half-open with no probe for ``idle_eviction`` seconds: nobody is asking any more,
    #: so there is nothing left to find out (the registry then evicts the breaker).
    IDLE_EXPIRED = "idle_expired"
    #: Enough other processes report the endpoint open (shared state, ``quorum``).
    QUORUM_REACHED = "quorum_reached"
    #: Open, and another process's probe found the endpoint healthy (shared state).
    RECOVERED_ELSEWHERE = "recovered_elsewhere"
    FORCE_OPEN = "force_open"
    FORCE_CLOSED = "force_closed"
    RESET = "reset"

    def __str__(self) -> str:
        return self.value


_S = BreakerState
_E = BreakerEvent

#: The breaker's state machine: ``(state, event) -> next state``. A pair not listed is a
#: bug. A manual event into the state the breaker is already in is listed (force_open
#: twice is fine): it starts the state afresh but is not announced as a change.
TRANSITIONS: Final[Mapping[tuple[BreakerState, BreakerEvent], BreakerState]] = MappingProxyType(
    {
        (_S.CLOSED, _E.FAILURE_THRESHOLD_REACHED): _S.OPEN,
        (_S.OPEN, _E.BREAK_ELAPSED): _S.HALF_OPEN,
        (_S.HALF_OPEN, _E.PROBE_SUCCEEDED): _S.CLOSED,
        (_S.HALF_OPEN, _E.PROBE_FAILED): _S.OPEN,
        (_S.HALF_OPEN, _E.IDLE_EXPIRED): _S.CLOSED,
        # Other processes saw the endpoint fail: open as if this one had.
        (_S.CLOSED, _E.QUORUM_REACHED): _S.OPEN,
        (_S.HALF_OPEN, _E.QUORUM_REACHED): _S.OPEN,
        (_S.OPEN, _E.RECOVERED_ELSEWHERE): _S.CLOSED,
        # An operator may override or reset a breaker whatever it is doing.
        **{(state, _E.FORCE_OPEN): _S.FORCED_OPEN for state in _S},
        **{(state, _E.FORCE_CLOSED): _S.FORCED_CLOSED for state in _S},
        **{(state, _E.RESET): _S.CLOSED for state in _S},
    }
)


class IllegalTransition(RuntimeError):
    """An event arrived that :data:`TRANSITIONS` does not allow in the breaker's state.

    Always a bug in cloudkit_trio, never a user error: the breaker is left as it was.
    """


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

    ``half_open_at`` and ``last_used`` are ``trio.current_time()`` values;
    ``failure_ratio`` is over the current sampling window.

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
    #: Permits handed out and not yet released, probes included.
    calls_in_flight: int
    #: When an open breaker opened (``trio.current_time()``), else None.
    opened_at: float | None = None
    #: The failures that opened it (the latest last), while it is open or half-open.
    #: (.. versionadded:: 0.2.0)
    opened_by: tuple[CircuitFailure, ...] = ()


@cache
def _exact_ratio(ratio: float) -> tuple[int, int]:
    # "Opens when the share reaches 0.28" must hold at exactly 7 of 25, but 0.28 * 25 is
    # 7.000000000000001 in floats. The decimal the user wrote is what they meant: compare
    # integers against it instead.
    exact = Fraction(repr(ratio))
    return exact.numerator, exact.denominator


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
        "_permit",
        "_probe_permit",
        "_ratio_den",
        "_ratio_num",
        "_recent",
        "_successes",
        "endpoint",
        "generation",
        "half_open_at",
        "inflight",
        "last_event",
        "last_used",
        "on_change",
        "opened_at",
        "opened_by",
        "probes",
        "settings",
        "since",
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
        #: Probe permits of this generation not yet released.
        self.probes = 0
        #: Every permit not yet released, of any generation: a breaker whose calls are
        #: still running is not idle, however long ago they started.
        self.inflight = 0
        self.transitions = 0
        #: The event of the latest transition (None before the first).
        self.last_event: BreakerEvent | None = None
        self.last_used = now
        #: When the current state was entered.
        self.since = now
        self.on_change = on_change
        self._ratio_num, self._ratio_den = _exact_ratio(settings.failure_ratio)
        self._bucket_width = settings.sampling_window / _BUCKETS
        self._epochs = [-1] * _BUCKETS
        self._successes = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        # Permits are frozen values: one of each kind per generation, not one per call.
        self._permit = Permit(0, probe=False)
        self._probe_permit = Permit(0, probe=True)
        # Summaries of the latest failures, built only when one happens.
        self._recent: deque[CircuitFailure] = deque(maxlen=_RECENT_FAILURES)
        #: When the breaker last opened (or was forced open); None while closed.
        self.opened_at: float | None = None
        #: The failures that opened the breaker, from the moment it opened.
        self.opened_by: tuple[CircuitFailure, ...] = ()

    # -- the hot path ----------------------------------------------------------------------

    def acquire(self, now: float) -> Permit:
        """A permit for one attempt, or :class:`~cloudkit_trio.CircuitOpenError`."""
        self.last_used = now
        state = self.state
        if state is BreakerState.CLOSED or state is BreakerState.FORCED_CLOSED:
            self.inflight += 1
            return self._permit
        if (
            state is BreakerState.OPEN
            and self.half_open_at is not None
            and now >= self.half_open_at
        ):
            # The actor's timer has not run yet (it is busy or restarting): move on anyway.
            self._fire(BreakerEvent.BREAK_ELAPSED, now)
            state = self.state
        if state is BreakerState.HALF_OPEN and self.probes < self.settings.half_open_probes:
            self.probes += 1
            self.inflight += 1
            return self._probe_permit
        raise self._rejection(state, now)

    def _rejection(self, state: BreakerState, now: float) -> CircuitOpenError:
        retry_at = self.half_open_at if state is BreakerState.OPEN else None
        opened_at = self.since if self.opened_at is None else self.opened_at
        if state is BreakerState.FORCED_OPEN:
            why = f"forced open {now - opened_at:.1f} s ago"
        else:
            why = f"{state}, opened {now - opened_at:.1f} s ago"
            if self.opened_by:
                why += " after " + ", ".join(str(failure) for failure in self.opened_by)
            if retry_at is not None:
                why += f"; a probe is allowed in {max(retry_at - now, 0.0):.1f} s"
        return CircuitOpenError(
            f"circuit for {self.endpoint} is {why}: rejected without a network call",
            endpoint=self.endpoint,
            retry_at=retry_at,
            opened_at=opened_at,
            failures=self.opened_by,
        )

    def release(
        self, permit: Permit, outcome: Outcome, now: float, error: CloudError | None = None
    ) -> None:
        """Report how the permitted attempt went. Synchronous: safe in cancelled cleanup.

        ``error`` is the failure, when ``outcome`` is one: its summary is what a
        :class:`~cloudkit_trio.CircuitOpenError` reports if the circuit opens.
        """
        self.last_used = now
        if outcome is Outcome.FAILURE and error is not None:
            self._recent.append(CircuitFailure.of(error, now))
        self.inflight -= 1
        if permit.generation != self.generation:
            return  # the breaker changed state since; this outcome describes the old era
        if permit.probe:
            self.probes -= 1
            if outcome is Outcome.SUCCESS:
                self._fire(BreakerEvent.PROBE_SUCCEEDED, now)
            elif outcome is Outcome.FAILURE:
                self._fire(BreakerEvent.PROBE_FAILED, now)
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
            if (
                calls >= self.settings.minimum_throughput
                and failures * self._ratio_den >= self._ratio_num * calls
            ):
                self._fire(BreakerEvent.FAILURE_THRESHOLD_REACHED, now)

    # -- timed and manual transitions ------------------------------------------------------

    def half_open_if_due(self, now: float) -> None:
        """Open → half-open once the break is over (the actor's timer calls this)."""
        if (
            self.state is BreakerState.OPEN
            and self.half_open_at is not None
            and now >= self.half_open_at
        ):
            self._fire(BreakerEvent.BREAK_ELAPSED, now)

    def open_by_quorum(self, now: float) -> bool:
        """Open because enough processes report the endpoint open; True if it opened.

        Only a breaker that is closed or probing opens: an open one is already, and an
        operator's override wins.
        """
        if self.state is BreakerState.CLOSED or self.state is BreakerState.HALF_OPEN:
            self._fire(BreakerEvent.QUORUM_REACHED, now)
            return True
        return False

    def defer_half_open(self) -> float | None:
        """Keep an open breaker open past its break, until :meth:`allow_half_open`: while
        another process holds the endpoint's probe lease, this one must not probe. Returns
        when the break would have ended (None when the breaker is not open)."""
        if self.state is not BreakerState.OPEN:
            return None
        due, self.half_open_at = self.half_open_at, None
        return due

    def allow_half_open(self, at: float) -> None:
        """Let a deferred open breaker probe from ``at`` on (this process holds the lease,
        or the lease cannot be asked for: the shared store is away)."""
        if self.state is BreakerState.OPEN:
            self.half_open_at = at

    def recovered_elsewhere(self, now: float) -> bool:
        """Close an open breaker because another process's probe succeeded; True if closed."""
        if self.state is BreakerState.OPEN:
            self._fire(BreakerEvent.RECOVERED_ELSEWHERE, now)
            return True
        return False

    def force_open(self, now: float) -> None:
        """Reject every call until :meth:`reset`."""
        self._fire(BreakerEvent.FORCE_OPEN, now)

    def force_closed(self, now: float) -> None:
        """Admit every call and ignore failures until :meth:`reset`."""
        self._fire(BreakerEvent.FORCE_CLOSED, now)

    def reset(self, now: float) -> None:
        """Back to closed with an empty window."""
        self._fire(BreakerEvent.RESET, now)

    @property
    def idle_since(self) -> float:
        """Since when nothing happened: the later of the last use and the last transition."""
        return max(self.last_used, self.since)

    @property
    def evictable(self) -> bool:
        """Whether dropping the breaker loses nothing: closed, nothing in flight.

        A breaker with permits in flight is never evictable: its calls' outcomes are the
        news it exists to hear (a call that hangs until its timeout is the failure).
        """
        return self.state is BreakerState.CLOSED and self.inflight == 0

    def timer_due(self, now: float) -> float:
        """When the actor should next call :meth:`on_timer` (``math.inf``: only on change)."""
        state = self.state
        if state is BreakerState.OPEN and self.half_open_at is not None:
            return self.half_open_at
        if state is BreakerState.CLOSED or state is BreakerState.HALF_OPEN:
            if self.inflight:
                # Releases do not wake the actor (that would cost every call an event):
                # look again later instead.
                return now + self.settings.idle_eviction
            return self.idle_since + self.settings.idle_eviction
        return math.inf

    def on_timer(self, now: float) -> bool:
        """Do what is due at ``now``; True when the breaker has expired and may be dropped.

        Open → half-open after the break. Half-open with no probe for ``idle_eviction``
        seconds → closed (:attr:`BreakerEvent.IDLE_EXPIRED`) and expired; closed and idle
        as long → expired. Idle counts from :attr:`idle_since`, so a breaker that just
        went half-open gets the full ``idle_eviction`` for a probe to arrive.
        """
        state = self.state
        if state is BreakerState.OPEN:
            self.half_open_if_due(now)
            return False
        if self.inflight or now < self.idle_since + self.settings.idle_eviction:
            return False
        if state is BreakerState.HALF_OPEN:
            self._fire(BreakerEvent.IDLE_EXPIRED, now)
            return True
        return state is BreakerState.CLOSED

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
            calls_in_flight=self.inflight,
            opened_at=self.opened_at,
            opened_by=self.opened_by,
        )

    # -- internals -------------------------------------------------------------------------

    def _fire(self, event: BreakerEvent, now: float) -> None:
        old = self.state
        new = TRANSITIONS.get((old, event))
        if new is None:
            raise IllegalTransition(
                f"internal error in cloudkit_trio: the breaker for {self.endpoint} got "
                f"{event} while {old}, which its transition table does not allow; "
                "please report this bug"
            )
        # Entering a state (or entering it again) starts a new era: outcomes of permits
        # handed out before describe the old one and are not counted.
        self.state = new
        self.last_event = event
        self.since = now
        self.generation += 1
        self._permit = Permit(self.generation, probe=False)
        self._probe_permit = Permit(self.generation, probe=True)
        self.probes = 0
        self.half_open_at = now + self.settings.break_duration if new is BreakerState.OPEN else None
        if new is BreakerState.CLOSED or new is BreakerState.FORCED_CLOSED:
            self._epochs = [-1] * _BUCKETS
            self._successes = [0] * _BUCKETS
            self._failures = [0] * _BUCKETS
            self._recent.clear()
            self.opened_at, self.opened_by = None, ()
        elif new is BreakerState.OPEN:
            # Opened by the quorum, its own window may hold no failure at all.
            self.opened_at, self.opened_by = now, tuple(self._recent)
        elif new is BreakerState.FORCED_OPEN:
            self.opened_at, self.opened_by = now, ()
        if new is old:
            return  # e.g. force_open twice: nothing changed that anyone needs to hear
        self.transitions += 1
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
