"""The verdict, judged from frames alone: what holds, what does not, and in which words."""

from __future__ import annotations

from typing import Any

import attrs

from cloudkit_trio.demo._report import Check, EndpointFrame, Frame, Summary, Transition, Verdict

BUDGET = (0.2, 10.0, 10.0)


def endpoint(name: str, breaker: str = "closed") -> EndpointFrame:
    return EndpointFrame(
        name=name,
        url=f"http://{name}:80",
        key=f"http://{name}:80",
        doing="healthy",
        breaker=breaker,
        failure_ratio=0.0,
        half_open_in=None,
        requests=None,
        rejected=0,
    )


def frame(**changes: Any) -> Frame:
    """A good run of 100 operations on two endpoints, gamma's breaker open then closed."""
    base = Frame(
        elapsed=2.0,
        planned=100,
        planned_duration=2.0,
        submitted=100,
        replied=100,
        succeeded=90,
        failed=10,
        duplicates=0,
        via_execute=50,
        via_channel=50,
        failures={"CircuitOpenError": 8, "ServiceUnavailable": 2},
        retries=20,
        retries_by_error={"ServiceUnavailable": 20},
        retries_suppressed=0,
        rejected=8,
        credential_fetches=2,
        credential_failures=0,
        credentials_expire_in=None,
        injected={},
        endpoints=(endpoint("alpha"), endpoint("gamma")),
        transitions=(
            Transition(0.5, "http://gamma:80", "closed", "open"),
            Transition(1.5, "http://gamma:80", "half_open", "closed"),
        ),
        final=True,
    )
    return attrs.evolve(base, **changes)


def judge(f: Frame, outage: str | None = "gamma", **options: Any) -> Verdict:
    return Verdict.judge(f, outage_endpoint=outage, budget=BUDGET, **options)


def failed(verdict: Verdict) -> set[str]:
    return {c.name for c in verdict.checks if c.binding and not c.holds}


class TestVerdict:
    def test_a_good_run_passes(self) -> None:
        """Every check holds, and the words say so."""
        verdict = judge(frame())
        assert verdict.passed
        assert verdict.words == "PASS: 5 checks held"
        assert verdict.to_json()["failed"] == []

    def test_a_missing_or_double_answer_fails(self) -> None:
        """Answers must match submissions one for one."""
        assert failed(judge(frame(replied=99, succeeded=89))) == {"answered_exactly_once"}
        assert failed(judge(frame(duplicates=1))) == {"answered_exactly_once"}

    def test_a_breaker_still_open_fails(self) -> None:
        """A breaker that opened must be closed at the end."""
        stuck = frame(endpoints=(endpoint("alpha"), endpoint("gamma", "open")))
        verdict = judge(stuck)
        assert failed(verdict) == {"breakers_recovered"}
        assert "breaker of gamma opened and never closed again" in verdict.words

    def test_the_outage_must_open_its_breaker(self) -> None:
        """In the scenario, gamma's breaker has to trip; elsewhere, no opening is fine."""
        calm = frame(transitions=())
        assert failed(judge(calm)) == {"breakers_recovered"}
        assert failed(judge(calm, outage=None)) == set()

    def test_real_errors_outnumbering_fast_rejections(self) -> None:
        """Binding with the outage scenario, reported only otherwise."""
        real = frame(failures={"CircuitOpenError": 2, "ServiceUnavailable": 8})
        assert failed(judge(real)) == {"failures_mostly_fast_rejections"}
        assert judge(real, outage=None).passed

    def test_retries_past_the_budget_fail(self) -> None:
        """More retries than the budget could allow is a failure."""
        assert failed(judge(frame(retries=10_000))) == {"retries_within_budget"}

    def test_nothing_succeeded_names_the_endpoint(self) -> None:
        """A run where nothing succeeds fails, saying where it sent and what came back."""
        dead = frame(succeeded=0, failed=100, failures={"CircuitOpenError": 100}, retries=5,
                     retries_by_error={"ConnectError": 5})  # fmt: skip
        verdict = judge(dead, outage=None)
        assert not verdict.passed
        assert (
            "nothing succeeded: all 100 operations failed (CircuitOpenError 100)" in verdict.words
        )
        assert "ConnectError 5" in verdict.words
        assert "is http://alpha:80, http://gamma:80 up and answering?" in verdict.words

    def test_extra_checks_and_interruption(self) -> None:
        """A target's binding check decides too; Ctrl-C never passes, and exits 130."""
        listing = Check(
            name="listed_equals_uploaded", holds=False, statement="listed == uploaded: 3 == 4"
        )
        assert failed(judge(frame(), extra=(listing,))) == {"listed_equals_uploaded"}
        stopped = judge(frame(), interrupted=True)
        assert not stopped.passed
        summary = Summary(
            mode="embedded", target="t", seed=1, frame=frame(), verdict=stopped, interrupted=True
        )
        assert summary.exit_status == 130
        assert summary.to_json()["verdict"]["words"].startswith("INTERRUPTED")
