"""Retry policies: the seed's table, jitter, Retry-After, and the backoff laws."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cloudkit_trio as ck
from cloudkit_trio.spi import RetryPolicy

RETRYABLE_ERRORS = [
    ck.ConnectError("x"),
    ck.ConnectionReset("x"),
    ck.OperationTimeout("x"),
    ck.RateLimited("x"),
    ck.ServiceUnavailable("x"),
    ck.ProviderError("x", status=502),
]
FINAL_ERRORS = [
    ck.NotFound("x"),
    ck.ValidationError("x"),
    ck.InvalidCredentials("x"),
    ck.InsufficientPermissions("x"),
    ck.AlreadyExists("x"),
    ck.ProviderError("x", status=400),
    ck.ConfigError("x"),
    ck.CircuitOpenError("x"),
    ck.Overloaded("x"),
    ck.ContextClosed("x"),
]


class TestDecision:
    def test_retry_is_a_frozen_record(self) -> None:
        """Retry(delay) is a frozen value with .delay."""
        decision = ck.Retry(0.5)
        assert decision.delay == 0.5 and decision == ck.Retry(0.5)
        with pytest.raises(AttributeError):
            decision.delay = 1.0  # type: ignore[misc]

    @pytest.mark.parametrize("delay", [-1.0, float("nan"), float("inf")])
    def test_retry_rejects_bad_delays(self, delay: float) -> None:
        """A negative or non-finite delay is refused."""
        with pytest.raises(ck.ConfigError):
            ck.Retry(delay)

    def test_do_not_retry_is_a_singleton(self) -> None:
        """DO_NOT_RETRY is one constant, compared by identity."""
        assert ck.NoRetry().should_retry(ck.ConnectError("x"), 1) is ck.DO_NOT_RETRY
        assert repr(ck.DO_NOT_RETRY) == "DO_NOT_RETRY"

    @pytest.mark.parametrize(
        "policy",
        [ck.ExponentialBackoff(), ck.FixedDelay(), ck.NoRetry(), ck.CircuitBreaker()],
        ids=repr,
    )
    def test_builtins_satisfy_the_protocol(self, policy: object) -> None:
        """Every built-in policy is a RetryPolicy."""
        assert isinstance(policy, RetryPolicy)


class TestExponentialBackoff:
    def test_seed_table(self) -> None:
        """With defaults the first retry waits 100 ms, then 200, 400, 800 ms."""
        policy = ck.ExponentialBackoff(max_attempts=5)
        delays = [policy.should_retry(ck.ConnectError("x"), n) for n in range(1, 6)]
        assert delays == [
            ck.Retry(0.1),
            ck.Retry(0.2),
            ck.Retry(0.4),
            ck.Retry(0.8),
            ck.DO_NOT_RETRY,
        ]

    def test_defaults(self) -> None:
        """Defaults: 3 attempts in all, 100 ms initial, x2, 30 s cap, no jitter."""
        policy = ck.ExponentialBackoff()
        assert policy.max_attempts == 3
        assert (policy.initial_delay, policy.multiplier, policy.max_delay) == (0.1, 2.0, 30.0)
        assert policy.jitter is ck.Jitter.NONE

    def test_capped_at_max_delay(self) -> None:
        """Delays never exceed max_delay, even for huge attempt numbers."""
        policy = ck.ExponentialBackoff(max_attempts=10_000, max_delay=5.0)
        assert policy.should_retry(ck.ConnectError("x"), 9_999) == ck.Retry(5.0)

    def test_retry_after_is_honoured_and_capped(self) -> None:
        """A server's Retry-After is never undercut, but max_delay still caps it."""
        policy = ck.ExponentialBackoff(max_delay=10.0)
        assert policy.should_retry(ck.RateLimited("x", retry_after=2.0), 1) == ck.Retry(2.0)
        assert policy.should_retry(ck.RateLimited("x", retry_after=60.0), 1) == ck.Retry(10.0)
        assert policy.should_retry(ck.ServiceUnavailable("x", retry_after=3.0), 1) == ck.Retry(3.0)
        # A hint shorter than our own backoff does not shorten it.
        assert policy.should_retry(ck.RateLimited("x", retry_after=0.01), 2) == ck.Retry(0.2)

    @pytest.mark.parametrize("error", FINAL_ERRORS, ids=lambda e: type(e).__name__)
    def test_final_errors_are_never_retried(self, error: ck.CloudError) -> None:
        """Non-retryable errors, an open circuit and overload are never retried."""
        assert ck.ExponentialBackoff().should_retry(error, 1) is ck.DO_NOT_RETRY

    @pytest.mark.parametrize("error", RETRYABLE_ERRORS, ids=lambda e: type(e).__name__)
    def test_retryable_errors_are_retried(self, error: ck.CloudError) -> None:
        """Network errors, timeouts, 429, 503 and other 5xx are retried."""
        assert isinstance(ck.ExponentialBackoff().should_retry(error, 1), ck.Retry)

    @pytest.mark.parametrize(
        ("jitter", "low", "high"),
        [
            (ck.Jitter.FULL, 0.0, 0.4),
            (ck.Jitter.EQUAL, 0.2, 0.4),
            (ck.Jitter.DECORRELATED, 0.1, 0.6),
        ],
    )
    def test_jitter_bounds(self, jitter: ck.Jitter, low: float, high: float) -> None:
        """Each jitter mode stays within its documented range."""
        policy = ck.ExponentialBackoff(max_attempts=10, jitter=jitter, random=random.Random(7))
        delays = [policy.delay(3) for _ in range(500)]
        assert all(low <= d <= high for d in delays)
        assert len(set(delays)) > 100  # it really is random

    def test_jitter_is_reproducible_with_a_seeded_source(self) -> None:
        """An injected seeded random source makes jitter deterministic."""

        def run() -> list[float]:
            policy = ck.ExponentialBackoff(jitter=ck.Jitter.FULL, random=random.Random(42))
            return [policy.delay(n) for n in range(1, 6)]

        assert run() == run()

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"initial_delay": -1}, "initial_delay"),
            ({"max_delay": float("inf")}, "max_delay"),
            ({"initial_delay": 5, "max_delay": 1}, "max_delay"),
            ({"multiplier": 0.5}, "multiplier"),
            ({"max_attempts": 0}, "max_attempts"),
            ({"max_attempts": 2.5}, "max_attempts"),
            ({"jitter": "full"}, "jitter"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], field: str) -> None:
        """Invalid settings raise ConfigError naming the field."""
        with pytest.raises(ck.ConfigError, match=field) as info:
            ck.ExponentialBackoff(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("attempt", "error"), [(0, ValueError), (True, TypeError), ("1", TypeError)]
    )
    def test_bad_attempt(self, attempt: object, error: type[Exception]) -> None:
        """attempt counts attempts made so far and starts at 1."""
        with pytest.raises(error):
            ck.ExponentialBackoff().should_retry(ck.ConnectError("x"), attempt)  # type: ignore[arg-type]


