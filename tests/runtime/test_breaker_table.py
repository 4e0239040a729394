"""The breaker's transition table and the Breaker around it, driven with plain numbers for time."""

from __future__ import annotations

import itertools
import math

import pytest

import cloudkit_trio as ck
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.runtime._breaker import (
    TRANSITIONS,
    Breaker,
    BreakerEvent,
    IllegalTransition,
    Outcome,
)

ENDPOINT = "http://127.0.0.1:9000"
SETTINGS = ck.CircuitBreaker(
    ck.NoRetry(), minimum_throughput=4, failure_ratio=0.5, break_duration=5.0, idle_eviction=60.0
)

S = BreakerState
E = BreakerEvent

# The machine as documented in CircuitBreaker's docstring, spelled out by hand.
EXPECTED = {
    (S.CLOSED, E.FAILURE_THRESHOLD_REACHED): S.OPEN,
    (S.OPEN, E.BREAK_ELAPSED): S.HALF_OPEN,
    (S.HALF_OPEN, E.PROBE_SUCCEEDED): S.CLOSED,
    (S.HALF_OPEN, E.PROBE_FAILED): S.OPEN,
    (S.HALF_OPEN, E.IDLE_EXPIRED): S.CLOSED,
    (S.CLOSED, E.QUORUM_REACHED): S.OPEN,
    (S.HALF_OPEN, E.QUORUM_REACHED): S.OPEN,
    (S.OPEN, E.RECOVERED_ELSEWHERE): S.CLOSED,
    **{(state, E.FORCE_OPEN): S.FORCED_OPEN for state in S},
    **{(state, E.FORCE_CLOSED): S.FORCED_CLOSED for state in S},
    **{(state, E.RESET): S.CLOSED for state in S},
}
ILLEGAL = [pair for pair in itertools.product(S, E) if pair not in EXPECTED]

Change = tuple[Breaker, BreakerState, BreakerState]


