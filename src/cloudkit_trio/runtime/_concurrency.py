"""One endpoint's adaptive concurrency limit: how many attempts may be in flight at once.

The limit is learned from what attempts tell when they end, in *rounds*: a round is one
round trip's worth of attempts (as many as were in flight when it began), all started
after the limit last changed, so each decision is made on evidence of the limit it
judges, never on attempts sent under an older one (the rule TCP follows when it reacts
to congestion once per round trip). An attempt that started before the current round
began says nothing new and only frees its slot.

- **AIMD** adds one per round while at least three quarters of the limit were in use, and
  multiplies by ``backoff`` on a drop.
- **Vegas** (TCP Vegas, as Netflix's concurrency-limits adapts it to requests): the
  shortest round trip seen is the *no-load* latency; by Little's law a round's mean
  in-flight count times ``1 - no_load / mean_rtt`` is how many attempts are queued at the
  server. With ``lg = max(1, log10(limit))``, a queue of at most ``lg`` adds ``6 lg`` to
  the limit, under ``3 lg`` adds ``lg``; over ``6 lg`` sets it to the attempts that were
  being served plus a queue of ``3 lg`` (at least ``lg`` less, at most halving it);
  in between the limit holds. Each threshold is capped at a share
  of the limit (5, 10 and 20 %), which changes nothing from a limit of about 200 up and
  keeps a small endpoint's queue short: 3 to 6 attempts queued in front of an endpoint
  that serves 8 at once would make it answer twice as slowly. So it settles a few
  attempts above the concurrency the endpoint serves without queueing. The minimum would go stale if
  the endpoint became slower for good (the queue estimate would then shrink the limit to
  nothing), so every ``probe_multiplier * limit`` successes the limit is halved until a
  few attempts started after that have come back: with the server's queue drained their
  shortest round trip is the new no-load latency (BBR's ProbeRTT, which costs about one
  round trip at half the limit in every ``probe_multiplier``). The round after a probe
  is not judged: its attempts met a queue the probe had drained and would read as room
  to grow.

A *drop* (a timeout, a 503, a throttling answer) multiplies the limit by ``backoff`` under
both algorithms, at most once per round trip: a drop of an attempt that started before
the last cut is part of the same congestion and is not punished twice.

The limit is a float estimate; :attr:`ConcurrencyLimit.limit` is its integer part,
clamped to ``[min_limit, max_limit]``. Every call is O(1) and synchronous: the operation's
task asks :meth:`~ConcurrencyLimit.try_acquire` before an attempt and reports with
:meth:`~ConcurrencyLimit.release` after it, also when it was cancelled.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import attrs

from ..spi._admission import ConcurrencyAlgorithm
from ._breaker import IllegalTransition

if TYPE_CHECKING:
    from ..spi._admission import AdaptiveConcurrency

__all__ = [
    "TRANSITIONS",
    "ConcurrencyEvent",
    "ConcurrencyLimit",
    "ConcurrencyLimitSnapshot",
    "ConcurrencyPhase",
    "LimitOutcome",
]

# Fresh samples a probe measures the no-load latency from (fewer when the limit is smaller).
_PROBE_SAMPLES: Final = 5
# Vegas's queue thresholds never exceed 1, 2 and 4 times this share of the limit.
_QUEUE_SHARE: Final = 0.05


class LimitOutcome(enum.Enum):
    """What an attempt's end tells the concurrency limit."""

    SUCCESS = "success"
    #: The endpoint is overloaded: a timeout, a 503, a throttling answer.
    DROPPED = "dropped"
    #: Says nothing about load: a 404, a validation error, a cancelled caller.
    IGNORED = "ignored"


class ConcurrencyPhase(enum.Enum):
    """Whether the limit is in force (``STEADY``) or halved to re-measure the no-load
    latency (``PROBING``, Vegas only)."""

    STEADY = "steady"
    PROBING = "probing"

    def __str__(self) -> str:
        return self.value


class ConcurrencyEvent(enum.Enum):
    """What moves a limit between phases; :data:`TRANSITIONS` says where each leads."""

    #: ``probe_multiplier * limit`` successes since the last probe.
    PROBE_DUE = "probe_due"
    #: Enough attempts started during the probe have come back.
    PROBE_DONE = "probe_done"

    def __str__(self) -> str:
        return self.value


_P = ConcurrencyPhase
_E = ConcurrencyEvent

#: The phases' state machine: ``(phase, event) -> next phase``. A pair not listed is a bug.
TRANSITIONS: Final[Mapping[tuple[ConcurrencyPhase, ConcurrencyEvent], ConcurrencyPhase]] = (
    MappingProxyType(
        {
            (_P.STEADY, _E.PROBE_DUE): _P.PROBING,
            (_P.PROBING, _E.PROBE_DONE): _P.STEADY,
        }
    )
)


