"""The examples under examples/ run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class TestQuickstart:
    def test_runs_and_prints_the_schedule(self) -> None:
        """examples/quickstart.py runs offline and prints the backoff table."""
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "quickstart.py")],
            capture_output=True, text=True, timeout=60, check=True,
            env={"PATH": "", "CLOUD_REGION": "eu-west-1"},
        )  # fmt: skip
        assert "region='eu-west-1'" in result.stdout
        assert "after attempt 1: Retry(delay=0.1)" in result.stdout
        assert "after attempt 4: DO_NOT_RETRY" in result.stdout
        assert "wJalrXUtnFEMI" not in result.stdout


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


class TestRuntimeExamples:
    def test_await_style(self) -> None:
        """examples/await_style.py retries a flaky service to success."""
        out = run_example("await_style.py")
        assert "200 GET /bucket/key after 3 attempts" in out
        assert "ConfigError" in out

    def test_channel_style(self) -> None:
        """examples/channel_style.py gets one reply per submission."""
        out = run_example("channel_style.py")
        assert "19 succeeded, 1 failed, 20 replies for 20 submissions" in out
        assert "submission 7: NotFound" in out

    def test_embedded(self) -> None:
        """examples/embedded.py runs a user worker in the runtime's supervision tree."""
        out = run_example("embedded.py")
        assert "workers: ['poller']" in out
        assert "'router', 'workers']" in out
        assert "[b'pong', b'pong', b'pong']" in out

    def test_shared_state(self) -> None:
        """examples/shared_state.py: three processes share breaker state through a real
        Redis on 127.0.0.1: the quiet ones open on the busy one's report, one probe
        closes all three, an override reaches all three, and together they keep to one
        rate limit."""
        out = run_example("shared_state.py")
        lines = out.splitlines()
        outage = [line for line in lines if ": outage" in line]
        assert len(outage) == 3 and all("breaker open" in line for line in outage)
        assert sum("opened by the others' report: 1" in line for line in outage) == 2
        recovery = [line for line in lines if ": recovery" in line]
        assert all("breaker closed" in line for line in recovery)
        assert sorted(line.rsplit(" ", 1)[1] for line in recovery) == ["0", "0", "1"]
        overrides = [line for line in lines if "override" in line]
        assert len(overrides) == 3
        assert all("forced open: True, lifted: closed" in line for line in overrides)
        shares = {line.split(":")[0]: line for line in lines if ": shared limit offered" in line}
        assert len(shares) == 3
        # The quiet worker gets all it asks for; the others share the rest.
        assert int(shares["worker-2"].split("sent")[1].split("/s")[0]) >= 17
        together = next(line for line in lines if line.startswith("together:"))
        assert 54 <= int(together.split("sent ")[1].split("/s")[0]) <= 66, together
