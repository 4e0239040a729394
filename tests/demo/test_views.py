"""The views, fed with made-up figures: which one is chosen and what each prints."""

from __future__ import annotations

import io
import json

from cloudkit_trio.demo._collector import Transition
from cloudkit_trio.demo._live import LiveView
from cloudkit_trio.demo._progress import EndpointStatus, Header, Progress
from cloudkit_trio.demo._settings import DemoSettings
from cloudkit_trio.demo._summary import EndpointSummary, Summary
from cloudkit_trio.demo._view import JsonView, PlainView, choose_view

GAMMA = "http://127.0.0.1:9003"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def header() -> Header:
    return Header(
        mode="embedded",
        title="3 embedded endpoints with injected faults",
        settings=DemoSettings(),
        endpoints=(("gamma", GAMMA, "outage"),),
        notes=("outage: gamma answers 503 from 6.0 s to 11.0 s",),
        metrics_url=None,
    )


def progress(elapsed: float, transitions: tuple[Transition, ...] = ()) -> Progress:
    return Progress(
        elapsed=elapsed, planned=2000, planned_duration=20.0, submitted=720, replied=700,
        succeeded=660, failed=40, retries=150, rejected_by_breaker=14, credential_refreshes=1,
        credentials_expire_in=2.5, inflight=20, queued=0,
        endpoints=(
            EndpointStatus(name="gamma", url=GAMMA, role="outage", key=GAMMA, state="open",
                           failure_ratio=0.8, time_until_half_open=0.4, rejected=14, requests=240),
        ),
        transitions=transitions, stopping=False,
    )  # fmt: skip


def summary(replied: int = 2000) -> Summary:
    opened = Transition(6.8, GAMMA, "closed", "open")
    closed = Transition(11.9, GAMMA, "half_open", "closed")
    return Summary(
        mode="embedded", target="3 embedded endpoints", seed=1, operations=2000,
        concurrency=32, rate=100.0, fault_rate=0.1, planned_duration=20.0, elapsed=20.8,
        submitted=2000, replied=replied, succeeded=1800, failed=replied - 1800, via_execute=1000,
        via_channel=1000, retried_operations=200, failures={"CircuitOpenError": 177},
        retries=276, retries_by_error={"ServiceUnavailable": 136}, rejected_by_breaker=177,
        credential_fetches=6, credential_refresh_failures=0, injected={"outage": 98},
        endpoints=(
            EndpointSummary(name="gamma", url=GAMMA, role="outage", requests=603,
                            breaker_state="closed", rejected_by_breaker=177,
                            transitions=(opened, closed)),
        ),
        interrupted=False,
    )  # fmt: skip


class TestChoice:
    def test_a_terminal_gets_the_live_view_anything_else_plain_lines(self) -> None:
        """rich's live view only on a terminal; JSON whenever it is asked for."""
        assert isinstance(choose_view(Terminal(), json_output=False), LiveView)
        assert isinstance(choose_view(io.StringIO(), json_output=False), PlainView)
        assert isinstance(choose_view(Terminal(), json_output=True), JsonView)


class TestPlainView:
    def test_one_line_per_interval_and_one_per_transition(self) -> None:
        """Progress is printed at most once per interval; each transition once, when heard."""
        stream = io.StringIO()
        view = PlainView(stream, interval=1.0)
        view.start(header())
        opened = Transition(6.8, GAMMA, "closed", "open")
        view.update(progress(6.5))
        view.update(progress(6.75))
        view.update(progress(7.0, (opened,)))
        view.update(progress(7.25, (opened,)))
        lines = stream.getvalue().splitlines()
        assert lines[:3] == [
            "cloudkit-trio demo: 3 embedded endpoints with injected faults; 2000 operations at "
            "100/s, concurrency 32, fault rate 0.1, seed 1",
            f"  endpoint gamma: {GAMMA} (outage)",
            "  outage: gamma answers 503 from 6.0 s to 11.0 s",
        ]
        assert lines[3:] == [
            "[   6.5s] 700/2000 replied  ok 660  failed 40  retries 150  rejected 14  "
            "refreshes 1  in flight 20  | gamma open",
            "[   6.8s] breaker gamma: closed -> open",
        ]

    def test_summary_ends_with_the_invariant(self) -> None:
        """The summary lists the figures and the endpoints and ends with the check."""
        stream = io.StringIO()
        PlainView(stream).finish(summary(replied=1999))
        text = stream.getvalue()
        assert "  retries                    276  ServiceUnavailable 136" in text
        assert "breaker closed, opened 1, closed 1, rejected 177" in text
        assert text.splitlines()[-1] == ("invariant submitted == replied: 2000 == 1999: VIOLATED")


class TestLiveView:
    def test_renders_progress_and_summary(self) -> None:
        """The live view draws breakers and transitions, then the summary tables."""
        stream = Terminal()
        view = LiveView(stream)
        view.start(header())
        view.update(progress(7.0, (Transition(6.8, GAMMA, "closed", "open"),)))
        view.finish(summary())
        text = stream.getvalue()
        for expected in ("half-open in", "0.4 s", "closed", "open", "Summary", "Endpoints",
                         "invariant submitted == replied: 2000 == 2000: holds"):  # fmt: skip
            assert expected in text


class TestJsonView:
    def test_prints_the_summary_only(self) -> None:
        """Nothing while running; the summary's JSON at the end, with the required keys."""
        stream = io.StringIO()
        view = JsonView(stream)
        view.start(header())
        view.update(progress(1.0))
        assert stream.getvalue() == ""
        view.finish(summary())
        document = json.loads(stream.getvalue())
        for key in ("submitted", "replied", "succeeded", "failed", "retries",
                    "rejected_by_breaker", "credential_refreshes"):  # fmt: skip
            assert isinstance(document[key], int)
        assert document["credential_refreshes"] == 5
        (gamma,) = document["endpoints"]
        assert gamma["breaker"]["recovered"] is True
        assert gamma["breaker"]["transitions"][0] == {"at": 6.8, "from": "closed", "to": "open"}
