"""The demo, run for real: embedded endpoints on loopback, the runtime, the driver, the summary."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from cloudkit_trio.demo import main
from cloudkit_trio.demo._asgi import answer, header, serve_lifespan
from cloudkit_trio.demo._run import run_demo
from cloudkit_trio.demo._server import serve_app
from cloudkit_trio.demo._settings import DemoSettings
from cloudkit_trio.demo._view import PlainView, View, choose_view

if TYPE_CHECKING:
    import pytest

    from cloudkit_trio.demo._progress import Header, Progress
    from cloudkit_trio.demo._summary import Summary

# Long enough for the outage endpoint's breaker to open and close, and for 1 s credential
# leases to be refreshed: the run is planned for 2 s (300 operations at 150 per second).
SMALL_RUN = ["demo", "--operations", "300", "--rate", "150", "--concurrency", "32", "--json"]


class Watching:
    """A view that passes everything on and says when ``replied`` reached ``threshold``."""

    def __init__(self, inner: View, threshold: int, on_threshold: Any = None) -> None:
        self.inner = inner
        self.threshold = threshold
        self.reached = trio.Event()
        self.on_threshold = on_threshold

    def start(self, header: Header) -> None:
        self.inner.start(header)

    def update(self, progress: Progress) -> None:
        self.inner.update(progress)
        if progress.replied >= self.threshold and not self.reached.is_set():
            self.reached.set()
            if self.on_threshold is not None:
                self.on_threshold()

    def finish(self, summary: Summary) -> None:
        self.inner.finish(summary)


async def start_run(
    nursery: trio.Nursery, settings: DemoSettings, view: View
) -> tuple[Header, list[Summary]]:
    """Start a run in ``nursery``; the summary lands in the list when it is over."""
    summaries: list[Summary] = []

    async def runner(task_status: trio.TaskStatus[Header]) -> None:
        summaries.append(await run_demo(settings, view, task_status=task_status))

    header: Header = await nursery.start(runner)
    return header, summaries


class TestJsonRun:
    def test_figures_are_consistent(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A small run answers every submission, retries, refreshes credentials, and the
        outage endpoint's breaker opens and closes again; the figures agree with each other."""
        status = main(SMALL_RUN)
        out = capsys.readouterr().out
        summary = json.loads(out)
        assert status == 0
        assert summary["submitted"] == summary["replied"] == 300
        assert summary["succeeded"] + summary["failed"] == summary["replied"]
        assert summary["via_execute"] == summary["via_channel"] == 150
        assert summary["invariant"] == {
            "submitted_equals_replied": True,
            "succeeded_plus_failed_equals_replied": True,
        }
        assert summary["retries"] > 0
        assert summary["credential_refreshes"] > 0
        # Every rejection by an open breaker is an operation that failed with CircuitOpenError.
        assert summary["rejected_by_breaker"] > 0
        assert summary["failures"].get("CircuitOpenError", 0) == summary["rejected_by_breaker"]
        (outage,) = [e for e in summary["endpoints"] if e["role"] == "outage"]
        breaker = outage["breaker"]
        assert breaker["opened"] >= 1 and breaker["closed"] >= 1
        assert breaker["recovered"] is True and breaker["state"] == "closed"
        states = [t["to"] for t in breaker["transitions"]]
        assert states.index("open") < len(states) - 1 - states[::-1].index("closed")
        assert summary["injected"]["outage"] > 0

    def test_entry_point_runs_as_a_module(self) -> None:
        """`python -m cloudkit_trio demo --json` runs end to end and exits 0."""
        result = subprocess.run(
            [sys.executable, "-m", "cloudkit_trio", "demo", "--operations", "100",
             "--rate", "200", "--fault-rate", "0", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["submitted"] == summary["replied"] == 100
        assert summary["succeeded"] + summary["failed"] == 100


class TestWhileRunning:
    async def test_plain_lines_and_a_metrics_scrape(self) -> None:
        """Without a terminal the view prints plain lines; --metrics-port serves a scrape
        with the runtime's cloudkit_ metrics during the run."""
        stream = io.StringIO()
        plain = choose_view(stream, json_output=False)
        assert isinstance(plain, PlainView)
        view = Watching(plain, threshold=50)
        settings = DemoSettings(operations=100, rate=200, fault_rate=0.0, metrics_port=0)
        async with trio.open_nursery() as nursery:
            header, summaries = await start_run(nursery, settings, view)
            assert header.metrics_url is not None
            with trio.fail_after(30):
                await view.reached.wait()
            async with httpx.AsyncClient() as client:
                scrape = await client.get(header.metrics_url)
        assert scrape.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
        assert "cloudkit_operations" in families
        assert sum(s.value for s in families["cloudkit_operations"].samples) > 0
        (summary,) = summaries
        view.finish(summary)
        lines = stream.getvalue().splitlines()
        assert lines[0].startswith("cloudkit-trio demo: 3 embedded endpoints")
        assert f"  metrics: {header.metrics_url}" in lines
        assert any(line.startswith("[") and "replied  ok" in line for line in lines)
        assert lines[-1] == "invariant submitted == replied: 100 == 100: holds"
        assert "\x1b[" not in stream.getvalue()

    async def test_ctrl_c_stops_and_every_submission_is_answered(self) -> None:
        """Ctrl-C stops releasing operations; the context's shutdown answers what was
        submitted, the summary says so, and the exit status is 130."""
        view = Watching(
            choose_view(io.StringIO(), json_output=True),
            threshold=20,
            on_threshold=lambda: signal.raise_signal(signal.SIGINT),
        )
        settings = DemoSettings(operations=400, rate=200, fault_rate=0.0)
        with trio.fail_after(30):
            summary = await run_demo(settings, view)
        assert summary.interrupted
        assert summary.exit_status == 130
        assert 20 <= summary.submitted < 400
        assert summary.submitted == summary.replied
        assert summary.succeeded + summary.failed == summary.replied

    async def test_a_second_ctrl_c_cancels_at_once(self) -> None:
        """A second Ctrl-C, while the first is still answering what runs, cancels at once;
        the summary says the check was not made rather than claiming a violation."""

        class CtrlCTwice(PlainView):
            sent = 0

            def update(self, progress: Progress) -> None:
                super().update(progress)
                # Every attempt fails slowly (fault rate 1), so the graceful stop that the
                # first Ctrl-C starts is still going on at the next tick.
                if (self.sent == 0 and progress.submitted >= 20) or (
                    self.sent == 1 and progress.stopping
                ):
                    self.sent += 1
                    signal.raise_signal(signal.SIGINT)

        stream = io.StringIO()
        view = CtrlCTwice(stream)
        settings = DemoSettings(operations=400, rate=200, fault_rate=1.0)
        with trio.fail_after(30):
            summary = await run_demo(settings, view)
        view.finish(summary)
        assert view.sent == 2
        assert summary.interrupted and summary.cancelled
        assert summary.exit_status == 130
        assert summary.submitted < 400
        assert (
            stream.getvalue()
            .splitlines()[-1]
            .endswith("not checked: a second Ctrl-C abandoned the answers still on their way")
        )


class TestYourOwnEndpoint:
    async def test_drives_a_real_endpoint_with_a_bearer_token(
        self, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--endpoint sends plain GETs, {n} numbered, to the given URL (here a hypercorn app
        the test serves), with the bearer token from the environment and no injected faults."""
        seen: list[tuple[str, str | None]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await serve_lifespan(receive, send)
                return
            seen.append((scope["path"], header(scope["headers"], b"authorization")))
            await answer(send, 200, b"ok")

        url = await nursery.start(serve_app, app)
        monkeypatch.setenv("CLOUDKIT_DEMO_BEARER_TOKEN", "let-me-in")
        stream = io.StringIO()
        settings = DemoSettings(operations=40, rate=400, endpoint=f"{url}/items/{{n}}")
        with trio.fail_after(30):
            summary = await run_demo(settings, choose_view(stream, json_output=False))
        assert summary.mode == "endpoint"
        assert summary.submitted == summary.replied == summary.succeeded == 40
        assert summary.retries == 0 and summary.injected == {}
        assert sorted(path for path, _ in seen) == sorted(f"/items/{n}" for n in range(40))
        assert {auth for _, auth in seen} == {"Bearer let-me-in"}
        assert "let-me-in" not in stream.getvalue()

    def test_a_busy_metrics_port_is_reported_in_one_line(self) -> None:
        """A --metrics-port that is taken ends the command with status 1 and a message."""
        # In a child process: hypercorn leaves the socket it failed to bind to the garbage
        # collector, whose ResourceWarning is not this test's business.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [sys.executable, "-m", "cloudkit_trio", "demo", "--operations", "10",
                 "--metrics-port", str(port)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"cloudkit-trio demo: cannot serve metrics on 127.0.0.1:{port}: Address already in "
            "use; choose another --metrics-port (0 picks a free one)\n"
        )
