"""The project's own chaos test: seeded faults on real loopback servers, every invariant at once.

The scenario engine lives in ``_chaos.py`` (its docstring states the rules behind each
figure); ``benchmarks/chaos.py`` runs the same engine at 100,000 operations.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing

from ._chaos import FAULTS, Entry, Shutdown, plan_operations, run_chaos

OPERATIONS = 3000
CONCURRENCY = 64


def _tally(figure: str) -> dict[str, int]:
    """A ``key:count,key:count`` figure as a dict (``-`` is empty)."""
    pairs = (item.rsplit(":", 1) for item in figure.split(",") if item != "-")
    return {key: int(count) for key, count in pairs}


@pytest.fixture
def chaos_clock() -> trio.testing.MockClock:
    # Real sockets: jump only once every task has been blocked for 5 ms of real time, so
    # loopback I/O in flight is rarely jumped over while timeouts cost next to nothing. A
    # jump that does come early only turns an answer into a timeout; every bound the
    # scenario checks stays exact, since the clock only ever jumps to the next deadline.
    return trio.testing.MockClock(autojump_threshold=0.005)


class TestChaos:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    async def test_every_invariant_holds_under_seeded_faults(
        self, chaos_clock: trio.testing.MockClock, seed: int
    ) -> None:
        """Faults, cancellation, faulty SPIs and shutdowns with work in flight break no invariant."""
        figures = await run_chaos(seed, OPERATIONS, CONCURRENCY)
        report = "\n".join(figures.lines())
        assert figures.violations() == {}, report

    async def test_the_scenario_exercises_what_it_claims_to(
        self, chaos_clock: trio.testing.MockClock
    ) -> None:
        """A run serves every fault; callers meet timeouts, refusals and their own cancellation."""
        figures = await run_chaos(7, 1200, 48, phases=3)
        report = "\n".join(figures.lines())
        served = Counter(_tally(figures.faults))
        assert [kind for kind in FAULTS if not served[kind]] == [], report
        assert sorted(figures.modes.split(",")) == sorted(mode.value for mode in Shutdown), report
        errors: Counter[str] = Counter()
        for key, count in _tally(figures.errors).items():
            errors[key.rsplit(".", 1)[-1]] += count
        assert errors["OperationTimeout"] > 0, report
        assert errors["ContextClosed"] > 0, report
        assert errors["InternalError"] < figures.calls // 10, report
        assert figures.expected_success > figures.operations // 10, report
        assert figures.expected_failure > 0, report
        assert figures.caller_cancelled > 0, report
        assert figures.refused > 0, report
        assert figures.submitted > 0, report
        assert figures.auth_calls > 0, report

    def test_a_seed_always_stands_for_the_same_plan(self) -> None:
        """The plan of operations, faults and shutdowns depends on the seed alone."""
        assert plan_operations(5, 1000, 4) == plan_operations(5, 1000, 4)
        assert plan_operations(5, 1000, 4) != plan_operations(6, 1000, 4)
        steps, phases = plan_operations(5, 1000, 4)
        assert {step.entry for step in steps} == set(Entry)
        assert [phase.start for phase in phases[1:]] == [phase.stop for phase in phases[:-1]]
        assert phases[0].start == 0
        assert phases[-1].stop == 1000
        assert all(phase.start < phase.trip_at <= phase.stop for phase in phases)
