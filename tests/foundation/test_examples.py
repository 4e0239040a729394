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
