"""The command line: flags are checked before anything runs, errors exit 2 with a message."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cloudkit_trio.demo import main


class TestBadFlags:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["demo", "--operations", "0"], "argument --operations: must be a whole number >= 1, got '0'"),
            (["demo", "--operations", "many"], "argument --operations: must be a whole number >= 1, got 'many'"),
            (["demo", "--concurrency", "-3"], "argument --concurrency: must be a whole number >= 1, got '-3'"),
            (["demo", "--fault-rate", "1.5"], "argument --fault-rate: must be a number from 0 to 1, got '1.5'"),
            (["demo", "--fault-rate", "nan"], "argument --fault-rate: must be a number from 0 to 1, got 'nan'"),
            (["demo", "--rate", "0"], "argument --rate: must be a number of operations per second > 0"),
            (["demo", "--seed", "-1"], "argument --seed: must be a whole number >= 0, got '-1'"),
            (["demo", "--metrics-port", "70000"], "argument --metrics-port: must be a TCP port from 0 to 65535"),
            (["demo", "--endpoint", "ftp://example.com/x"], "argument --endpoint: must be an absolute http:// or https:// URL"),
            (["demo", "--endpoint", "example.com"], "argument --endpoint: must be an absolute http:// or https:// URL"),
            (["demo", "--endpoint", "http://example.com:99999/"], "argument --endpoint: must be an absolute http:// or https:// URL"),
            (["demo", "--endpoint", "http://me:pw@example.com/"], "must not carry a user name or password"),
            (["demo", "--endpoint", "http://{n}.example.com/"], "may use {n} in its path or query, not in its host"),
            (["demo", "--operations"], "argument --operations: expected one argument"),
            (["demo", "--bogus"], "unrecognized arguments: --bogus"),
            (["launch"], "argument COMMAND: invalid choice"),
            ([], "choose a command, e.g. `cloudkit-trio demo`"),
        ],
    )  # fmt: skip
    def test_exit_2_with_a_clear_message(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad flag stops the command with exit status 2, usage and the reason on stderr."""
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "usage: cloudkit-trio" in captured.err
        assert "error: " in captured.err
        assert message in captured.err

    def test_help_exits_0(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help describes the flags and exits 0."""
        assert main(["demo", "--help"]) == 0
        out = capsys.readouterr().out
        for flag in ("--operations", "--concurrency", "--fault-rate", "--seed", "--metrics-port",
                     "--json", "--endpoint", "--rate"):  # fmt: skip
            assert flag in out


class TestWithoutTheDemoExtra:
    def test_imports_need_neither_and_the_command_says_what_to_install(self) -> None:
        """With hypercorn and rich missing, the package and the CLI still import, and
        `cloudkit-trio demo` says how to install them and exits 1."""
        script = textwrap.dedent(
            """
            import sys
            sys.modules["hypercorn"] = None  # make both imports fail
            sys.modules["rich"] = None
            import cloudkit_trio, cloudkit_trio.demo
            from cloudkit_trio.demo import main
            sys.exit(main(["demo", "--operations", "10"]))
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 1
        assert "needs hypercorn and rich" in result.stderr
        assert "pip install 'cloudkit-trio[demo]'" in result.stderr
        assert result.stdout == ""
