"""examples/s3_objects.py runs as documented against a moto server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._moto import MotoServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "s3_objects.py"


def run_example(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )
    return result.stdout


class TestS3Example:
    def test_uploads_lists_and_reads(self, moto_server: MotoServer) -> None:
        """The example uploads through the channel, lists, reads and streams, signed."""
        env = {
            "AWS_ACCESS_KEY_ID": moto_server.access_key,
            "AWS_SECRET_ACCESS_KEY": moto_server.secret_key,
            "AWS_ENDPOINT_URL": moto_server.url,
        }
        out = run_example(env=env)
        assert f"bucket cloudkit-example ready at {moto_server.url}" in out
        assert "uploaded 12 objects through the channel (0 failed)" in out
        assert "reports/: folders ['reports/2024/'], files ['reports/summary.txt']" in out
        assert "reports/2024/: 12 objects, " in out and "listed in 3 pages" in out
        assert "read reports/2024/03.csv (text/csv): 'month,total\\n2024-03,300\\n'" in out
        assert "streamed reports/2024/12.csv: 25 bytes of 25" in out
        assert "missing keys are NotFound: cloudkit-example/reports/2023/01.csv" in out
        assert moto_server.secret_key not in out

        # A second run finds the bucket there; the endpoint may also be an argument.
        again = run_example(moto_server.url, env={**env, "AWS_ENDPOINT_URL": "http://0.0.0.0:1"})
        assert "uploaded 12 objects through the channel (0 failed)" in again

    def test_says_when_nothing_answers(self, refused_url: str) -> None:
        """Without a server the example exits with a hint instead of a traceback."""
        result = subprocess.run(
            [sys.executable, str(EXAMPLE), refused_url],
            capture_output=True, text=True, timeout=60, check=False,
            env={"PATH": os.environ.get("PATH", ""), "AWS_MAX_ATTEMPTS": "1"},
        )  # fmt: skip
        assert result.returncode == 1
        assert f"no S3 server answers at {refused_url} (ConnectError)" in result.stderr
        assert "Traceback" not in result.stderr
