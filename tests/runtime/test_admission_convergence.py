"""Admission against simulated servers: retry amplification, learned rates, learned limits.

Every server here is a pure function of the times requests reach it, and time is a float
the simulation advances: no I/O, no Trio, no sleeping, the same numbers on every run.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import Final

import pytest

from cloudkit_trio.runtime._budget import RetryBudgetState
from cloudkit_trio.runtime._concurrency import ConcurrencyLimit, LimitOutcome
from cloudkit_trio.runtime._ratelimit import TokenBucket
from cloudkit_trio.spi._admission import AdaptiveConcurrency, RateLimit, RetryBudget

ENDPOINT = "http://127.0.0.1:9000"

# The default retry policy: up to four attempts, each failing on its own with p = 0.4.
MAX_ATTEMPTS: Final = 4
FAILURE_RATE: Final = 0.4


def amplification(budget: RetryBudgetState | None, *, per_second: float, ops: int) -> float:
    """Attempts per operation for ``ops`` operations arriving evenly at ``per_second``."""
    rng = random.Random(20240601)
    attempts = 0
    for index in range(ops):
        now = index / per_second
        if budget is not None:
            budget.deposit(now)
        attempts += 1
        made = 1
        while made < MAX_ATTEMPTS and rng.random() < FAILURE_RATE:
            if budget is not None and not budget.try_withdraw(now):
                break
            attempts += 1
            made += 1
    return attempts / ops


class TestRetryAmplification:
    def test_without_a_budget_retries_multiply_the_load(self) -> None:
        """At 40 % failures four attempts make 1.62 attempts per operation."""
        measured = amplification(None, per_second=200.0, ops=60_000)
        assert measured >= 1.5
        assert measured == pytest.approx(1 + 0.4 + 0.4**2 + 0.4**3, abs=0.01)

    @pytest.mark.parametrize(("per_second", "bound"), [(200.0, 1.25), (1000.0, 1.21)])
    def test_default_budget_caps_amplification(self, per_second: float, bound: float) -> None:
        """The default budget holds a long run at 40 % failures under 1.3 attempts per
        operation: at most 1 + ratio + min_per_second / traffic."""
        state = RetryBudgetState(ENDPOINT, RetryBudget(), 0.0)
        measured = amplification(state, per_second=per_second, ops=int(per_second * 300))
        assert measured <= 1.3
        assert measured <= bound + 0.005
        assert measured == pytest.approx(bound, abs=0.01)  # the budget is used, not idle
        assert state.suppressed > 0

    def test_low_traffic_keeps_its_retries(self) -> None:
        """At 5 operations a second the reserve covers every retry the policy wants."""
        state = RetryBudgetState(ENDPOINT, RetryBudget(), 0.0)
        assert amplification(state, per_second=5.0, ops=3000) == pytest.approx(1.62, abs=0.03)
        assert state.suppressed == 0


Server = Callable[[float], bool]


def fixed_window(per_second: int) -> Server:
    """Accepts the first ``per_second`` requests of each wall-clock second, throttles the rest."""
    window, accepted = -1, 0

    def throttled(now: float) -> bool:
        nonlocal window, accepted
        if math.floor(now) != window:
            window, accepted = math.floor(now), 0
        if accepted < per_second:
            accepted += 1
            return False
        return True

    return throttled


def smooth(per_second: int) -> Server:
    """Accepts requests spaced at least 1 / per_second apart (a burst of one), throttles the rest."""
    next_free = -math.inf

    def throttled(now: float) -> bool:
        nonlocal next_free
        if now + 1e-12 >= next_free:
            next_free = now + 1.0 / per_second
            return False
        return True

    return throttled


def learn_rate(
    server: Server, start: float, *, seconds: float, latency: float = 0.0
) -> tuple[TokenBucket, list[tuple[float, float]], list[tuple[float, bool]]]:
    """A client with endless demand behind an adaptive bucket: each request is reserved as
    soon as the previous one is sent, and its answer arrives ``latency`` later."""
    state = TokenBucket(ENDPOINT, RateLimit(start, adaptive=True), 0.0)
    now = 0.0
    rates: list[tuple[float, float]] = []
    sent: list[tuple[float, bool]] = []
    answers: list[tuple[float, bool]] = []
    while now < seconds:
        now += state.reserve(now)
        throttled = server(now)
        sent.append((now, throttled))
        heapq.heappush(answers, (now + latency, throttled))
        while answers and answers[0][0] <= now:
            at, was_throttled = heapq.heappop(answers)
            state.on_response(at, was_throttled)
        rates.append((now, state.rate))
    return state, rates, sent


def mean_rate(rates: list[tuple[float, float]], since: float, until: float) -> float:
    """The bucket's rate averaged over time between ``since`` and ``until``."""
    total = 0.0
    for (at, rate), (after, _) in itertools.pairwise(rates):
        low, high = max(at, since), min(after, until)
        if high > low:
            total += (high - low) * rate
    return total / (until - since)