@attrs.frozen
class ConcurrencyLimitSnapshot:
    """An endpoint's adaptive concurrency limit at one instant.

    .. versionadded:: 0.2.0
    """

    endpoint: str
    algorithm: ConcurrencyAlgorithm
    #: Attempts allowed in flight now.
    limit: int
    #: The learned limit, before rounding, clamping and any probe's halving.
    estimate: float
    #: Attempts in flight now.
    inflight: int
    phase: ConcurrencyPhase
    #: The no-load round trip (Vegas), seconds, or None before the first success.
    no_load_rtt: float | None
    #: Drops reported since creation (also those that did not cut the limit again).
    drops: int
    #: Attempts :meth:`ConcurrencyLimit.try_acquire` refused since creation.
    rejected: int
    last_used: float


class ConcurrencyLimit:
    """The adaptive concurrency limit of one endpoint; see
    :class:`~cloudkit_trio.AdaptiveConcurrency`.

    Args:
        endpoint: ``scheme://host:port``.
        settings: The validated settings.
        now: The current ``trio.current_time()``.
    """

    __slots__ = (
        "_cut_at",
        "_estimate",
        "_probe_count",
        "_probe_min",
        "_probe_start",
        "_round_after_probe",
        "_round_count",
        "_round_inflight",
        "_round_rtt",
        "_round_size",
        "_round_start",
        "_round_used",
        "_since_probe",
        "_vegas",
        "drops",
        "endpoint",
        "inflight",
        "last_used",
        "limit",
        "no_load_rtt",
        "phase",
        "rejected",
        "settings",
    )

    def __init__(self, endpoint: str, settings: AdaptiveConcurrency, now: float) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self._vegas = settings.algorithm == "vegas"
        self.phase = ConcurrencyPhase.STEADY
        #: Attempts in flight: acquired and not yet released.
        self.inflight = 0
        self.drops = 0
        self.rejected = 0
        self.last_used = now
        #: The shortest successful round trip (Vegas), ``math.inf`` before the first.
        self.no_load_rtt = math.inf
        self._estimate = float(settings.initial_limit)
        self.limit = settings.initial_limit
        # Drops of attempts that started before this were answered by the last cut.
        self._cut_at = -math.inf
        self._probe_start = 0.0
        self._probe_count = 0
        self._probe_min = math.inf
        self._since_probe = 0
        self._round_start = now
        self._round_size = 1
        self._round_count = 0
        self._round_rtt = 0.0
        self._round_inflight = 0
        self._round_used = False
        self._round_after_probe = False
        self._new_round(now)

    # -- the hot path ----------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot for one attempt if the limit allows one more in flight."""
        if self.inflight < self.limit:
            self.inflight += 1
            return True
        self.rejected += 1
        return False

    def release(self, now: float, rtt: float, outcome: LimitOutcome) -> None:
        """Give back an attempt's slot: it took ``rtt`` seconds and ended at ``now``.

        Synchronous, so it is safe in cancelled cleanup (report a cancelled attempt as
        :attr:`LimitOutcome.IGNORED`, or as ``DROPPED`` when its attempt timeout fired).
        """
        inflight = self.inflight
        if inflight <= 0:
            raise RuntimeError(
                f"internal error in cloudkit_trio: the concurrency limit for {self.endpoint} "
                "was released more often than acquired; please report this bug"
            )
        self.inflight = inflight - 1
        self.last_used = now
        if outcome is LimitOutcome.IGNORED:
            return
        started = now - rtt
        if outcome is LimitOutcome.DROPPED:
            self.drops += 1
            if started >= self._cut_at:
                self._cut_at = now
                self._set_estimate(self._estimate * self.settings.backoff)
                self._new_round(now)
            return
        if self._vegas:
            if rtt < self.no_load_rtt:
                self.no_load_rtt = rtt
            if self.phase is ConcurrencyPhase.PROBING:
                self._probe_sample(now, started, rtt)
                return
            # Against the limit now, not the one the count began under (Netflix's rule):
            # a limit that fell far, as it does when the endpoint became slower for good,
            # is probed soon, not after as many successes as the old limit would need.
            self._since_probe += 1
            if self._since_probe >= self.settings.probe_multiplier * self.limit:
                self._start_probe(now)
                return
        if started < self._round_start:
            return  # sent under an older limit: it cannot judge this one
        self._round_count += 1
        self._round_rtt += rtt
        self._round_inflight += inflight
        # Growth needs evidence that the limit is in use (Netflix asks for half of it; a
        # limit that floats far above what is used lets a sudden loss of capacity fill
        # the server's queue before the first round says so).
        if 4 * inflight >= 3 * self.limit:
            self._round_used = True
        count = self._round_count
        if count >= self._round_size:
            self._end_round(now)
        elif (
            self._vegas
            and rtt > 2.0 * self.no_load_rtt
            and 4 * count >= self._round_size
            and not self._round_after_probe
        ):
            # A quarter of the round has come back, this one after queueing as long as it
            # was served: if the round so far says the queue is long, cut now rather than
            # let the rest of the round wait in it.
            self._end_round(now, early=True)

    # -- for the registry and introspection -------------------------------------------------

    @property
    def idle_since(self) -> float:
        """When the last attempt ended (or the limit was created)."""
        return self.last_used

    @property
    def evictable(self) -> bool:
        """Whether dropping the limit loses nothing in flight: no attempt holds a slot.
        (It forgets what it learned; after an idle period that is stale anyway.)"""
        return self.inflight == 0

    def snapshot(self, now: float) -> ConcurrencyLimitSnapshot:
        """The limit as of ``now``."""
        del now  # nothing here moves with time alone; the argument keeps the common shape
        return ConcurrencyLimitSnapshot(
            endpoint=self.endpoint,
            algorithm=self.settings.algorithm,
            limit=self.limit,
            estimate=self._estimate,
            inflight=self.inflight,
            phase=self.phase,
            no_load_rtt=None if self.no_load_rtt == math.inf else self.no_load_rtt,
            drops=self.drops,
            rejected=self.rejected,
            last_used=self.last_used,
        )

    # -- internals -------------------------------------------------------------------------

    def _end_round(self, now: float, *, early: bool = False) -> None:
        """Judge the round's samples; ``early``: only to cut, the round goes on otherwise."""
        estimate = self._estimate
        if self._round_after_probe:
            # Its attempts started while the server's queue was still drained by the
            # probe: they would read as room to grow that is not there.
            self._round_after_probe = False
        elif not self._vegas:
            if self._round_used:
                estimate += 1.0
        else:
            count = self._round_count
            mean_rtt = self._round_rtt / count
            # Answers that took no time at all (a transport in memory, a mock clock) came
            # from no queue: the ratio of two zero round trips is 1.
            ratio = self.no_load_rtt / mean_rtt if mean_rtt > 0.0 else 1.0
            queue = (self._round_inflight / count) * (1.0 - ratio)
            lg = math.log10(estimate)
            if lg < 1.0:
                lg = 1.0
            # Netflix's thresholds, in attempts queued, capped at a share of the limit:
            # on an endpoint that serves only a few attempts at once, a queue of 3 to 6
            # would be most of the limit, and its answers two or three times slower.
            share = estimate * _QUEUE_SHARE
            grow_fast = lg if lg < share else share
            grow = 3.0 * lg if 3.0 * lg < 2.0 * share else 2.0 * share
            shrink = 6.0 * lg if 6.0 * lg < 4.0 * share else 4.0 * share
            if early and not queue > shrink:
                return  # not long enough to cut on a part of the round
            if queue > shrink:
                # Little's law: of the round's mean in flight, all but the queue were
                # being served. Go straight to that plus a short queue (at most halving
                # per round, as one noisy round must not empty the limit), so a sudden
                # loss of capacity is answered in one round, not one step per round.
                served = self._round_inflight / count - queue
                target = served + grow
                if target > estimate - lg:
                    target = estimate - lg
                estimate = target if target > estimate / 2.0 else estimate / 2.0
            elif self._round_used:
                if queue <= grow_fast:
                    estimate += 6.0 * lg
                elif queue < grow:
                    estimate += lg
        if estimate != self._estimate:
            self._set_estimate(estimate)
        self._new_round(now)

    def _new_round(self, now: float) -> None:
        self._round_start = now
        # One round trip's worth: as many fresh samples as there are attempts in flight.
        inflight = self.inflight if self.inflight < self.limit else self.limit
        self._round_size = inflight if inflight > 1 else 1
        self._round_count = 0
        self._round_rtt = 0.0
        self._round_inflight = 0
        self._round_used = False

    def _set_estimate(self, estimate: float) -> None:
        settings = self.settings
        low, high = settings.min_limit, settings.max_limit
        if estimate < low:
            estimate = float(low)
        elif estimate > high:
            estimate = float(high)
        self._estimate = estimate
        limit = int(estimate)
        if self.phase is ConcurrencyPhase.PROBING:
            limit //= 2
        self.limit = limit if limit > low else low

    def _start_probe(self, now: float) -> None:
        self._fire(ConcurrencyEvent.PROBE_DUE)
        self._probe_start = now
        self._probe_count = 0
        self._probe_min = math.inf
        self._set_estimate(self._estimate)

    def _probe_sample(self, now: float, started: float, rtt: float) -> None:
        if started < self._probe_start:
            return  # queued behind the full limit: not a no-load sample
        self._probe_count += 1
        if rtt < self._probe_min:
            self._probe_min = rtt
        if self._probe_count < min(self.limit, _PROBE_SAMPLES):
            return
        self.no_load_rtt = self._probe_min
        self._fire(ConcurrencyEvent.PROBE_DONE)
        self._set_estimate(self._estimate)
        self._since_probe = 0
        self._new_round(now)
        self._round_after_probe = True

    def _fire(self, event: ConcurrencyEvent) -> None:
        new = TRANSITIONS.get((self.phase, event))
        if new is None:
            raise IllegalTransition(
                f"internal error in cloudkit_trio: the concurrency limit for {self.endpoint} "
                f"got {event} while {self.phase}, which its transition table does not allow; "
                "please report this bug"
            )
        self.phase = new
