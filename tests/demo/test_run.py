"""The demo, run for real over loopback: fake endpoints, the runtime, frames, the verdict."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import trio

from cloudkit_trio.demo import main
from cloudkit_trio.demo._run import run_demo
from cloudkit_trio.demo._scenario import Settings, Target
from cloudkit_trio.demo._views import PlainView

if TYPE_CHECKING:
    import pytest

    from cloudkit_trio.demo._report import Frame, Summary

    from ..aws._moto import MotoServer

# Long enough for gamma's breaker to open and close, and for 1 s leases to be refreshed:
# the run is planned for 2 s (300 operations at 150 per second).
SMALL = ["demo", "--operations", "300", "--rate", "150"]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_json(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any], str]:
    status = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


class Recording:
    """A view that keeps what it is shown."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.summaries: list[Summary] = []

    def start(self, target: Target, settings: Settings, metrics_url: str | None) -> None:
        self.target = target

    def update(self, frame: Frame) -> None:
        self.frames.append(frame)

    def finish(self, summary: Summary) -> None:
        self.summaries.append(summary)


class TestVerdict:
    def test_a_small_run_passes(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Every operation is answered once, gamma's breaker opens and recovers, retries stay
        within the budget, and most failures are fast rejections: exit 0, said in JSON."""
        status, summary, _ = run_json(SMALL, capsys)
        verdict = summary["verdict"]
        assert (status, verdict["passed"], verdict["failed"]) == (0, True, [])
        assert set(verdict["held"]) == {
            "answered_exactly_once",
            "something_succeeded",
            "breakers_recovered",
            "retries_within_budget",
            "failures_mostly_fast_rejections",
        }
        assert verdict["words"].startswith("PASS")
        operations = summary["operations"]
        assert operations["submitted"] == operations["answered"] == 300
        assert operations["succeeded"] + operations["failed"] == 300
        assert operations["fast_rejections"] * 2 > operations["failed"]
        moves = {(t["endpoint"], t["to"]) for t in summary["transitions"]}
        assert {("gamma", "open"), ("gamma", "closed")} <= moves
        assert summary["attempts"]["retries"] > 0
        assert summary["credentials"]["refreshes"] >= 1
        assert {e["now"] for e in summary["endpoints"]} <= {
            "healthy",
            "failing",
            "down",
            "recovering",
        }

    def test_a_dead_endpoint_fails_and_says_why(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Against a closed port nothing succeeds: exit 1, and the reason in words."""
        url = f"http://127.0.0.1:{closed_port()}/x"
        status, summary, err = run_json(
            ["demo", "--operations", "40", "--rate", "200", "--endpoint", url], capsys
        )
        verdict = summary["verdict"]
        assert status == 1
        assert verdict["passed"] is False
        assert "something_succeeded" in verdict["failed"]
        assert "answered_exactly_once" in verdict["held"]
        assert "nothing succeeded: all 40 operations failed" in verdict["words"]
        assert f"is {url} up and answering?" in err

    def test_the_plain_view_ends_with_the_verdict(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Piped, the run prints its transitions, the summary and the verdict in words."""
        assert (
            main(
                [
                    "demo",
                    "--operations",
                    "40",
                    "--rate",
                    "200",
                    "--endpoint",
                    f"http://127.0.0.1:{closed_port()}/",
                ]
            )
            == 1
        )
        lines = capsys.readouterr().out.splitlines()
        assert lines[-6].startswith("verdict: FAIL: nothing succeeded")
        assert any(
            re.match(r"\[\s*\d+\.\ds\] breaker target: closed -> open", line) for line in lines
        )

    def test_s3_listing_matches_the_puts(self, capsys: pytest.CaptureFixture[str]) -> None:
        """With --s3, the fake S3 holds exactly the puts that succeeded, and the verdict says so."""
        status, summary, _ = run_json(
            ["demo", "--s3", "--operations", "120", "--rate", "150"], capsys
        )
        assert status == 0
        s3 = summary["s3"]
        assert s3["listed"] == s3["uploaded"] == summary["operations"]["succeeded"] > 0
        assert "listed_equals_uploaded" in summary["verdict"]["held"]

    def test_a_busy_metrics_port_cannot_start(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The run cannot start: one line on stderr, exit 1."""
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            assert main([*SMALL, "--metrics-port", str(port)]) == 1
        assert f"cannot serve metrics on 127.0.0.1:{port}" in capsys.readouterr().err


class TestOneSourceOfTruth:
    async def test_the_last_frame_is_the_summary(self) -> None:
        """The last frame is drawn after everything is answered and the metrics drained, and
        the summary is that very frame: the live view and the summary cannot disagree."""
        view = Recording()
        summary = await run_demo(Settings(operations=300, rate=150), view)
        last = view.frames[-1]
        assert last.final and not any(f.final for f in view.frames[:-1])
        assert summary.frame is last
        assert last.replied == last.submitted == 300
        assert (
            summary.to_json()["attempts"]["retries"]
            == last.retries
            == sum(last.retries_by_error.values())
        )

    async def test_the_plain_lines_agree_with_the_summary(self) -> None:
        """The last progress line and the summary print the same figures."""
        out = io.StringIO()
        view = PlainView(out)
        view.finish(await run_demo(Settings(operations=300, rate=150), view))
        text = out.getvalue()
        status = [line for line in text.splitlines() if " answered  ok " in line][-1]
        retries = re.search(r"retries (\d+) ", status)
        assert retries is not None
        assert re.search(rf"^  retries\s+{retries[1]}  ", text, re.MULTILINE)
        failed = re.search(r"failed (\d+) ", status)
        assert failed is not None
        assert re.search(rf"^  failed\s+{failed[1]}  ", text, re.MULTILINE)


class TestInterrupt:
    def test_ctrl_c_answers_what_runs_and_exits_130(self) -> None:
        """SIGINT stops releasing, the runtime answers what is running, exit 130."""
        process = subprocess.Popen(
            [sys.executable, "-m", "cloudkit_trio", *SMALL],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                if " answered  ok " in line:
                    break
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 130
        assert "verdict: INTERRUPTED" in out


class TestNow:
    async def test_the_now_column_follows_the_plan(self) -> None:
        """An endpoint is down in its outage, recovering while its breaker is not yet closed
        after it, healthy otherwise: never what it will be later."""
        from cloudkit_trio.demo._scenario import Endpoint, embedded_plan
        from cloudkit_trio.testing import FakeEndpoint

        settings = Settings(operations=1000, rate=100)  # outage from 3 s to 5.5 s
        endpoint = Endpoint(
            name="gamma",
            url="http://127.0.0.1:1",
            fake=FakeEndpoint("gamma", plan=embedded_plan(settings)),
        )
        assert endpoint.fake is not None
        now = trio.current_time()
        for at, breaker, doing in [
            (1.0, "closed", "healthy"),
            (4.0, "open", "down"),
            (6.0, "half_open", "recovering"),
            (7.0, "closed", "healthy"),
        ]:
            endpoint.fake.begin(now - at)
            assert endpoint.doing(breaker) == doing, at


class TestYourS3:
    async def test_s3_endpoint_against_moto(self, moto_s3: MotoServer) -> None:
        """--s3 --endpoint signs with credentials from the default chain, and reports the listing."""
        environ = {
            "AWS_ACCESS_KEY_ID": moto_s3.access_key,
            "AWS_SECRET_ACCESS_KEY": moto_s3.secret_key,
            "AWS_REGION": "us-east-1",
        }
        settings = Settings(s3=True, endpoint=moto_s3.url, operations=60, rate=100)
        summary = await run_demo(settings, Recording(), environ=environ)
        assert summary.exit_status == 0
        document = summary.to_json()
        assert document["s3"]["listed"] == document["s3"]["uploaded"] == 60
        check = next(c for c in summary.verdict.checks if c.name == "listed_equals_uploaded")
        assert check.holds and not check.binding
