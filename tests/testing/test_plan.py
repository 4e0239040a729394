"""Fault plans: seeded, declarative, and the same answer for the same question."""

from __future__ import annotations

import pytest

from cloudkit_trio.testing import EndpointFaults, Fault, FaultPlan, FaultWindow, Phase


def plan(seed: int) -> FaultPlan:
    return FaultPlan(
        seed=seed,
        endpoints={
            "alpha": EndpointFaults(rate=0.3),
            "gamma": EndpointFaults(
                rate=0.1,
                windows=[
                    FaultWindow(start=2.0, end=4.0, fault=Fault.SERVER_ERROR, share=0.5),
                    FaultWindow(start=5.0, end=8.0),
                ],
            ),
        },
    )


def schedule(p: FaultPlan, endpoint: str, elapsed: float | None) -> list[Fault | None]:
    return [p.decide(endpoint, f"GET /objects/{n} #1", elapsed) for n in range(300)]


class TestDeterminism:
    def test_a_seed_replays_its_schedule(self) -> None:
        """Two plans with one seed answer every request alike; another seed differs."""
        assert schedule(plan(7), "alpha", 1.0) == schedule(plan(7), "alpha", 1.0)
        assert schedule(plan(7), "alpha", 1.0) != schedule(plan(8), "alpha", 1.0)

    def test_the_order_of_questions_changes_nothing(self) -> None:
        """Asking in reverse order gets the same answers: concurrency cannot reorder faults."""
        forward = schedule(plan(3), "alpha", 1.0)
        p = plan(3)
        backward = [p.decide("alpha", f"GET /objects/{n} #1", 1.0) for n in reversed(range(300))]
        assert backward[::-1] == forward

    def test_the_rate_is_roughly_kept(self) -> None:
        """About ``rate`` of the requests fail, with the weighted kinds only."""
        faults = [f for f in schedule(plan(1), "alpha", 1.0) if f is not None]
        assert 60 <= len(faults) <= 120
        assert set(faults) <= {
            Fault.SERVER_ERROR,
            Fault.UNAVAILABLE,
            Fault.RATE_LIMITED,
            Fault.RESET,
            Fault.SLOW,
        }


class TestWindows:
    def test_an_outage_fails_everything_and_a_burst_part(self) -> None:
        """Inside a share=1 window every request fails with its fault; a burst fails about its share."""
        p = plan(1)
        assert set(schedule(p, "gamma", 6.0)) == {Fault.UNAVAILABLE}
        burst = schedule(p, "gamma", 3.0)
        assert 100 <= burst.count(Fault.SERVER_ERROR) <= 200

    def test_phases_say_what_an_endpoint_is_doing(self) -> None:
        """The phase follows the windows; an endpoint the plan does not name is healthy."""
        p = plan(1)
        assert p.phase("gamma", 1.0) is Phase.FLAKY
        assert p.phase("gamma", 3.0) is Phase.FAILING
        assert p.phase("gamma", 6.0) is Phase.DOWN
        assert p.phase("gamma", 8.0) is Phase.FLAKY
        assert p.phase("gamma", None) is Phase.FLAKY
        assert p.phase("nobody", 6.0) is Phase.HEALTHY
        assert p.decide("nobody", "GET / #1", 6.0) is None

    def test_before_the_clock_starts_no_window_applies(self) -> None:
        """With no elapsed time, only the random faults remain."""
        outage = EndpointFaults(windows=[FaultWindow(start=0, end=9)])
        p = FaultPlan(endpoints={"g": outage})
        assert set(schedule(p, "g", None)) == {None}
        assert set(schedule(p, "g", 1.0)) == {Fault.UNAVAILABLE}


class TestValidation:
    @pytest.mark.parametrize(
        ("build", "message"),
        [
            (lambda: EndpointFaults(rate=1.5), "rate must be a number from 0 to 1"),
            (lambda: FaultWindow(start=3.0, end=2.0), "must end after it starts"),
            (
                lambda: FaultWindow(start=0.0, end=1.0, fault=Fault.REFUSED),
                "cannot inject Fault.REFUSED",
            ),
            (lambda: EndpointFaults(weights={Fault.REFUSED: 1.0}), "cannot inject Fault.REFUSED"),
            (lambda: EndpointFaults(weights={Fault.RESET: 0.0}), "at least one fault"),
            (lambda: EndpointFaults(latency=-1.0), "latency must be a finite number"),
        ],
    )
    def test_nonsense_is_refused(self, build: object, message: str) -> None:
        """A plan that cannot be served fails when it is built, with the reason."""
        with pytest.raises(ValueError, match=message):
            build()  # type: ignore[operator]
