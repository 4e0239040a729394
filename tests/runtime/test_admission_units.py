"""Admission's settings records and per-endpoint state, driven with plain numbers for time."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkit_trio._errors import ConfigError
from cloudkit_trio.runtime._breaker import IllegalTransition
from cloudkit_trio.runtime._budget import RetryBudgetState
from cloudkit_trio.runtime._concurrency import (
    TRANSITIONS,
    ConcurrencyEvent,
    ConcurrencyLimit,
    ConcurrencyPhase,
    LimitOutcome,
)
from cloudkit_trio.runtime._latency import LatencyEstimate
from cloudkit_trio.runtime._ratelimit import TokenBucket
from cloudkit_trio.spi._admission import AdaptiveConcurrency, RateLimit, RetryBudget

ENDPOINT = "http://127.0.0.1:9000"

P = ConcurrencyPhase
E = ConcurrencyEvent


class TestSettings:
    def test_defaults(self) -> None:
        """The records' defaults are the documented ones."""
        assert RetryBudget() == RetryBudget(ratio=0.2, min_per_second=10.0, window=10.0)
        limit = RateLimit(50)
        assert (limit.rate, limit.burst, limit.wait, limit.adaptive) == (50, 1, True, False)
        assert (limit.min_rate, limit.max_rate) == (0.5, None)
        concurrency = AdaptiveConcurrency()
        assert attrs.asdict(concurrency) == {
            "algorithm": "vegas",
            "initial_limit": 20,
            "min_limit": 1,
            "max_limit": 1000,
            "backoff": 0.9,
            "probe_multiplier": 30,
            "max_wait": 0.0,
        }

    def test_records_are_frozen(self) -> None:
        """Settings cannot change once built."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            RetryBudget().ratio = 0.5  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            RateLimit(5).rate = 6  # type: ignore[misc]

    def test_budget_takes_keywords_only(self) -> None:
        """RetryBudget's fields are named at the call site."""
        with pytest.raises(TypeError):
            RetryBudget(0.2)  # type: ignore[call-arg]

    @pytest.mark.parametrize(
        ("build", "field", "words"),
        [
            (lambda: RetryBudget(ratio=-0.1), "ratio", "RetryBudget.ratio"),
            (lambda: RetryBudget(ratio=math.nan), "ratio", "finite"),
            (lambda: RetryBudget(ratio=True), "ratio", "RetryBudget.ratio"),
            (lambda: RetryBudget(min_per_second=-1), "min_per_second", ">= 0"),
            (lambda: RetryBudget(window=0), "window", "RetryBudget.window"),
            (lambda: RetryBudget(window="10"), "window", "'10'"),  # type: ignore[arg-type]
            (lambda: RateLimit(0), "rate", "RateLimit.rate must be a finite number > 0"),
            (lambda: RateLimit(math.inf), "rate", "finite"),
            (lambda: RateLimit(5, burst=0), "burst", "RateLimit.burst must be an int >= 1"),
            (lambda: RateLimit(5, burst=1.5), "burst", "int"),  # type: ignore[arg-type]
            (lambda: RateLimit(5, wait=1), "wait", "True or False"),  # type: ignore[arg-type]
            (lambda: RateLimit(5, adaptive="yes"), "adaptive", "True or False"),  # type: ignore[arg-type]
            (lambda: RateLimit(5, min_rate=0), "min_rate", "> 0"),
            (lambda: RateLimit(5, max_rate=-1.0), "max_rate", "> 0"),
            (lambda: RateLimit(1, adaptive=True, min_rate=2), "min_rate", "starting rate"),
            (lambda: RateLimit(10, adaptive=True, max_rate=5), "max_rate", "at least"),
            (lambda: AdaptiveConcurrency(algorithm="gradient"), "algorithm", "'vegas' or"),  # type: ignore[arg-type]
            (lambda: AdaptiveConcurrency(initial_limit=0), "initial_limit", ">= 1"),
            (lambda: AdaptiveConcurrency(min_limit=0), "min_limit", ">= 1"),
            (lambda: AdaptiveConcurrency(max_limit=10, min_limit=20), "min_limit", "exceed"),
            (
                lambda: AdaptiveConcurrency(initial_limit=5, min_limit=10),
                "initial_limit",
                "between",
            ),
            (
                lambda: AdaptiveConcurrency(initial_limit=50, max_limit=40),
                "initial_limit",
                "between",
            ),
            (lambda: AdaptiveConcurrency(backoff=0), "backoff", "> 0"),
            (lambda: AdaptiveConcurrency(backoff=1.0), "backoff", "<= 0.99"),
            (lambda: AdaptiveConcurrency(probe_multiplier=0), "probe_multiplier", ">= 1"),
        ],
    )
    def test_bad_values_raise_config_error(self, build: object, field: str, words: str) -> None:
        """Every bad value is a ConfigError (also a ValueError) naming the field."""
        assert callable(build)
        with pytest.raises(ConfigError) as caught:
            build()
        assert isinstance(caught.value, ValueError)
        assert caught.value.field == field
        assert words in str(caught.value)

    def test_adaptive_bounds_only_checked_when_adaptive(self) -> None:
        """A fixed rate below the adaptive floor is fine: the floor does not apply."""
        assert RateLimit(0.1).min_rate == 0.5
        assert RateLimit(0.1, adaptive=True, min_rate=0.05).min_rate == 0.05

    def test_equal_limits_are_allowed(self) -> None:
        """min_limit == initial_limit == max_limit is a fixed limit."""
        assert AdaptiveConcurrency(initial_limit=8, min_limit=8, max_limit=8).max_limit == 8


