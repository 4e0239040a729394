"""The fault schedule of the embedded endpoints: which attempt fails, how, and when.

Every decision is a pure function of the seed, the endpoint, the request's path, the
attempt's number at that path and the time into the run. Concurrency changes the order in
which attempts arrive, never what each one is answered, so a seed replays its schedule.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from ._settings import Timing, Window

__all__ = ["Fault", "FaultPlan", "RunClock"]


class Fault(enum.Enum):
    """What an embedded endpoint does instead of answering 200 at once."""

    #: HTTP 500 (a retryable provider error).
    SERVER_ERROR = "server_error"
    #: HTTP 503.
    UNAVAILABLE = "unavailable"
    #: HTTP 429 with ``Retry-After``.
    RATE_LIMITED = "rate_limited"
    #: The connection breaks half-way through the response.
    RESET = "reset"
    #: The answer comes late, but within the attempt's timeout.
    SLOW = "slow"
    #: No answer before the attempt times out.
    STALL = "stall"
    #: HTTP 500 or 503 during the endpoint's error burst.
    BURST_500 = "burst_500"
    BURST_503 = "burst_503"
    #: HTTP 503 for everything while the outage endpoint is down.
    OUTAGE = "outage"
    #: HTTP 400 ``ExpiredToken``: the request carried revoked or expired credentials.
    EXPIRED_TOKEN = "expired_token"


# Relative frequency of the random faults; failures that the runtime retries dominate.
_WEIGHTS: Final[Mapping[Fault, float]] = {
    Fault.SERVER_ERROR: 3.0,
    Fault.UNAVAILABLE: 3.0,
    Fault.RATE_LIMITED: 2.0,
    Fault.RESET: 2.0,
    Fault.SLOW: 3.0,
    Fault.STALL: 1.0,
}
_KINDS: Final = tuple(_WEIGHTS)
_CUMULATIVE: Final = tuple(
    sum(_WEIGHTS[kind] for kind in _KINDS[: index + 1]) for index in range(len(_KINDS))
)
# Inside a burst most attempts fail, but not all: a burst slows an endpoint down without
# necessarily tripping its breaker, which is the outage's part of the story.
_BURST_FAILURE: Final = 0.6


@attrs.frozen(kw_only=True)
class FaultPlan:
    """The seeded schedule for a set of embedded endpoints.

    - Each attempt fails at random with probability ``fault_rate`` (kinds weighted as in
      ``_WEIGHTS``).
    - Each endpoint but the outage one has one error burst, placed by the seed, when
      ``fault_rate`` is above zero.
    - ``outage_endpoint``, when there is one, answers 503 to everything during ``outage``,
      whatever the rate.
    """

    seed: int
    fault_rate: float
    outage_endpoint: str | None
    outage: Window
    bursts: Mapping[str, Window]

    @classmethod
    def build(
        cls,
        *,
        seed: int,
        fault_rate: float,
        timing: Timing,
        endpoints: Sequence[str],
        outage_endpoint: str | None,
    ) -> FaultPlan:
        if outage_endpoint is not None and outage_endpoint not in endpoints:
            raise ValueError(f"the outage endpoint {outage_endpoint!r} is not among {endpoints}")
        placement = random.Random(f"{seed}/bursts")
        bursts: dict[str, Window] = {}
        if fault_rate > 0:
            latest = max(timing.duration - timing.burst_length, 0.0)
            for name in endpoints:
                if name != outage_endpoint:
                    start = placement.uniform(0.05 * timing.duration, 0.9 * latest)
                    bursts[name] = Window(start, start + timing.burst_length)
        return cls(
            seed=seed,
            fault_rate=fault_rate,
            outage_endpoint=outage_endpoint,
            outage=timing.outage,
            bursts=bursts,
        )

    def decide(self, endpoint: str, key: str, attempt: int, elapsed: float | None) -> Fault | None:
        """The fault for the ``attempt``-th request to ``key`` at ``endpoint``, or None.

        ``elapsed`` is seconds since the run began, None before it did (no timed faults).
        """
        if elapsed is not None and endpoint == self.outage_endpoint and elapsed in self.outage:
            return Fault.OUTAGE
        draw = random.Random(f"{self.seed}/{endpoint}/{key}/{attempt}")
        burst = self.bursts.get(endpoint)
        in_burst = elapsed is not None and burst is not None and elapsed in burst
        if in_burst and draw.random() < _BURST_FAILURE:
            return Fault.BURST_500 if draw.random() < 0.5 else Fault.BURST_503
        if draw.random() >= self.fault_rate:
            return None
        point = draw.random() * _CUMULATIVE[-1]
        return next(kind for kind, edge in zip(_KINDS, _CUMULATIVE, strict=True) if point < edge)


@attrs.define(eq=False)
class RunClock:
    """The run's time base: the Trio time the first operation was released at."""

    started_at: float | None = None

    def begin(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now

    def elapsed(self, now: float) -> float | None:
        """Seconds since the run began, None before it did."""
        return None if self.started_at is None else now - self.started_at
