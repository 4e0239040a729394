"""The command line: --version, flags checked before anything runs, errors exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cloudkit_trio as ck
from cloudkit_trio.demo import main


class TestVersion:
    def test_version_flag(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``--version`` prints the program and the package's version, and exits 0."""
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"cloudkit-trio {ck.__version__}\n"

    def test_python_dash_m(self) -> None:
        """``python -m cloudkit_trio --version`` is the same command."""
        done = subprocess.run(
            [sys.executable, "-m", "cloudkit_trio", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, f"cloudkit-trio {ck.__version__}\n")


class TestBadFlags:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (
                ["demo", "--operations", "0"],
                "argument --operations: must be a whole number >= 1, got '0'",
            ),
            (
                ["demo", "--rate", "0"],
                "argument --rate: must be a number of operations per second > 0",
            ),
            (
                ["demo", "--fault-rate", "1.5"],
                "argument --fault-rate: must be a number from 0 to 1, got '1.5'",
            ),
            (["demo", "--seed", "-1"], "argument --seed: must be a whole number >= 0, got '-1'"),
            (["demo", "--metrics-port", "70000"], "argument --metrics-port: must be a TCP port"),
            (
                ["demo", "--endpoint", "ftp://x"],
                "argument --endpoint: must be an absolute http:// or https:// URL",
            ),
            (["demo", "--bucket", "my-bucket"], "--bucket applies only with --s3"),
            (["demo", "--s3", "--bucket", "Not_A_Bucket"], "argument --bucket:"),
            (["demo", "--s3", "--endpoint", "http://127.0.0.1:9/{n}"], "{n} has no place in it"),
        ],
    )
    def test_exit_2_with_the_reason(
        self, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
    ) -> None:
        """A bad flag is reported on stderr with usage, and nothing runs."""
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: cloudkit-trio")
        assert message in err

    def test_no_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a command, the usage and a hint, exit 2."""
        assert main([]) == 2
        assert "choose a command, e.g. `cloudkit-trio demo`" in capsys.readouterr().err