def fail(breaker: Breaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        breaker.release(breaker.acquire(now), Outcome.FAILURE, now)


def succeed(breaker: Breaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        breaker.release(breaker.acquire(now), Outcome.SUCCESS, now)


def breaker_in(
    state: BreakerState, settings: ck.CircuitBreaker = SETTINGS
) -> tuple[Breaker, list[Change]]:
    """A breaker brought into ``state`` through its public methods, by time 10."""
    changes: list[Change] = []
    breaker = Breaker(ENDPOINT, settings, 0.0, lambda b, old, new: changes.append((b, old, new)))
    if state is S.OPEN:
        fail(breaker, 10.0, settings.minimum_throughput)
    elif state is S.HALF_OPEN:
        fail(breaker, 0.0, settings.minimum_throughput)
        breaker.half_open_if_due(10.0)
    elif state is S.FORCED_OPEN:
        breaker.force_open(10.0)
    elif state is S.FORCED_CLOSED:
        breaker.force_closed(10.0)
    assert breaker.state is state
    changes.clear()
    return breaker, changes


class TestTable:
    def test_table_is_the_documented_machine(self) -> None:
        """The table holds exactly the documented transitions, nothing more."""
        assert dict(TRANSITIONS) == EXPECTED

    def test_table_is_read_only(self) -> None:
        """Nobody can add a move to the table at run time."""
        with pytest.raises(TypeError):
            TRANSITIONS[(S.OPEN, E.PROBE_SUCCEEDED)] = S.CLOSED  # type: ignore[index]

    @pytest.mark.parametrize(
        ("state", "event", "new"),
        [(state, event, new) for (state, event), new in EXPECTED.items()],
        ids=[f"{state}-{event}" for state, event in EXPECTED],
    )
    def test_every_legal_transition(
        self, state: BreakerState, event: BreakerEvent, new: BreakerState
    ) -> None:
        """Each event the table allows moves the breaker, and a real change is announced."""
        breaker, changes = breaker_in(state)
        generation, transitions = breaker.generation, breaker.transitions
        breaker._fire(event, 20.0)
        assert breaker.state is new
        assert breaker.generation == generation + 1 and breaker.since == 20.0
        if new is state:
            assert changes == [] and breaker.transitions == transitions
        else:
            assert changes == [(breaker, state, new)] and breaker.transitions == transitions + 1
        assert breaker.half_open_at == (25.0 if new is S.OPEN else None)

    @pytest.mark.parametrize(
        ("state", "event"), ILLEGAL, ids=[f"{state}-{event}" for state, event in ILLEGAL]
    )
    def test_every_illegal_event_is_rejected(
        self, state: BreakerState, event: BreakerEvent
    ) -> None:
        """An event the table does not allow raises an internal error and changes nothing."""
        breaker, changes = breaker_in(state)
        before = (breaker.state, breaker.generation, breaker.transitions, breaker.since)
        with pytest.raises(IllegalTransition, match=rf"got {event} while {state}.*report this bug"):
            breaker._fire(event, 20.0)
        assert (breaker.state, breaker.generation, breaker.transitions, breaker.since) == before
        assert changes == []

    def test_illegal_transition_is_a_runtime_error(self) -> None:
        """The internal error is a RuntimeError, not a CloudError a retry policy might eat."""
        assert issubclass(IllegalTransition, RuntimeError)
        assert not issubclass(IllegalTransition, ck.CloudError)


class TestFailureRatio:
    @pytest.mark.parametrize(
        ("failures", "calls", "ratio", "opens"),
        [
            (7, 25, 0.28, True),
            (6, 25, 0.28, False),
            (8, 25, 0.28, True),
            (7, 50, 0.14, True),
            (6, 50, 0.14, False),
            (7, 100, 0.07, True),
            (6, 100, 0.07, False),
            (1, 3, 1 / 3, True),
            (4, 4, 1.0, True),
            (3, 4, 1.0, False),
            (2, 4, 0.5, True),
            (1, 4, 0.5, False),
        ],
    )
    def test_opens_when_the_share_reaches_the_ratio(
        self, failures: int, calls: int, ratio: float, opens: bool
    ) -> None:
        """The breaker opens exactly when failures / calls reaches failure_ratio, in integers."""
        settings = ck.CircuitBreaker(ck.NoRetry(), minimum_throughput=calls, failure_ratio=ratio)
        breaker = Breaker(ENDPOINT, settings, 0.0)
        succeed(breaker, 1.0, calls - failures)
        fail(breaker, 1.0, failures)
        assert breaker.snapshot(1.0).calls_in_window == calls
        assert breaker.state is (S.OPEN if opens else S.CLOSED)

    def test_minimum_throughput_comes_first(self) -> None:
        """Below minimum_throughput calls, even all-failures leave the breaker closed."""
        breaker, _ = breaker_in(S.CLOSED)
        fail(breaker, 1.0, SETTINGS.minimum_throughput - 1)
        assert breaker.state is S.CLOSED
        fail(breaker, 1.0)
        assert breaker.state is S.OPEN


class TestBreaker:
    def test_closed_admits_and_counts_calls_in_flight(self) -> None:
        """Every permit counts as in flight until released, and a closed breaker is evictable
        only when none is."""
        breaker, _ = breaker_in(S.CLOSED)
        permits = [breaker.acquire(1.0) for _ in range(3)]
        assert breaker.inflight == 3 and not breaker.evictable
        assert not any(permit.probe for permit in permits)
        for permit in permits:
            breaker.release(permit, Outcome.IGNORED, 2.0)
        assert breaker.inflight == 0 and breaker.evictable and breaker.last_used == 2.0
        assert breaker.snapshot(2.0).calls_in_flight == 0

    def test_open_rejects_until_the_break_is_over(self) -> None:
        """An open breaker rejects with the time it will admit a probe."""
        breaker, _ = breaker_in(S.OPEN)
        with pytest.raises(ck.CircuitOpenError) as info:
            breaker.acquire(12.0)
        assert info.value.endpoint == ENDPOINT and info.value.retry_at == 15.0
        assert breaker.inflight == 0

    def test_acquire_half_opens_lazily_and_bounds_probes(self) -> None:
        """After the break, acquire moves to half-open itself and admits half_open_probes."""
        breaker, changes = breaker_in(S.OPEN)
        probe = breaker.acquire(15.0)
        assert probe.probe and breaker.state is S.HALF_OPEN and breaker.probes == 1
        assert [(old, new) for _, old, new in changes] == [(S.OPEN, S.HALF_OPEN)]
        with pytest.raises(ck.CircuitOpenError) as info:
            breaker.acquire(15.0)
        assert info.value.retry_at is None

    def test_probe_success_closes_with_an_empty_window(self) -> None:
        """A successful probe closes the circuit and forgets the failures."""
        breaker, changes = breaker_in(S.HALF_OPEN)
        breaker.release(breaker.acquire(11.0), Outcome.SUCCESS, 12.0)
        assert breaker.state is S.CLOSED and breaker.snapshot(12.0).calls_in_window == 0
        assert [(old, new) for _, old, new in changes] == [(S.HALF_OPEN, S.CLOSED)]

    def test_probe_failure_reopens_for_another_break(self) -> None:
        """A failed probe opens the circuit for break_duration from then."""
        breaker, _ = breaker_in(S.HALF_OPEN)
        breaker.release(breaker.acquire(11.0), Outcome.FAILURE, 12.0)
        assert breaker.state is S.OPEN and breaker.half_open_at == 17.0

    def test_ignored_probe_gives_the_slot_back(self) -> None:
        """A probe that says nothing (a cancelled caller) leaves half-open with a free slot."""
        breaker, _ = breaker_in(S.HALF_OPEN)
        breaker.release(breaker.acquire(11.0), Outcome.IGNORED, 12.0)
        assert breaker.state is S.HALF_OPEN and breaker.probes == 0 and breaker.inflight == 0
        assert breaker.acquire(13.0).probe

    def test_stale_permits_are_counted_back_but_not_heard(self) -> None:
        """Outcomes of permits from before a transition are ignored; their slots come back."""
        breaker, changes = breaker_in(S.HALF_OPEN)
        probe = breaker.acquire(11.0)
        breaker.force_open(12.0)
        breaker.release(probe, Outcome.SUCCESS, 13.0)
        assert breaker.state is S.FORCED_OPEN and breaker.probes == 0 and breaker.inflight == 0
        breaker.reset(14.0)
        old = breaker.acquire(14.0)
        fail(breaker, 14.0, 4)
        assert breaker.state is S.OPEN
        breaker.release(old, Outcome.FAILURE, 15.0)
        assert breaker.inflight == 0 and breaker.snapshot(15.0).calls_in_window == 4
        assert len(changes) == 3

    def test_forced_closed_admits_despite_failures(self) -> None:
        """A forced-closed breaker never opens by itself."""
        breaker, _ = breaker_in(S.FORCED_CLOSED)
        fail(breaker, 11.0, 10)
        assert breaker.state is S.FORCED_CLOSED

    def test_forced_open_rejects_forever(self) -> None:
        """A forced-open breaker rejects without a retry time, however late."""
        breaker, _ = breaker_in(S.FORCED_OPEN)
        with pytest.raises(ck.CircuitOpenError) as info:
            breaker.acquire(1e9)
        assert info.value.retry_at is None

    def test_reset_of_a_closed_breaker_clears_its_window(self) -> None:
        """reset() forgets failures even when the breaker is already closed, silently."""
        breaker, changes = breaker_in(S.CLOSED)
        fail(breaker, 11.0, 3)
        breaker.reset(12.0)
        assert breaker.snapshot(12.0).calls_in_window == 0 and changes == []
        fail(breaker, 12.0, 3)
        assert breaker.state is S.CLOSED

    @pytest.mark.parametrize("state", list(S), ids=str)
    def test_open_by_quorum_opens_only_a_closed_or_probing_breaker(
        self, state: BreakerState
    ) -> None:
        """Other processes' reports open a closed or half-open breaker for a full break,
        with no failure of its own; open and forced breakers are left as they are."""
        breaker, changes = breaker_in(state)
        opened = breaker.open_by_quorum(20.0)
        assert opened is (state in (S.CLOSED, S.HALF_OPEN))
        if opened:
            assert breaker.state is S.OPEN and breaker.last_event is E.QUORUM_REACHED
            assert (breaker.opened_at, breaker.half_open_at) == (20.0, 25.0)
            assert changes[-1] == (breaker, state, S.OPEN)
        else:
            assert breaker.state is state

    def test_a_deferred_break_waits_for_leave_to_probe(self) -> None:
        """Deferred, an open breaker rejects past its break (no timer, no lazy half-open)
        until it is allowed to probe; recovered elsewhere, it closes without a probe."""
        breaker, _ = breaker_in(S.OPEN)
        due = breaker.half_open_at
        assert due is not None and breaker.defer_half_open() == due
        assert breaker.timer_due(due + 1.0) == math.inf
        with pytest.raises(ck.CircuitOpenError) as caught:
            breaker.acquire(due + 1.0)
        assert caught.value.retry_at is None and breaker.state is S.OPEN
        breaker.allow_half_open(due + 2.0)
        assert breaker.acquire(due + 2.0).probe and breaker.state is S.HALF_OPEN
        other, _ = breaker_in(S.OPEN)
        other.defer_half_open()
        assert other.recovered_elsewhere(30.0) and other.state is S.CLOSED
        assert not other.recovered_elsewhere(31.0)
        assert other.defer_half_open() is None  # only an open breaker defers

    def test_manual_override_twice_is_not_a_change(self) -> None:
        """force_open on a forced-open breaker is fine and announces nothing."""
        breaker, changes = breaker_in(S.FORCED_OPEN)
        breaker.force_open(11.0)
        assert breaker.state is S.FORCED_OPEN and changes == [] and breaker.transitions == 1


class TestTimers:
    def test_open_is_due_at_the_end_of_the_break(self) -> None:
        """The actor is woken when the break is over, and then half-opens the breaker."""
        breaker, _ = breaker_in(S.OPEN)
        assert breaker.timer_due(11.0) == 15.0
        assert not breaker.on_timer(14.0) and breaker.state is S.OPEN
        assert not breaker.on_timer(15.0) and breaker.state is S.HALF_OPEN

    def test_idle_closed_breaker_expires(self) -> None:
        """A closed breaker with nothing in flight expires idle_eviction after its last use."""
        breaker, _ = breaker_in(S.CLOSED)
        succeed(breaker, 20.0)
        assert breaker.timer_due(20.0) == 80.0
        assert not breaker.on_timer(79.0)
        assert breaker.on_timer(80.0) and breaker.state is S.CLOSED

    def test_calls_in_flight_keep_a_breaker_alive(self) -> None:
        """A breaker whose call hangs does not expire; idle counts from the call's release."""
        breaker, _ = breaker_in(S.CLOSED)
        permit = breaker.acquire(20.0)
        assert breaker.timer_due(100.0) == 160.0  # looks again later
        assert not breaker.on_timer(1000.0)
        breaker.release(permit, Outcome.FAILURE, 1000.0)
        assert breaker.timer_due(1000.0) == 1060.0
        assert not breaker.on_timer(1059.0) and breaker.on_timer(1060.0)

    def test_half_open_without_probe_expires(self) -> None:
        """A half-open breaker nobody probes closes (announced) and expires after
        idle_eviction, counted from when it went half-open."""
        breaker, changes = breaker_in(S.HALF_OPEN)
        assert breaker.since == 10.0 and breaker.timer_due(10.0) == 70.0
        assert not breaker.on_timer(69.0) and breaker.state is S.HALF_OPEN
        assert breaker.on_timer(70.0) and breaker.state is S.CLOSED
        assert [(old, new) for _, old, new in changes] == [(S.HALF_OPEN, S.CLOSED)]

    def test_half_open_with_a_probe_in_flight_stays(self) -> None:
        """A probe in flight keeps a half-open breaker, however long it takes."""
        breaker, _ = breaker_in(S.HALF_OPEN)
        breaker.acquire(11.0)
        assert not breaker.on_timer(1e6) and breaker.state is S.HALF_OPEN

    @pytest.mark.parametrize("state", [S.FORCED_OPEN, S.FORCED_CLOSED])
    def test_forced_breakers_have_no_timer(self, state: BreakerState) -> None:
        """Manual overrides stay until reset: nothing is ever due."""
        breaker, _ = breaker_in(state)
        assert breaker.timer_due(11.0) == math.inf
        assert not breaker.on_timer(1e9) and breaker.state is state
