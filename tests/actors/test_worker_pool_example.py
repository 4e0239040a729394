"""examples/worker_pool.py runs as documented (as tests/foundation/test_examples.py does)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class TestWorkerPoolExample:
    def test_runs_by_itself_and_shows_restart_finish_and_drain(self) -> None:
        """The pool restarts the crashed worker, ends with its channel, drains on stop."""
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "worker_pool.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        elapsed = time.monotonic() - start
        out = result.stdout
        assert "pool members: ['worker-1', 'worker-2', 'worker-3']" in out
        assert "handled 19 of 20 items; item 13 was lost" in out
        assert "sum of squares: 2701" in out  # 1² + ... + 20², less 13²
        assert "restarts by path: {'squares/worker': 1}" in out
        assert "the pool finished by itself: stopped" in out
        assert "stopped while busy: 3 items in hand finished, 5 still queued" in out
        assert result.stderr == ""
        assert elapsed < 30  # it takes well under a second; this only catches a hang
