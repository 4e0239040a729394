"""What a demo run was asked to do, and the timings derived from it."""

from __future__ import annotations

import math
from typing import Final

import attrs

__all__ = ["DemoSettings", "Timing", "Window"]

DEFAULT_OPERATIONS: Final = 2000
DEFAULT_RATE: Final = 100.0
DEFAULT_CONCURRENCY: Final = 32
DEFAULT_FAULT_RATE: Final = 0.1
DEFAULT_SEED: Final = 1
#: ``--s3`` without ``--bucket``: the bucket is named after the seed.
DEFAULT_BUCKET_PREFIX: Final = "cloudkit-demo-"


@attrs.frozen(kw_only=True)
class DemoSettings:
    """The demo's options, already validated by the command line.

    The driver releases ``rate`` operations per second, so a run is planned to last
    ``operations / rate`` seconds (20 s by default); every scheduled fault scales with it.
    """

    operations: int = DEFAULT_OPERATIONS
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float = DEFAULT_RATE
    fault_rate: float = DEFAULT_FAULT_RATE
    seed: int = DEFAULT_SEED
    metrics_port: int | None = None
    json: bool = False
    endpoint: str | None = None
    #: Drive S3 calls (``--s3``): put_object of one key per operation, listed after the run.
    s3: bool = False
    #: ``--bucket``; None means :data:`DEFAULT_BUCKET_PREFIX` and the seed.
    bucket: str | None = None

    @property
    def bucket_name(self) -> str:
        """The bucket an ``--s3`` run writes to."""
        return self.bucket if self.bucket is not None else f"{DEFAULT_BUCKET_PREFIX}{self.seed}"

    @property
    def planned_duration(self) -> float:
        """Seconds the driver needs to release every operation at ``rate``."""
        return self.operations / self.rate

    @property
    def timing(self) -> Timing:
        return Timing.for_duration(self.planned_duration)


@attrs.frozen
class Window:
    """A span of the run, in seconds since the first operation was released."""

    start: float
    end: float

    def __contains__(self, elapsed: object) -> bool:
        return isinstance(elapsed, int | float) and self.start <= elapsed < self.end

    @property
    def length(self) -> float:
        return self.end - self.start


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


@attrs.frozen(kw_only=True)
class Timing:
    """Every duration of a run, scaled to its planned length so that a short test run
    still shows a breaker opening and closing and credentials being refreshed.

    Per-attempt timeouts and the server's stall do not scale: they are about one request,
    not about the run.
    """

    duration: float
    #: When the outage endpoint is down.
    outage: Window
    #: How long an error burst on a healthy endpoint lasts.
    burst_length: float
    #: Breaker settings: how long an open breaker rejects, and the window it judges by.
    break_duration: float
    sampling_window: float
    #: Vault's lease in whole seconds (Vault counts leases in seconds).
    lease: int
    #: Seconds before expiry to refresh in the background, and to make callers wait.
    advisory: float
    mandatory: float
    #: One attempt's budget, and how long a stalled answer takes (past that budget).
    attempt_timeout: float = 1.0
    stall: float = 1.5
    #: How long a slow (but timely) answer takes.
    slow: float = 0.25
    #: What a 429 asks for, in whole seconds as HTTP wants it.
    retry_after: int = 1
    #: How long a stopping run lets running operations finish before cancelling them.
    shutdown_grace: float = 2.0

    @classmethod
    def for_duration(cls, duration: float) -> Timing:
        lease = max(1, round(duration / 4))
        return cls(
            duration=duration,
            outage=Window(0.30 * duration, 0.55 * duration),
            burst_length=0.03 * duration,
            break_duration=_clamp(0.05 * duration, 0.1, 2.0),
            sampling_window=_clamp(0.2 * duration, 0.5, 10.0),
            lease=lease,
            advisory=0.25 * lease,
            mandatory=0.1 * lease,
        )

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"a run must last a positive time, got {self.duration!r}")
