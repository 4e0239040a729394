"""One endpoint's token bucket, optionally learning its rate from the server's throttling.

The bucket is one number, the instant it will be full again (``_full_at``): the
"theoretical arrival time" of the generic cell rate algorithm. Taking a token pushes it
``1 / rate`` later; the bucket holds ``burst - (full_at - now) * rate`` tokens. Letting
that go negative *is* the wait queue: a caller that finds no token takes the next one
anyway and is told how long until it is due, so waiters are served first come, first
served at exactly ``rate`` with no list of waiters, no timer and no wake-up to lose.
(200 reservations at 50 a second with ``burst=1``: the last is due 3.98 s after the first.)

A reservation that would come after the caller's deadline is refused without being
taken (``max_wait``), and one whose caller gives up while waiting is handed back with
:meth:`TokenBucket.cancel`. That makes the next reservation due one interval earlier: the
slot freed in the middle of the queue goes to the newest caller, so for an instant two
attempts may be due together (more than ``burst``), yet no interval ever sees more
tokens than ``burst + rate * length`` counting the cancelled one, which is never sent.

In adaptive mode (``RateLimit(adaptive=True)``) the runtime reports every answer with
:meth:`TokenBucket.on_response`, and the rate follows CUBIC as botocore's adaptive retry
mode does. The client's sending rate is measured over half-second buckets and smoothed
(each bucket weighs 0.8). A throttling answer remembers the rate it was sent at
(``w_max``: the measured rate, or the bucket's if lower) and cuts the rate to
``0.7 * w_max``; every other answer sets the rate to ``0.4 * (t - K) ** 3 + w_max``,
``t`` seconds after the last throttle, with ``K`` chosen so the curve starts at
``0.7 * w_max``: it climbs back quickly, flattens out near ``w_max`` (where the server
said no), and only then probes beyond it, ever faster. Growth never lifts the rate above
twice the measured sending rate (a client that sends little learns nothing about a
higher rate), and the rate stays within ``min_rate`` and ``max_rate``.

Differences from botocore, each for a reason a test shows:

- The bucket limits from the start, at ``RateLimit.rate`` (the curve starts there, on
  its plateau), instead of sending unlimited until the first throttle.
- Throttles with no success between them are one *episode* and cut the rate once (again
  only if the episode outlasts a measurement bucket, half a second). botocore cuts on
  every throttle, so the answers to attempts already in flight, or the rest of a
  fixed one-second quota window, compound to ``0.7 ** n``: against a server allowing 50
  a second per window it averaged under half that rate; with episodes, within 5 %.
- The measured-rate cap only holds growth back and never lowers the rate, so a client
  idle for a while does not come back at the floor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from ..spi._admission import RateLimit

__all__ = ["TokenBucket", "TokenBucketSnapshot"]

# CUBIC's constants, as in botocore (and RFC 8312's beta and C).
_BETA: Final = 0.7
_SCALE: Final = 0.4
# The measured sending rate: counted per half second, each bucket weighing 0.8 (botocore's).
_MEASURE_BUCKETS_PER_SECOND: Final = 2.0
_SMOOTHING: Final = 0.8
# Growth stops at this multiple of the measured sending rate.
_MAX_GROWTH: Final = 2.0
# Throttles with no success between them are one episode, cut for once, unless the
# episode lasts longer than this: one measurement bucket.
_HOLDOFF: Final = 1.0 / _MEASURE_BUCKETS_PER_SECOND
# Below this a computed delay is float noise: the token is free now.
_EPSILON: Final = 1e-9


@attrs.frozen
class TokenBucketSnapshot:
    """An endpoint's rate limit at one instant.

    .. versionadded:: 0.2.0
    """

    endpoint: str
    #: Tokens a second now (learned, when adaptive).
    rate: float
    burst: int
    #: Tokens free now (0.0 while callers wait).
    tokens: float
    #: Reservations not yet due: callers waiting for their token.
    waiting: int
    adaptive: bool
    #: The smoothed sending rate the adaptive mode measured (0.0 before the first bucket
    #: or when not adaptive).
    measured_rate: float
    #: Throttling answers reported since creation.
    throttles: int
    #: Reservations and fail-fast takes refused since creation.
    refused: int
    last_used: float


def _cubic_offset(w_max: float) -> float:
    # K: how long the curve takes from BETA * w_max back up to w_max.
    return math.cbrt(w_max * (1.0 - _BETA) / _SCALE)


class TokenBucket:
    """The rate limit of one endpoint; see :class:`~cloudkit_trio.RateLimit`.

    Args:
        endpoint: ``scheme://host:port``.
        settings: The validated rate limit.
        now: The current ``trio.current_time()``; the bucket starts full.
    """

    __slots__ = (
        "_credit",
        "_floor",
        "_full_at",
        "_interval",
        "_k",
        "_last_throttle",
        "_lease_spacing",
        "_measure_bucket",
        "_measure_count",
        "_next_lease_at",
        "_span",
        "_w_max",
        "asked",
        "endpoint",
        "last_used",
        "measured_rate",
        "rate",
        "refused",
        "settings",
        "throttles",
    )

    def __init__(self, endpoint: str, settings: RateLimit, now: float) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.last_used = now
        self.refused = 0
        self.throttles = 0
        #: Tokens asked for since creation (taken or refused): a shared bucket's demand.
        self.asked = 0
        self.rate = float(settings.rate)
        self._interval = 1.0 / self.rate
        self._span = settings.burst / self.rate
        self._full_at = now
        self._floor = settings.min_rate
        # CUBIC starts on its plateau at the configured rate: as if the last throttle had
        # been K seconds ago, at exactly that rate.
        self._w_max = self.rate
        self._k = _cubic_offset(self.rate)
        self._last_throttle = now - self._k
        self.measured_rate = 0.0
        self._measure_bucket = math.floor(now * _MEASURE_BUCKETS_PER_SECOND)
        # A shared bucket's leased tokens not yet spent (negative: owed to reservations
        # made before the next lease); None while it has no lease and paces itself.
        self._credit: float | None = None
        self._next_lease_at = now
        self._lease_spacing = self._interval
        self._measure_count = 0

    # -- the hot path ----------------------------------------------------------------------

    def reserve(self, now: float, max_wait: float = math.inf) -> float:
        """Take the next token: 0.0 when it is free now, else the seconds until it is due.

        The caller must wait that long before sending. When it is more than ``max_wait``
        (the caller's remaining deadline), nothing is taken and ``math.inf`` is returned.
        A caller that gives up before its token is due hands it back with :meth:`cancel`.
        """
        self.last_used = now
        self.asked += 1
        credit = self._credit
        if credit is not None:
            if credit >= 1.0:
                self._credit = credit - 1.0
                return 0.0
            # None left: the token comes with a later lease, after those owed already.
            delay = self._next_lease_at - now + (-credit) * self._lease_spacing
            if delay > max_wait:
                self.refused += 1
                return math.inf
            self._credit = credit - 1.0
            return delay if delay > 0.0 else 0.0
        full_at = self._full_at
        full_at = (full_at if full_at > now else now) + self._interval
        delay = full_at - self._span - now
        if delay <= _EPSILON:
            self._full_at = full_at
            return 0.0
        if delay > max_wait:
            self.refused += 1
            return math.inf
        self._full_at = full_at
        return delay

    def try_take(self, now: float) -> bool:
        """Take a token if one is free now (fail-fast mode); never reserves."""
        self.last_used = now
        self.asked += 1
        credit = self._credit
        if credit is not None:
            if credit >= 1.0:
                self._credit = credit - 1.0
                return True
            self.refused += 1
            return False
        full_at = self._full_at
        full_at = (full_at if full_at > now else now) + self._interval
        if full_at - self._span - now <= _EPSILON:
            self._full_at = full_at
            return True
        self.refused += 1
        return False

    def cancel(self, now: float, due: float) -> None:
        """Hand back the token reserved to be due at ``due`` (``now + delay`` when it was
        reserved), because its caller gave up. Nothing happens once it is due: then the
        caller may have sent, and the token is spent."""
        if due <= now:
            return
        if self._credit is not None:
            self._credit += 1.0
            return
        full_at = self._full_at - self._interval
        self._full_at = full_at if full_at > now else now

    def on_response(self, now: float, throttled: bool) -> None:
        """Report an answer received at ``now``; ``throttled`` when the server said slow
        down (429, 503 ``SlowDown``, a ``Throttling*`` code). Only adaptive buckets learn."""
        if not self.settings.adaptive:
            return
        self.last_used = now
        measured = self._measure(now)
        if throttled:
            self.throttles += 1
            if now - self._last_throttle < _HOLDOFF:
                # The same episode: these answer requests sent before the cut (successes
                # in between included), so the server has not seen the cut rate yet.
                return
            basis = self.rate if measured <= 0.0 or measured > self.rate else measured
            self._w_max = basis
            self._k = _cubic_offset(basis)
            self._last_throttle = now
            rate = basis * _BETA
        else:
            rate = _SCALE * (now - self._last_throttle - self._k) ** 3 + self._w_max
            if rate > self.rate:
                cap = _MAX_GROWTH * measured
                if rate > cap:
                    rate = cap if cap > self.rate else self.rate
        ceiling = self.settings.max_rate
        if ceiling is not None and rate > ceiling:
            rate = ceiling
        if rate < self._floor:
            rate = self._floor
        if rate != self.rate:
            self._set_rate(now, rate)

    # -- for the registry and introspection -------------------------------------------------

    @property
    def idle_since(self) -> float:
        """When the bucket comes to rest: full again, every reservation due and refilled,
        so a fresh bucket would behave the same (an adaptive one forgets its rate)."""
        return self._full_at if self._full_at > self.last_used else self.last_used

    @property
    def evictable(self) -> bool:
        """Always True: the bucket holds no caller, only a time. Dropping it before
        :attr:`idle_since` lets the next caller start a fresh burst early."""
        return True

    def snapshot(self, now: float) -> TokenBucketSnapshot:
        """The bucket as of ``now``."""
        ahead = self._full_at - now
        if ahead < 0.0:
            ahead = 0.0
        burst = self.settings.burst
        tokens = burst - ahead * self.rate
        backlog = (ahead - self._span) / self._interval
        return TokenBucketSnapshot(
            endpoint=self.endpoint,
            rate=self.rate,
            burst=burst,
            tokens=max(tokens, 0.0),
            waiting=math.ceil(backlog - _EPSILON) if backlog > _EPSILON else 0,
            adaptive=self.settings.adaptive,
            measured_rate=self.measured_rate,
            throttles=self.throttles,
            refused=self.refused,
            last_used=self.last_used,
        )

    def lease(self, now: float, granted: int, period: float) -> None:
        """A shared bucket's lease: ``granted`` tokens to spend until the next one, due
        in ``period`` seconds. Tokens owed to reservations are paid first; tokens of the
        last lease left unspent are not kept (asking for them again is what the others'
        share is made of)."""
        credit = self._credit
        owed = credit if credit is not None and credit < 0.0 else 0.0
        self._credit = owed + granted
        self._next_lease_at = now + period
        rate = granted / period
        self._lease_spacing = period / granted if granted else period
        if rate > 0.0:
            self._set_rate(now, rate)

    def unlease(self, now: float) -> None:
        """The store is away: pace locally again, at the rate of the last lease."""
        if self._credit is not None:
            self._credit = None
            self._full_at = now

    # -- internals -------------------------------------------------------------------------

    def _measure(self, now: float) -> float:
        """The smoothed sending rate, counting this answer's attempt."""
        self._measure_count += 1
        bucket = math.floor(now * _MEASURE_BUCKETS_PER_SECOND)
        if bucket > self._measure_bucket:
            elapsed = (bucket - self._measure_bucket) / _MEASURE_BUCKETS_PER_SECOND
            current = self._measure_count / elapsed
            self.measured_rate = current * _SMOOTHING + self.measured_rate * (1.0 - _SMOOTHING)
            self._measure_count = 0
            self._measure_bucket = bucket
        return self.measured_rate

    def _set_rate(self, now: float, rate: float) -> None:
        # Tokens owed stay owed: the time until full is rescaled to the new rate, so the
        # bucket holds the same (possibly negative) number of tokens as before.
        ahead = self._full_at - now
        if ahead > 0.0:
            self._full_at = now + ahead * self.rate / rate
        self.rate = rate
        self._interval = 1.0 / rate
        self._span = self.settings.burst / rate
