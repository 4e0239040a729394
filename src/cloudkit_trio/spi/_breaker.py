"""CircuitBreaker: the seed's "breaker as a retry policy", holding validated breaker settings."""

from __future__ import annotations

from .._errors import CircuitOpenError, CloudError, ConfigError
from .._validation import check_count, check_number, check_seconds
from ._retry import (
    DO_NOT_RETRY,
    ExponentialBackoff,
    RetryDecision,
    RetryPolicy,
)

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """A retry policy that also asks the runtime for one circuit breaker per endpoint.

    Delays and attempt limits come from ``inner``; the breaker settings are applied by the
    runtime to every endpoint (scheme, host, port) separately:

    - **closed → open** when, over the last ``sampling_window`` seconds, at least
      ``minimum_throughput`` calls finished and the share of failures reached
      ``failure_ratio``. Only retryable failures (network errors, timeouts, 429, 503,
      other 5xx) count; a 404 says nothing about the endpoint's health.
    - **open** rejects calls at once with :class:`~cloudkit_trio.CircuitOpenError`, with
      no network call, for ``break_duration`` seconds.
    - **half-open** then admits at most ``half_open_probes`` concurrent probes: a success
      closes the circuit, a failure opens it again for another ``break_duration``.

    Defaults and why: ``failure_ratio=0.5`` as resilience4j (Polly's 0.1 suits server
    fleets with heavy traffic, and trips on noise at client volumes);
    ``minimum_throughput=10`` because both anchors' 100 would almost never trip on one
    client's traffic to one endpoint; ``sampling_window=30`` s and ``break_duration=5`` s
    as Polly, so an endpoint that recovers is used again quickly; ``half_open_probes=1``
    as Polly, one trial call instead of a stampede. The failure share is compared as an
    exact fraction (7 failures of 25 reach 0.28).

    Idle breakers (closed, or half-open without a probe) with no calls in flight are
    evicted after ``idle_eviction`` seconds. At ``max_endpoints`` the least recently used
    breaker without calls in flight makes room (closed first, then half-open, then open),
    so every endpoint keeps a breaker; the bound is exceeded only while every breaker has
    calls in flight or is forced by an operator.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "break_duration",
        "failure_ratio",
        "half_open_probes",
        "idle_eviction",
        "inner",
        "max_endpoints",
        "minimum_throughput",
        "sampling_window",
    )

    def __init__(
        self,
        inner: RetryPolicy | None = None,
        *,
        failure_ratio: float = 0.5,
        minimum_throughput: int = 10,
        sampling_window: float = 30.0,
        break_duration: float = 5.0,
        half_open_probes: int = 1,
        idle_eviction: float = 300.0,
        max_endpoints: int = 1024,
    ) -> None:
        if inner is None:
            inner = ExponentialBackoff()
        if isinstance(inner, CircuitBreaker):
            raise ConfigError(
                "CircuitBreaker.inner must be a plain retry policy, not another CircuitBreaker",
                field="inner",
                value=inner,
            )
        if not isinstance(inner, RetryPolicy):
            raise TypeError(
                f"CircuitBreaker.inner must implement RetryPolicy, got {type(inner).__name__}"
            )
        check_count("CircuitBreaker.inner.max_attempts", inner.max_attempts)
        self.inner = inner
        self.failure_ratio = check_number(
            "CircuitBreaker.failure_ratio", failure_ratio, minimum=0.0, above=True, maximum=1.0
        )
        self.minimum_throughput = check_count(
            "CircuitBreaker.minimum_throughput", minimum_throughput
        )
        self.sampling_window = check_seconds("CircuitBreaker.sampling_window", sampling_window)
        self.break_duration = check_seconds("CircuitBreaker.break_duration", break_duration)
        self.half_open_probes = check_count("CircuitBreaker.half_open_probes", half_open_probes)
        self.idle_eviction = check_seconds("CircuitBreaker.idle_eviction", idle_eviction)
        self.max_endpoints = check_count("CircuitBreaker.max_endpoints", max_endpoints)

    @property
    def max_attempts(self) -> int:
        return self.inner.max_attempts

    def should_retry(self, error: CloudError, attempt: int) -> RetryDecision:
        # Retrying into an open circuit would only be rejected again.
        if isinstance(error, CircuitOpenError):
            return DO_NOT_RETRY
        return self.inner.should_retry(error, attempt)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(inner={self.inner!r}, failure_ratio={self.failure_ratio!r}, "
            f"minimum_throughput={self.minimum_throughput!r}, "
            f"sampling_window={self.sampling_window!r}, break_duration={self.break_duration!r}, "
            f"half_open_probes={self.half_open_probes!r}, idle_eviction={self.idle_eviction!r}, "
            f"max_endpoints={self.max_endpoints!r})"
        )
