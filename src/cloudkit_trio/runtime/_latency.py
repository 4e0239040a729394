"""One endpoint's recent latency, for shedding attempts that cannot finish in time.

The statistic is the **median** (p50) of recent successful attempt durations: an attempt
is shed when the time left before its deadline is shorter than that, so what is shed had
less than an even chance of finishing, and what is sent had at least one. A mean would
be pulled up by the slow tail and shed attempts that would mostly have made it; a high
percentile would shed almost nothing.

The median is tracked without keeping samples, by stochastic approximation in the log
domain: each sample moves the estimate up or down by the same factor, so it settles where
as many samples fall above as below. The factor is ``1 + gain * spread``, where ``spread``
is the recent mean relative distance of samples from the estimate; a wide distribution
moves it in larger steps, a tight one in finer. ``gain`` starts high and falls to 3 % over
the first samples, so the first estimates come fast and later ones are steady; a lasting
change (the endpoint becomes twice as slow) is followed within a few dozen samples.
Nothing is shed before ``min_samples`` successes were seen: too few say too little.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["LatencyEstimate", "LatencySnapshot"]

# The steady step gain, and the gain of the spread's moving average.
_GAIN: Final = 0.03
# Early on the gain is _WARMUP / samples, until that falls to _GAIN.
_WARMUP: Final = 2.0
# The spread's starting value, and its cap: one wild sample must not make steps huge.
_INITIAL_SPREAD: Final = 0.25
_MAX_SPREAD: Final = 4.0
# Durations are clamped to this (seconds): a zero would stall a multiplicative estimate.
_SHORTEST: Final = 1e-6
#: Successes seen before anything is shed, by default.
DEFAULT_MIN_SAMPLES: Final = 20


@attrs.frozen
class LatencySnapshot:
    """An endpoint's recent latency at one instant.

    .. versionadded:: 0.2.0
    """

    endpoint: str
    #: Successful attempts recorded since creation.
    samples: int
    #: The median of recent successful attempts, seconds; None until ``min_samples``.
    median: float | None
    #: The recent mean relative distance of samples from the median.
    spread: float
    last_used: float


class LatencyEstimate:
    """The recent median duration of one endpoint's successful attempts.

    Args:
        endpoint: ``scheme://host:port``.
        now: The current ``trio.current_time()``.
        min_samples: Successes recorded before :meth:`sheds` may say yes.
    """

    __slots__ = ("_median", "_spread", "endpoint", "last_used", "min_samples", "samples")

    def __init__(
        self, endpoint: str, now: float, *, min_samples: int = DEFAULT_MIN_SAMPLES
    ) -> None:
        self.endpoint = endpoint
        self.last_used = now
        self.min_samples = min_samples
        self.samples = 0
        self._median = 0.0
        self._spread = _INITIAL_SPREAD

    def record(self, now: float, duration: float) -> None:
        """Count a successful attempt that took ``duration`` seconds and ended at ``now``.

        Failures are not recorded: a fast error says nothing about how long a success
        takes, and a timeout only that it takes longer than the timeout.
        """
        self.last_used = now
        if duration < _SHORTEST:
            duration = _SHORTEST
        samples = self.samples + 1
        self.samples = samples
        median = self._median
        if samples == 1:
            self._median = duration
            return
        gain = _WARMUP / samples
        if gain < _GAIN:
            gain = _GAIN
        distance = abs(duration - median) / median
        if distance > _MAX_SPREAD:
            distance = _MAX_SPREAD
        spread = self._spread + gain * (distance - self._spread)
        self._spread = spread
        if duration > median:
            self._median = median * (1.0 + gain * spread)
        elif duration < median:
            self._median = median / (1.0 + gain * spread)

    @property
    def median(self) -> float | None:
        """The estimate in seconds, or None before ``min_samples`` successes."""
        return self._median if self.samples >= self.min_samples else None

    def sheds(self, remaining: float) -> bool:
        """Whether an attempt with ``remaining`` seconds before its deadline should not be
        sent: enough samples were seen and ``remaining`` is below the median."""
        return self.samples >= self.min_samples and remaining < self._median

    @property
    def idle_since(self) -> float:
        """When the last sample was recorded (or the estimate was created)."""
        return self.last_used

    @property
    def evictable(self) -> bool:
        """Always True: an estimate holds no caller, and after an idle period it is stale."""
        return True

    def snapshot(self, now: float) -> LatencySnapshot:
        """The estimate as of ``now``."""
        del now  # nothing here moves with time alone; the argument keeps the common shape
        return LatencySnapshot(
            endpoint=self.endpoint,
            samples=self.samples,
            median=self.median,
            spread=self._spread,
            last_used=self.last_used,
        )