class TestAdaptiveRate:
    @pytest.mark.parametrize("limit", [10, 50, 200])
    @pytest.mark.parametrize("start_factor", [0.1, 5.0])
    @pytest.mark.parametrize(
        ("server", "latency"),
        [(fixed_window, 0.0), (fixed_window, 0.05), (smooth, 0.0)],
        ids=["fixed-window", "fixed-window-50ms", "smooth"],
    )
    def test_converges_to_the_server_rate(
        self,
        server: Callable[[int], Server],
        latency: float,
        limit: int,
        start_factor: float,
    ) -> None:
        """From a tenth or five times the server's rate, the learned rate and the accepted
        throughput settle within 20 % of it (measured: within 8 %)."""
        _, rates, sent = learn_rate(
            server(limit), limit * start_factor, seconds=300.0, latency=latency
        )
        learned = mean_rate(rates, 100.0, 300.0)
        accepted = sum(1 for at, throttled in sent if at >= 100.0 and not throttled) / 200.0
        assert learned == pytest.approx(limit, rel=0.2)
        assert accepted == pytest.approx(limit, rel=0.2)
        assert learned == pytest.approx(limit, rel=0.08)

    def test_converges_within_a_minute(self) -> None:
        """Starting five times too fast, the rate is within 20 % of the server's after 60 s."""
        _, rates, _ = learn_rate(fixed_window(50), 250.0, seconds=120.0)
        assert mean_rate(rates, 60.0, 120.0) == pytest.approx(50, rel=0.2)

    def test_follows_a_server_that_halves_its_rate(self) -> None:
        """When the server's quota halves, the learned rate follows it down."""
        high, low = smooth(100), smooth(50)
        _, rates, _ = learn_rate(
            lambda now: high(now) if now < 150 else low(now), 100.0, seconds=300.0
        )
        assert mean_rate(rates, 50.0, 150.0) == pytest.approx(100, rel=0.2)
        assert mean_rate(rates, 200.0, 300.0) == pytest.approx(50, rel=0.2)

    def test_never_below_min_rate(self) -> None:
        """A server that throttles everything drives the rate to min_rate, never below."""
        _, rates, _ = learn_rate(lambda now: True, 50.0, seconds=120.0)
        assert min(rate for _, rate in rates) == 0.5
        assert rates[-1][1] == 0.5


def drive(
    settings: AdaptiveConcurrency,
    phases: list[tuple[int, float]],
    *,
    shed: bool,
    seconds: float = 60.0,
    base: float = 0.05,
) -> list[tuple[float, float, int]]:
    """Endless demand through an adaptive limit against a server of ``capacity``.

    The queueing server answers in ``base * factor`` while at most ``capacity`` requests
    are in it and proportionally slower past that (a shared processor); the shedding server
    answers 503 in 1 ms to a request that finds it full. ``phases`` are ``(capacity,
    factor)`` pairs, ``seconds`` each. Returns ``(start, end, limit)`` spans.
    """
    state = ConcurrencyLimit(ENDPOINT, settings, 0.0)
    now, inside, order = 0.0, 0, 0
    pending: list[tuple[float, int, float, LimitOutcome]] = []
    spans: list[tuple[float, float, int]] = []
    for capacity, factor in phases:
        end = now + seconds
        while now < end:
            while state.try_acquire():
                inside += 1
                if shed and inside > capacity:
                    rtt, outcome = 0.001, LimitOutcome.DROPPED
                else:
                    rtt, outcome = base * factor * max(1.0, inside / capacity), LimitOutcome.SUCCESS
                order += 1
                heapq.heappush(pending, (now + rtt, order, rtt, outcome))
            at, _, rtt, outcome = heapq.heappop(pending)
            spans.append((now, at, state.limit))
            now, inside = at, inside - 1
            state.release(now, rtt, outcome)
    return spans


def mean_limit(spans: list[tuple[float, float, int]], since: float, until: float) -> float:
    total = 0.0
    for start, end, limit in spans:
        low, high = max(start, since), min(end, until)
        if high > low:
            total += (high - low) * limit
    return total / (until - since)


def settled_after(
    spans: list[tuple[float, float, int]], since: float, low: float, high: float
) -> float:
    """Seconds after ``since`` until the limit entered ``[low, high]`` for the rest of a
    60-second phase (a probe's brief halving aside: spans under ``high / 2`` are skipped)."""
    last_out = since
    for start, end, limit in spans:
        in_phase = end > since and start < since + 60.0
        if in_phase and not low <= limit <= high and limit >= high / 2:
            last_out = end
    return last_out - since