class TestFixedDelayAndNoRetry:
    def test_fixed_delay(self) -> None:
        """FixedDelay waits the same each time, up to max_attempts in all."""
        policy = ck.FixedDelay(1.0, 3)
        error = ck.ServiceUnavailable("x")
        assert [policy.should_retry(error, n) for n in (1, 2, 3)] == [
            ck.Retry(1.0), ck.Retry(1.0), ck.DO_NOT_RETRY,
        ]  # fmt: skip
        assert policy.should_retry(ck.RateLimited("x", retry_after=4.0), 1) == ck.Retry(4.0)
        assert policy.should_retry(ck.NotFound("x"), 1) is ck.DO_NOT_RETRY

    def test_fixed_delay_validates(self) -> None:
        """FixedDelay refuses negative delays and zero attempts."""
        with pytest.raises(ck.ConfigError, match="delay"):
            ck.FixedDelay(-1.0)
        with pytest.raises(ck.ConfigError, match="max_attempts"):
            ck.FixedDelay(1.0, 0)

    def test_no_retry(self) -> None:
        """NoRetry makes exactly one attempt."""
        assert ck.NoRetry().max_attempts == 1
        assert ck.NoRetry().should_retry(ck.ConnectError("x"), 1) is ck.DO_NOT_RETRY