def budget(settings: RetryBudget | None = None, now: float = 0.0) -> RetryBudgetState:
    return RetryBudgetState(ENDPOINT, settings or RetryBudget(), now)


class TestRetryBudget:
    def test_reserve_allows_min_per_second_times_window(self) -> None:
        """With no traffic, the reserve alone allows min_per_second * window retries."""
        state = budget(RetryBudget(ratio=0.2, min_per_second=1.0, window=10.0))
        granted = sum(state.try_withdraw(1.0) for _ in range(15))
        assert granted == 10
        assert state.suppressed == 5

    def test_ratio_is_exact(self) -> None:
        """ratio=0.2 allows exactly one retry per five first attempts, also at 15."""
        state = budget(RetryBudget(ratio=0.2, min_per_second=0.0))
        for _ in range(15):
            state.deposit(0.5)
        assert [state.try_withdraw(0.5) for _ in range(4)] == [True, True, True, False]

    def test_fractional_allowance_rounds_down(self) -> None:
        """An allowance of 2.6 retries grants two: a retry withdraws a whole token."""
        state = budget(RetryBudget(ratio=0.2, min_per_second=0.0))
        for _ in range(13):
            state.deposit(0.0)
        assert sum(state.try_withdraw(0.0) for _ in range(5)) == 2
        snap = state.snapshot(0.0)
        assert snap.balance == pytest.approx(0.6)
        assert not snap.allowed

    def test_window_slides(self) -> None:
        """Retries fall out of the window a bucket at a time; so do first attempts."""
        state = budget(RetryBudget(ratio=0.0, min_per_second=0.2, window=10.0))
        assert [state.try_withdraw(0.5) for _ in range(3)] == [True, True, False]
        assert not state.try_withdraw(9.9)
        assert state.try_withdraw(10.0)  # the bucket of 0.0-1.0 s has fallen out
        assert state.try_withdraw(10.5)
        assert not state.try_withdraw(10.9)
        assert state.snapshot(10.9).retries == 2

    def test_long_idle_empties_the_window(self) -> None:
        """After a window without calls the budget is as new."""
        state = budget(RetryBudget(ratio=1.0, min_per_second=0.0))
        for _ in range(5):
            state.deposit(1.0)
        assert state.try_withdraw(1.0)
        snap = state.snapshot(100.0)
        assert (snap.first_attempts, snap.retries) == (0, 0)

    def test_snapshot(self) -> None:
        """The snapshot reports the window, the balance and the refusals."""
        state = budget()
        for _ in range(10):
            state.deposit(2.0)
        for _ in range(3):
            state.try_withdraw(2.5)
        snap = state.snapshot(3.0)
        assert snap.endpoint == ENDPOINT
        assert (snap.first_attempts, snap.retries, snap.suppressed) == (10, 3, 0)
        assert snap.balance == pytest.approx(0.2 * 10 + 100 - 3)
        assert snap.allowed
        assert snap.last_used == 2.5

    def test_eviction_flags(self) -> None:
        """A budget is at rest one window after its last use, and never holds a caller."""
        state = budget(now=1.0)
        state.deposit(4.0)
        assert state.evictable
        assert state.idle_since == 14.0

    @given(
        ratio=st.sampled_from([0.0, 0.1, 0.2, 0.25, 1.0 / 3.0, 0.5, 1.0, 1.5]),
        min_per_second=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5]),
        events=st.lists(st.tuples(st.floats(0.0, 3.0), st.booleans()), min_size=1, max_size=300),
    )
    def test_retries_never_exceed_the_allowance(
        self, ratio: float, min_per_second: float, events: list[tuple[float, bool]]
    ) -> None:
        """A withdrawal is granted exactly when the window's retries, it included, stay
        within ratio * first attempts + reserve (checked against a plain model)."""
        window = 2.0
        state = budget(RetryBudget(ratio=ratio, min_per_second=min_per_second, window=window))
        allowance_ratio = Fraction(repr(ratio))
        reserve = Fraction(repr(min_per_second)) * Fraction(repr(window))
        width = window / 10
        log: list[tuple[int, bool]] = []  # (bucket, is_retry) of what was counted
        now = 0.0
        for step, is_retry in events:
            now += step
            epoch = int(now // width)
            recent = [kind for bucket, kind in log if bucket > epoch - 10]
            firsts, retries = recent.count(False), recent.count(True)
            if not is_retry:
                state.deposit(now)
                log.append((epoch, False))
                continue
            expected = retries + 1 <= allowance_ratio * firsts + reserve
            assert state.try_withdraw(now) is expected
            if expected:
                log.append((epoch, True))


def bucket(settings: RateLimit, now: float = 0.0) -> TokenBucket:
    return TokenBucket(ENDPOINT, settings, now)


class TestLeasedBucket:
    """A shared bucket spends exactly what its leases granted."""

    def bucket(self) -> TokenBucket:
        return TokenBucket("http://e:80", RateLimit(100.0, shared=True), 0.0)

    def test_spends_the_lease_and_no_more(self) -> None:
        bucket = self.bucket()
        bucket.lease(0.0, 3, 0.1)
        assert [bucket.try_take(0.01) for _ in range(4)] == [True, True, True, False]
        assert bucket.refused == 1 and bucket.asked == 4
        bucket.lease(0.1, 2, 0.1)  # unspent tokens are not kept; none were here
        assert [bucket.try_take(0.11) for _ in range(3)] == [True, True, False]

    def test_unspent_tokens_go_and_owed_ones_are_paid_first(self) -> None:
        bucket = self.bucket()
        bucket.lease(0.0, 5, 0.1)
        assert bucket.try_take(0.01)
        bucket.lease(0.1, 2, 0.1)  # the 4 left of the first lease are not kept
        assert [bucket.reserve(0.11) for _ in range(2)] == [0.0, 0.0]
        # None left: the next ones wait for the next lease, one spacing apart.
        assert bucket.reserve(0.12) == pytest.approx(0.08)
        assert bucket.reserve(0.12) == pytest.approx(0.08 + 0.05)
        assert bucket.reserve(0.12, max_wait=0.1) == math.inf  # past its deadline
        bucket.lease(0.2, 3, 0.1)  # pays the two owed first
        assert [bucket.try_take(0.21) for _ in range(2)] == [True, False]

    def test_a_cancelled_reservation_gives_its_token_back(self) -> None:
        bucket = self.bucket()
        bucket.lease(0.0, 1, 0.1)
        assert bucket.reserve(0.0) == 0.0
        delay = bucket.reserve(0.0)
        assert delay == pytest.approx(0.1)
        bucket.cancel(0.05, 0.0 + delay)
        bucket.lease(0.1, 1, 0.1)
        assert bucket.try_take(0.1)

    def test_unleased_it_paces_itself_at_its_last_share(self) -> None:
        bucket = self.bucket()
        bucket.lease(0.0, 2, 0.1)  # 20/s
        assert bucket.try_take(0.0) and bucket.try_take(0.0) and not bucket.try_take(0.0)
        bucket.unlease(0.0)
        assert bucket.rate == pytest.approx(20.0)
        assert bucket.try_take(0.05) and not bucket.try_take(0.05)
        assert bucket.try_take(0.1)


class TestTokenBucket:
    def test_two_hundred_at_fifty_a_second(self) -> None:
        """200 reservations at 50/s with burst 1 are served FIFO, the last at 3.98 s."""
        state = bucket(RateLimit(50))
        delays = [state.reserve(0.0) for _ in range(200)]
        assert delays[0] == 0.0
        assert delays[-1] == pytest.approx(3.98)
        gaps = [b - a for a, b in itertools.pairwise(delays)]
        assert all(gap == pytest.approx(0.02) for gap in gaps)

    def test_burst_is_free_then_spaced(self) -> None:
        """A full bucket of burst 5 hands out five tokens at once, then one per interval."""
        state = bucket(RateLimit(10, burst=5))
        delays = [state.reserve(0.0) for _ in range(7)]
        assert delays[:5] == [0.0] * 5
        assert delays[5:] == [pytest.approx(0.1), pytest.approx(0.2)]

    def test_refills_while_idle(self) -> None:
        """Idle time refills the bucket, but never past burst."""
        state = bucket(RateLimit(10, burst=3))
        for _ in range(3):
            state.reserve(0.0)
        assert state.reserve(0.1) == 0.0
        assert state.reserve(100.0) == 0.0
        assert state.snapshot(100.0).tokens == pytest.approx(2.0)

    def test_fail_fast_refuses_when_empty(self) -> None:
        """try_take takes a free token, refuses without reserving when there is none."""
        state = bucket(RateLimit(2, wait=False))
        assert state.try_take(0.0)
        assert not state.try_take(0.0)
        assert not state.try_take(0.49)
        assert state.try_take(0.5)
        assert state.refused == 2

    def test_refusing_past_max_wait_takes_nothing(self) -> None:
        """A token due after the caller's deadline is refused and left for the next."""
        state = bucket(RateLimit(10))
        state.reserve(0.0)
        assert state.reserve(0.0, max_wait=0.05) == math.inf
        assert state.reserve(0.0, max_wait=0.5) == pytest.approx(0.1)
        assert state.refused == 1

    def test_cancel_gives_the_token_back(self) -> None:
        """A waiter that gives up hands its slot to the next caller."""
        state = bucket(RateLimit(10))
        state.reserve(0.0)
        delay = state.reserve(0.0)
        state.cancel(0.05, 0.0 + delay)
        assert state.reserve(0.05) == pytest.approx(0.05)  # due at 0.1, as the cancelled one

    def test_cancel_after_due_changes_nothing(self) -> None:
        """Once its token is due a reservation is spent: cancelling it refunds nothing."""
        state = bucket(RateLimit(10))
        state.reserve(0.0)
        delay = state.reserve(0.0)
        state.cancel(0.2, delay)
        assert state.reserve(0.2) == 0.0
        assert state.reserve(0.2) == pytest.approx(0.1)

    def test_cancel_never_overfills(self) -> None:
        """Cancelling more than was reserved cannot hold more than burst."""
        state = bucket(RateLimit(10, burst=2))
        state.cancel(0.0, 5.0)
        state.cancel(0.0, 5.0)
        assert [state.reserve(0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]

    def test_snapshot_counts_waiters(self) -> None:
        """Reservations not yet due are the callers waiting."""
        state = bucket(RateLimit(10))
        for _ in range(4):
            state.reserve(0.0)
        snap = state.snapshot(0.0)
        assert (snap.waiting, snap.tokens, snap.rate, snap.burst) == (3, 0.0, 10.0, 1)
        assert state.snapshot(0.25).waiting == 1
        assert state.snapshot(0.3).waiting == 0

    def test_eviction_flags(self) -> None:
        """A bucket comes to rest once every reservation is due and refilled."""
        state = bucket(RateLimit(10), now=1.0)
        assert state.idle_since == 1.0
        for _ in range(5):
            state.reserve(2.0)
        assert state.evictable
        assert state.idle_since == pytest.approx(2.5)

    def test_fixed_bucket_ignores_responses(self) -> None:
        """Only an adaptive bucket learns from answers."""
        state = bucket(RateLimit(10))
        for now in range(10):
            state.on_response(float(now), throttled=True)
        assert state.rate == 10.0
        assert state.throttles == 0

    @given(
        rate=st.floats(0.5, 500.0),
        burst=st.integers(1, 8),
        steps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=60),
    )
    def test_never_exceeds_rate_and_burst(
        self, rate: float, burst: int, steps: list[float]
    ) -> None:
        """Tokens are due in FIFO order and no interval sees more than burst + rate * length."""
        state = bucket(RateLimit(rate, burst=burst))
        now, dues = 0.0, []
        for step in steps:
            now += step
            dues.append(now + state.reserve(now))
        assert dues == sorted(dues)
        for i, j in itertools.combinations(range(len(dues)), 2):
            assert j - i + 1 <= burst + rate * (dues[j] - dues[i]) + 1e-6


def adaptive(rate: float = 10.0, **kwargs: float) -> TokenBucket:
    return bucket(RateLimit(rate, adaptive=True, **kwargs))  # type: ignore[arg-type]


def state_measured_at(now: float) -> float:
    """The smoothed rate of one answer every 0.1 s, measured at ``now`` (one bucket)."""
    del now
    return 0.8 * (6 / 0.5)  # six answers (0.0 to 0.5) in the first half-second bucket


class TestAdaptiveBucket:
    def test_starts_at_the_configured_rate(self) -> None:
        """The curve starts on its plateau: the first answers leave the rate as configured."""
        state = adaptive(20.0)
        state.on_response(0.1, throttled=False)
        assert state.rate == pytest.approx(20.0)

    def test_throttle_cuts_to_seventy_percent(self) -> None:
        """A throttle cuts the rate to 0.7 of the lower of the measured and current rates."""
        state = adaptive(20.0)
        now = 0.0
        for _ in range(40):  # two seconds at 20/s: a measured rate near 20
            now += state.reserve(now)
            state.on_response(now, throttled=False)
        measured = state.measured_rate
        assert 15.0 < measured <= 21.0
        state.on_response(now, throttled=True)
        assert state.rate == pytest.approx(0.7 * min(measured, 20.0))

    def test_throttles_in_a_row_cut_once(self) -> None:
        """Throttles within half a second of a cut are one episode, successes between them
        or not: they answer requests sent before the cut, which say nothing about it."""
        state = adaptive(20.0)
        for index in range(10):
            state.on_response(0.01 * index, throttled=True)
        assert state.rate == pytest.approx(14.0)
        assert state.throttles == 10
        state.on_response(0.2, throttled=False)
        state.on_response(0.21, throttled=True)
        assert state.rate == pytest.approx(14.0, rel=0.01)
        state.on_response(0.6, throttled=True)
        assert state.rate < 14.0 * 0.7 + 1e-9

    def test_a_long_episode_cuts_every_half_second(self) -> None:
        """A server that throttles everything keeps being backed off from, down to min_rate."""
        state = adaptive(20.0, min_rate=1.0)
        rates = []
        for tick in range(200):
            state.on_response(tick * 0.1, throttled=True)
            rates.append(state.rate)
        assert rates[:5] == [pytest.approx(14.0)] * 5  # one cut in the first half second
        assert rates[5] == pytest.approx(0.7 * state_measured_at(0.5))
        assert rates == sorted(rates, reverse=True)
        assert rates[-1] == 1.0

    def test_growth_stops_at_max_rate(self) -> None:
        """A server that never throttles lets the rate grow to max_rate, no further."""
        state = adaptive(10.0, max_rate=40.0)
        now = 0.0
        for _ in range(20_000):
            now += state.reserve(now)
            state.on_response(now, throttled=False)
        assert state.rate == 40.0
        assert now < 600.0

    def test_growth_is_held_to_twice_the_measured_rate(self) -> None:
        """A client that sends little does not learn a rate far above what it sends."""
        state = adaptive(10.0)
        for tick in range(600):  # 2 a second for five minutes, never throttled
            now = tick * 0.5
            assert state.try_take(now)
            state.on_response(now, throttled=False)
        assert state.rate == 10.0  # twice 2/s is below the start: held there, not lowered

    def test_rate_change_keeps_the_queue(self) -> None:
        """Tokens owed stay owed when the rate changes: the backlog is rescaled."""
        state = adaptive(10.0)
        for _ in range(5):
            state.reserve(0.0)  # four waiting, the bucket full at 0.5
        state.on_response(0.0, throttled=True)  # 7/s
        assert state.snapshot(0.0).waiting == 4
        assert state.reserve(0.0) == pytest.approx(5 / 7.0)


class TestConcurrencyTable:
    def test_table_is_the_documented_machine(self) -> None:
        """Only Vegas's probe moves the phase: steady -> probing -> steady."""
        assert dict(TRANSITIONS) == {
            (P.STEADY, E.PROBE_DUE): P.PROBING,
            (P.PROBING, E.PROBE_DONE): P.STEADY,
        }

    @pytest.mark.parametrize(
        ("phase", "event"),
        [(P.STEADY, E.PROBE_DONE), (P.PROBING, E.PROBE_DUE)],
    )
    def test_illegal_moves_raise(self, phase: ConcurrencyPhase, event: ConcurrencyEvent) -> None:
        """A move the table does not list is a bug, reported, and changes nothing."""
        state = limit_of(AdaptiveConcurrency())
        state.phase = phase
        with pytest.raises(IllegalTransition, match="please report"):
            state._fire(event)
        assert state.phase is phase


def limit_of(settings: AdaptiveConcurrency, now: float = 0.0) -> ConcurrencyLimit:
    return ConcurrencyLimit(ENDPOINT, settings, now)


class TestConcurrencyLimit:
    def test_acquire_up_to_the_limit(self) -> None:
        """try_acquire admits up to the limit and counts refusals."""
        state = limit_of(AdaptiveConcurrency(initial_limit=3))
        assert [state.try_acquire() for _ in range(4)] == [True, True, True, False]
        assert (state.inflight, state.rejected) == (3, 1)

    def test_release_without_acquire_is_a_bug(self) -> None:
        """Releasing more than was acquired raises instead of counting below zero."""
        state = limit_of(AdaptiveConcurrency())
        with pytest.raises(RuntimeError, match="released more often"):
            state.release(1.0, 0.1, LimitOutcome.SUCCESS)

    def test_ignored_only_frees_the_slot(self) -> None:
        """An ignored outcome changes nothing but the in-flight count."""
        state = limit_of(AdaptiveConcurrency(initial_limit=4))
        state.try_acquire()
        state.release(1.0, 0.1, LimitOutcome.IGNORED)
        snap = state.snapshot(1.0)
        assert (snap.inflight, snap.limit, snap.no_load_rtt, snap.drops) == (0, 4, None, 0)

    def test_drop_cuts_once_per_round_trip(self) -> None:
        """Drops of attempts sent before the last cut do not cut again."""
        state = limit_of(AdaptiveConcurrency(algorithm="aimd", initial_limit=100))
        for _ in range(10):
            state.try_acquire()
        for index in range(5):  # all started at 0.0, before the first cut at 1.0
            state.release(1.0 + index * 0.01, 1.0 + index * 0.01, LimitOutcome.DROPPED)
        assert state.limit == 90
        state.release(2.0, 0.5, LimitOutcome.DROPPED)  # started at 1.5: after the cut
        assert state.limit == 81
        assert state.drops == 6

    def test_vegas_takes_answers_that_took_no_time(self) -> None:
        """Round trips of 0 s (an in-memory transport under a mock clock): no queue, so
        the limit grows as with any fast answers, instead of dividing 0 by 0."""
        state = limit_of(AdaptiveConcurrency(initial_limit=10))
        now = 0.0
        for _ in range(5):
            for _ in range(10):
                state.try_acquire()
            now += 1.0
            for _ in range(10):
                state.release(now, 0.0, LimitOutcome.SUCCESS)
        assert state.limit > 10
        assert state.snapshot(now).no_load_rtt == 0.0

    def test_aimd_grows_one_per_round_when_used(self) -> None:
        """AIMD adds one per round of fresh samples while three quarters of the limit are in use."""
        state = limit_of(AdaptiveConcurrency(algorithm="aimd", initial_limit=10))
        now = 0.0
        for _ in range(3):
            for _ in range(10):
                state.try_acquire()
            now += 1.0
            for _ in range(10):
                state.release(now, 0.5, LimitOutcome.SUCCESS)
        assert state.limit == 13  # three rounds of ten fresh samples, each using the limit

    def test_aimd_does_not_grow_when_app_limited(self) -> None:
        """A limit nobody uses is not raised: one attempt at a time teaches nothing."""
        state = limit_of(AdaptiveConcurrency(algorithm="aimd", initial_limit=10))
        for tick in range(1, 500):
            state.try_acquire()
            state.release(float(tick), 0.5, LimitOutcome.SUCCESS)
        assert state.limit == 10

    @pytest.mark.parametrize(("in_flight", "grows"), [(14, False), (15, True)])
    def test_growth_needs_three_quarters_of_the_limit_in_use(
        self, in_flight: int, grows: bool
    ) -> None:
        """Vegas, with no queue at all: 14 of 20 in flight is not evidence that 20 is too
        few (Netflix's half would grow it), 15 is."""
        state = limit_of(AdaptiveConcurrency(initial_limit=20))
        now = 0.0
        for _ in range(5):
            for _ in range(in_flight):
                state.try_acquire()
            now += 1.0
            for _ in range(in_flight):
                state.release(now, 0.5, LimitOutcome.SUCCESS)
        assert (state.limit > 20) is grows, state.limit

    def test_limit_stays_within_bounds(self) -> None:
        """Drops never push the limit below min_limit, growth never above max_limit."""
        state = limit_of(
            AdaptiveConcurrency(algorithm="aimd", initial_limit=5, min_limit=3, max_limit=6)
        )
        for tick in range(1, 50):
            state.try_acquire()
            state.release(float(tick), 0.1, LimitOutcome.DROPPED)
        assert state.limit == 3
        for tick in range(50, 500):
            while state.try_acquire():
                pass
            for _ in range(state.inflight):
                state.release(float(tick), 0.1, LimitOutcome.SUCCESS)
        assert state.limit == 6

    def test_eviction_flags(self) -> None:
        """A limit with attempts in flight is never evictable; idle counts from the last end."""
        state = limit_of(AdaptiveConcurrency(), now=2.0)
        assert state.evictable
        assert state.idle_since == 2.0
        state.try_acquire()
        assert not state.evictable
        state.release(5.0, 0.1, LimitOutcome.SUCCESS)
        assert state.evictable
        assert state.idle_since == 5.0

    def test_snapshot(self) -> None:
        """The snapshot shows the limit, its estimate and what Vegas measured."""
        state = limit_of(AdaptiveConcurrency(initial_limit=7))
        state.try_acquire()
        state.release(1.0, 0.25, LimitOutcome.SUCCESS)
        snap = state.snapshot(1.0)
        assert (snap.endpoint, snap.algorithm, snap.limit, snap.estimate) == (
            ENDPOINT,
            "vegas",
            7,
            7.0,
        )
        assert (snap.phase, snap.no_load_rtt, snap.last_used) == (P.STEADY, 0.25, 1.0)

    @given(
        algorithm=st.sampled_from(["vegas", "aimd"]),
        bounds=st.tuples(st.integers(1, 30), st.integers(0, 30), st.integers(0, 30)),
        seed=st.integers(0, 2**32),
    )
    def test_random_use_keeps_the_invariants(
        self, algorithm: str, bounds: tuple[int, int, int], seed: int
    ) -> None:
        """Whatever the outcomes, the limit stays in bounds and no acquire passes it."""
        low, up, start = bounds[0], bounds[0] + bounds[1], bounds[0] + min(bounds[2], bounds[1])
        settings = AdaptiveConcurrency(
            algorithm=algorithm,  # type: ignore[arg-type]
            min_limit=low,
            max_limit=up,
            initial_limit=start,
            probe_multiplier=1,
        )
        state = limit_of(settings)
        rng = random.Random(seed)
        started: list[float] = []
        now = 0.0
        for _ in range(400):
            now += rng.random() * 0.05
            if rng.random() < 0.55:
                before = state.inflight
                if state.try_acquire():
                    assert before < state.limit + 1
                    started.append(now)
            elif started:
                begun = started.pop(rng.randrange(len(started)))
                outcome = rng.choice(list(LimitOutcome))
                state.release(now, now - begun, outcome)
            assert low <= state.limit <= up
            assert state.inflight == len(started)


class TestLatencyEstimate:
    def test_sheds_nothing_before_min_samples(self) -> None:
        """Too few samples say too little: nothing is shed, even with no time left."""
        state = LatencyEstimate(ENDPOINT, 0.0, min_samples=20)
        for tick in range(19):
            state.record(float(tick), 1.0)
            assert not state.sheds(0.0)
        assert state.median is None
        state.record(19.0, 1.0)
        assert state.sheds(0.5)
        assert state.median == 1.0

    def test_sheds_below_the_median(self) -> None:
        """With enough samples, an attempt is shed when less than the median remains."""
        rng = random.Random(3)
        state = LatencyEstimate(ENDPOINT, 0.0)
        for tick in range(2000):
            state.record(tick * 0.01, 0.2 * math.exp(rng.gauss(0.0, 0.5)))
        median = state.median
        assert median is not None
        assert median == pytest.approx(0.2, rel=0.2)
        assert state.sheds(0.7 * 0.2)
        assert not state.sheds(1.3 * 0.2)

    def test_follows_a_slower_endpoint(self) -> None:
        """When the endpoint becomes twice as slow the median follows within 100 samples."""
        rng = random.Random(5)
        state = LatencyEstimate(ENDPOINT, 0.0)
        for _ in range(500):
            state.record(1.0, 0.1 * math.exp(rng.gauss(0.0, 0.4)))
        for _ in range(100):
            state.record(2.0, 0.2 * math.exp(rng.gauss(0.0, 0.4)))
        assert state.median == pytest.approx(0.2, rel=0.2)

    def test_failures_are_not_recorded_but_zero_is_clamped(self) -> None:
        """A zero duration is clamped, so the estimate can still move."""
        state = LatencyEstimate(ENDPOINT, 0.0, min_samples=1)
        state.record(0.0, 0.0)
        state.record(0.1, 0.5)
        assert state.median is not None and state.median > 1e-6

    def test_eviction_flags_and_snapshot(self) -> None:
        """An estimate never holds a caller; idle counts from its last sample."""
        state = LatencyEstimate(ENDPOINT, 1.0, min_samples=2)
        assert state.evictable and state.idle_since == 1.0
        state.record(3.0, 0.4)
        snap = state.snapshot(4.0)
        assert (snap.endpoint, snap.samples, snap.median, snap.last_used) == (
            ENDPOINT,
            1,
            None,
            3.0,
        )
        assert state.idle_since == 3.0

    @given(
        samples=st.lists(st.floats(1e-3, 10.0), min_size=1, max_size=200),
        # Down to 2**-8: 1 ms scaled stays above the 1 µs floor every sample is raised to.
        exponent=st.integers(-8, 12),
    )
    def test_scale_invariant(self, samples: list[float], exponent: int) -> None:
        """Measuring in other units scales the estimate and nothing else (powers of two
        scale floats exactly, so the two runs take the very same steps)."""
        scale = 2.0**exponent
        plain = LatencyEstimate(ENDPOINT, 0.0, min_samples=1)
        scaled = LatencyEstimate(ENDPOINT, 0.0, min_samples=1)
        for sample in samples:
            plain.record(0.0, sample)
            scaled.record(0.0, sample * scale)
        assert plain.median is not None and scaled.median is not None
        assert scaled.median == plain.median * scale
