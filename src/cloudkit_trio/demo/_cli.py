"""The ``cloudkit-trio`` command line.

``demo`` is the only subcommand so far; each subcommand is a parser, a check of the flags
that belong together, and a handler, so more (a benchmark, say) slot in beside it. Exit
statuses: 0 done and every submission answered (and, with ``--s3`` against the embedded
endpoint, every successful put listed), 1 a check failed or the run could not start (a
missing extra, a busy port, an unusable bucket), 2 bad flags, 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final, NoReturn
from urllib.parse import urlsplit

from ._settings import (
    DEFAULT_BUCKET_PREFIX,
    DEFAULT_CONCURRENCY,
    DEFAULT_FAULT_RATE,
    DEFAULT_OPERATIONS,
    DEFAULT_RATE,
    DEFAULT_SEED,
    DemoSettings,
)

__all__ = ["main"]

PROG: Final = "cloudkit-trio"
INSTALL_HINT: Final = "pip install 'cloudkit-trio[demo]'"
#: Modules the demo needs beyond the runtime's own dependencies (the ``demo`` extra).
DEMO_MODULES: Final = ("hypercorn", "rich")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """Reports errors by raising, so that :func:`main` returns a status instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)


# -- flag values -------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a number of operations per second > 0, got {text!r}"
        )
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a TCP port from 0 to 65535 (0 picks a free one), got {text!r}"
        )
    return value


def _http_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"must be an absolute http:// or https:// URL, got {text!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise argparse.ArgumentTypeError(
            "must not carry a user name or password; set CLOUDKIT_DEMO_BEARER_TOKEN to "
            "send a bearer token"
        )
    if "{n}" in parts.netloc:
        raise argparse.ArgumentTypeError("may use {n} in its path or query, not in its host")
    return text


def _bucket(text: str) -> str:
    # The S3 client's own rules, checked where it checks them: building an operation.
    from ..aws import S3Operations

    try:
        S3Operations().head_bucket(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _check_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that are valid alone but not together."""
    if not args.s3:
        if args.bucket is not None:
            parser.error("--bucket applies only with --s3")
        return
    if args.endpoint is not None:
        from ..aws import S3Operations

        if "{n}" in args.endpoint:
            parser.error(
                "argument --endpoint: with --s3 it is the S3 service's base URL; {n} has no "
                "place in it"
            )
        try:
            S3Operations(endpoint=args.endpoint)
        except ValueError as error:
            parser.error(f"argument --endpoint: {error}")
    if args.bucket is None:
        try:
            _bucket(f"{DEFAULT_BUCKET_PREFIX}{args.seed}")
        except argparse.ArgumentTypeError:
            parser.error(f"--seed {args.seed} makes too long a bucket name; choose a --bucket")


# -- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="cloudkit-trio: a resilience runtime for Trio applications.",
    )
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="watch the runtime retry, break circuits and refresh credentials",
        description=(
            "Drive operations through the runtime against embedded endpoints that inject "
            "faults (500/503 bursts, 429 with Retry-After, connection resets, slow and "
            "stalled answers, one endpoint's outage, expiring credentials), half through "
            "cloud.execute and half through the channel API, and show what happens."
        ),
        epilog=(
            "Exit status: 0 when every submitted operation was answered (with --s3 and no "
            "--endpoint, also when every successful put was listed), 1 when not (or when "
            "the run cannot start), 2 for bad flags, 130 after Ctrl-C."
        ),
    )
    demo.add_argument(
        "--operations",
        type=_positive_int,
        default=DEFAULT_OPERATIONS,
        metavar="N",
        help=f"operations to run (default {DEFAULT_OPERATIONS}: about 20 s at the default rate)",
    )
    demo.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="PER_SECOND",
        help=f"operations released per second (default {DEFAULT_RATE:g}); faults scale with "
        "the run's length, operations / rate",
    )
    demo.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"operations in flight at most (default {DEFAULT_CONCURRENCY})",
    )
    demo.add_argument(
        "--fault-rate",
        type=_fraction,
        default=DEFAULT_FAULT_RATE,
        metavar="P",
        help=f"share of attempts that fail at random, 0 to 1 (default {DEFAULT_FAULT_RATE:g}); "
        "0 also turns the error bursts off, the outage and the credential expiry stay",
    )
    demo.add_argument(
        "--seed",
        type=_seed,
        default=DEFAULT_SEED,
        metavar="N",
        help=f"seed of the fault schedule and the backoff jitter (default {DEFAULT_SEED})",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics during the run",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="print only a JSON summary at the end",
    )
    demo.add_argument(
        "--endpoint",
        type=_http_url,
        default=None,
        metavar="URL",
        help="GET this URL instead of the embedded endpoints ({n} becomes the operation's "
        "number); no faults injected; a bearer token only if CLOUDKIT_DEMO_BEARER_TOKEN is set. "
        "With --s3: the S3-compatible service to use (AWS, MinIO, moto)",
    )
    demo.add_argument(
        "--s3",
        action="store_true",
        help="drive S3 calls: each operation puts an object, and the objects are listed "
        "after the run; against an embedded S3 endpoint with injected faults, or --endpoint "
        "with credentials from the default AWS chain and AWS_REGION",
    )
    demo.add_argument(
        "--bucket",
        type=_bucket,
        default=None,
        metavar="NAME",
        help=f"with --s3: the bucket to write to, created unless it exists (default "
        f"{DEFAULT_BUCKET_PREFIX}SEED)",
    )
    demo.set_defaults(handler=_demo, check=partial(_check_demo, demo))
    return parser


# -- running ------------------------------------------------------------------------------


def _missing_modules() -> list[str]:
    missing = []
    for name in DEMO_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _demo(args: argparse.Namespace) -> int:
    settings = DemoSettings(
        operations=args.operations,
        concurrency=args.concurrency,
        rate=args.rate,
        fault_rate=args.fault_rate,
        seed=args.seed,
        metrics_port=args.metrics_port,
        json=args.json,
        endpoint=args.endpoint,
        s3=args.s3,
        bucket=args.bucket,
    )
    missing = _missing_modules()
    if missing:
        print(
            f"{PROG} demo needs {' and '.join(missing)}, which the demo extra installs: "
            f"{INSTALL_HINT}",
            file=sys.stderr,
        )
        return EXIT_FAILED

    import trio

    from ._problems import DemoError, sole
    from ._run import run_demo
    from ._view import choose_view

    view = choose_view(sys.stdout, json_output=settings.json)
    try:
        summary = trio.run(run_demo, settings, view)
    except BaseException as error:
        if sole(error, KeyboardInterrupt) is not None:
            print(f"{PROG} demo: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        problem = sole(error, DemoError)
        if problem is None:
            raise
        print(f"{PROG} demo: {problem}", file=sys.stderr)
        return EXIT_FAILED
    view.finish(summary)
    return summary.exit_status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloudkit-trio`` command line with ``argv`` (``sys.argv[1:]`` by default)
    and return the exit status.

    .. versionadded:: 0.1.0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
        if check is not None:
            check(args)
    except _UsageError as error:
        error.parser.print_usage(sys.stderr)
        print(f"{error.parser.prog}: error: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    except _ParserExit as done:
        return done.status
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: choose a command, e.g. `{PROG} demo`", file=sys.stderr)
        return EXIT_USAGE
    return handler(args)