class TestCircuitBreakerPolicy:
    def test_delegates_to_inner(self) -> None:
        """Delays and attempts come from the inner policy."""
        breaker = ck.CircuitBreaker(inner=ck.FixedDelay(0.5, 4))
        assert breaker.max_attempts == 4
        assert breaker.should_retry(ck.ConnectError("x"), 1) == ck.Retry(0.5)

    def test_open_circuit_is_never_retried(self) -> None:
        """A rejection by an open breaker is final."""
        breaker = ck.CircuitBreaker(inner=ck.FixedDelay(0.5, 4))
        assert breaker.should_retry(ck.CircuitOpenError("open"), 1) is ck.DO_NOT_RETRY

    def test_defaults(self) -> None:
        """Defaults are documented: 50 %, 10 calls, 30 s window, 5 s break, 1 probe."""
        breaker = ck.CircuitBreaker()
        assert isinstance(breaker.inner, ck.ExponentialBackoff)
        assert (breaker.failure_ratio, breaker.minimum_throughput) == (0.5, 10)
        assert (breaker.sampling_window, breaker.break_duration) == (30.0, 5.0)
        assert breaker.half_open_probes == 1

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"failure_ratio": 0}, "failure_ratio"),
            ({"failure_ratio": 1.5}, "failure_ratio"),
            ({"minimum_throughput": 0}, "minimum_throughput"),
            ({"sampling_window": 0}, "sampling_window"),
            ({"break_duration": -1}, "break_duration"),
            ({"half_open_probes": 0}, "half_open_probes"),
            ({"idle_eviction": 0}, "idle_eviction"),
            ({"max_endpoints": 0}, "max_endpoints"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], field: str) -> None:
        """Invalid breaker settings raise ConfigError naming the field."""
        with pytest.raises(ck.ConfigError, match=field):
            ck.CircuitBreaker(**kwargs)  # type: ignore[arg-type]

    def test_inner_must_be_a_policy(self) -> None:
        """The inner policy must implement RetryPolicy and not be a breaker."""
        with pytest.raises(TypeError):
            ck.CircuitBreaker(inner=object())  # type: ignore[arg-type]
        with pytest.raises(ck.ConfigError, match="inner"):
            ck.CircuitBreaker(inner=ck.CircuitBreaker())


policies = st.builds(
    lambda initial, multiplier, cap_factor, attempts: ck.ExponentialBackoff(
        initial_delay=initial,
        multiplier=multiplier,
        max_delay=initial * cap_factor,
        max_attempts=attempts,
    ),
    st.floats(min_value=0.0, max_value=10.0),
    st.floats(min_value=1.0, max_value=10.0),
    st.floats(min_value=1.0, max_value=1000.0),
    st.integers(min_value=1, max_value=50),
)
jitters = st.sampled_from(list(ck.Jitter))
errors = st.sampled_from(RETRYABLE_ERRORS + FINAL_ERRORS)


class TestBackoffLaws:
    @given(policies, st.integers(min_value=1, max_value=10_000), errors)
    def test_delays_never_exceed_max_delay(
        self, policy: ck.ExponentialBackoff, attempt: int, error: ck.CloudError
    ) -> None:
        """No decision ever waits longer than max_delay."""
        decision = policy.should_retry(error, attempt)
        if isinstance(decision, ck.Retry):
            assert 0 <= decision.delay <= policy.max_delay

    @given(policies, st.integers(min_value=1, max_value=200))
    def test_delays_never_decrease_without_jitter(
        self, policy: ck.ExponentialBackoff, attempt: int
    ) -> None:
        """Without jitter, the delay after n+1 attempts is never shorter than after n."""
        assert policy.delay(attempt + 1) >= policy.delay(attempt)

    @given(policies, st.integers(min_value=1, max_value=200), errors)
    def test_attempts_never_exceed_max_attempts(
        self, policy: ck.ExponentialBackoff, attempt: int, error: ck.CloudError
    ) -> None:
        """Once max_attempts attempts were made, the answer is DO_NOT_RETRY."""
        if attempt >= policy.max_attempts:
            assert policy.should_retry(error, attempt) is ck.DO_NOT_RETRY

    @given(
        policies, jitters, st.integers(min_value=1, max_value=200), st.sampled_from(FINAL_ERRORS)
    )
    def test_non_retryable_errors_never_retry(
        self, policy: ck.ExponentialBackoff, jitter: ck.Jitter, attempt: int, error: ck.CloudError
    ) -> None:
        """Whatever the settings, a non-retryable error is final."""
        policy.jitter = jitter
        assert policy.should_retry(error, attempt) is ck.DO_NOT_RETRY

    @given(policies, jitters, st.integers(min_value=1, max_value=200), st.integers(0, 2**32))
    def test_jittered_delays_stay_within_bounds(
        self, policy: ck.ExponentialBackoff, jitter: ck.Jitter, attempt: int, seed: int
    ) -> None:
        """Jittered delays are never negative and never above max_delay."""
        jittered = ck.ExponentialBackoff(
            initial_delay=policy.initial_delay,
            multiplier=policy.multiplier,
            max_delay=policy.max_delay,
            jitter=jitter,
            random=random.Random(seed),
        )
        assert 0.0 <= jittered.delay(attempt) <= policy.max_delay