class TestAdaptiveConcurrency:
    def test_vegas_converges_near_capacity_and_again_after_it_halves(self) -> None:
        """Vegas settles a little above a queueing server's capacity (measured means 109
        for 100, 58 for 50) and re-converges within a second when the capacity halves."""
        spans = drive(AdaptiveConcurrency(), [(100, 1.0), (50, 1.0), (100, 1.0)], shed=False)
        assert 100 <= mean_limit(spans, 30.0, 60.0) <= 115
        assert 50 <= mean_limit(spans, 90.0, 120.0) <= 62
        assert 100 <= mean_limit(spans, 150.0, 180.0) <= 115
        assert settled_after(spans, 60.0, 45, 65) < 1.0
        assert settled_after(spans, 0.0, 90, 115) < 2.0
        assert settled_after(spans, 120.0, 90, 115) < 2.0

    def test_vegas_keeps_a_small_endpoints_queue_short(self) -> None:
        """Against a server that works on 16 at once, then 8: Netflix's thresholds alone
        (a queue of 3 to 6 or more) settled at 23 and 15, answers 1.5 and 1.8 times slower
        than unloaded, and never settled after the halving. Capped at a share of the
        limit, the queue stays about a tenth of it (measured 17.5, 8.7), and the halving
        is answered in a round trip or two, by going straight to what was being served."""
        spans = drive(AdaptiveConcurrency(), [(16, 1.0), (8, 1.0), (16, 1.0)], shed=False)
        assert 16 <= mean_limit(spans, 30.0, 60.0) <= 19
        assert 8 <= mean_limit(spans, 90.0, 120.0) <= 10
        assert 16 <= mean_limit(spans, 150.0, 180.0) <= 19
        assert settled_after(spans, 60.0, 8, 11) < 0.25  # five round trips of 50 ms
        assert settled_after(spans, 120.0, 16, 21) < 1.0

    def test_vegas_cuts_on_a_quarter_of_a_round_that_queued(self) -> None:
        """When the capacity halves, the answers that waited as long as they were served
        cut the limit before the rest of the round comes back: within 25 % of the new
        capacity in under three round trips of 50 ms (measured 0.13 s; 0.23 s waiting for
        whole rounds)."""
        spans = drive(AdaptiveConcurrency(), [(100, 1.0), (50, 1.0)], shed=False)
        first = next(start for start, _, limit in spans if start >= 60.0 and limit <= 62)
        assert first - 60.0 < 0.15

    def test_vegas_keeps_up_when_the_endpoint_becomes_slower_for_good(self) -> None:
        """Twice the latency at the same capacity: the probe re-measures the no-load
        latency, so the limit stays near capacity instead of collapsing."""
        phases = [(100, 1.0), (100, 2.0)]
        spans = drive(AdaptiveConcurrency(), phases, shed=False, seconds=90.0)
        assert 100 <= mean_limit(spans, 135.0, 180.0) <= 115
        never = AdaptiveConcurrency(probe_multiplier=10**6)
        unprobed = drive(never, phases, shed=False, seconds=90.0)
        assert mean_limit(unprobed, 135.0, 180.0) < 20  # what the probe is for

    def test_vegas_from_a_limit_of_one(self) -> None:
        """Starting at one attempt in flight Vegas finds a capacity of 300 within seconds."""
        spans = drive(AdaptiveConcurrency(initial_limit=1), [(300, 1.0)], shed=False, seconds=30.0)
        assert 300 <= mean_limit(spans, 15.0, 30.0) <= 320
        assert settled_after(spans, 0.0, 270, 330) < 5.0

    def test_vegas_backs_off_a_shedding_server(self) -> None:
        """Against a server that answers 503 when full, Vegas's drops hold it near capacity."""
        spans = drive(AdaptiveConcurrency(), [(100, 1.0), (50, 1.0)], shed=True)
        assert 85 <= mean_limit(spans, 30.0, 60.0) <= 100
        assert 42 <= mean_limit(spans, 90.0, 120.0) <= 52

    def test_aimd_converges_near_capacity_and_again_after_it_halves(self) -> None:
        """AIMD saws between backoff * capacity and capacity against a shedding server
        (measured means 95 for 100, 48 for 50) and follows a halving within a second."""
        settings = AdaptiveConcurrency(algorithm="aimd")
        spans = drive(settings, [(100, 1.0), (50, 1.0), (100, 1.0)], shed=True)
        assert 90 <= mean_limit(spans, 30.0, 60.0) <= 101
        assert 45 <= mean_limit(spans, 90.0, 120.0) <= 51
        assert 90 <= mean_limit(spans, 150.0, 180.0) <= 101
        assert settled_after(spans, 60.0, 40, 55) < 1.0
