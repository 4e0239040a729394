"""The ``cloudkit-trio`` command line: ``--version``, and ``demo``.

Exit statuses: 0 the run's verdict passed, 1 it failed or the run could not start (a
missing extra, a busy port, an unusable bucket), 2 bad flags, 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import cloudkit_trio as ck
from cloudkit_trio.aws import S3Operations

from ._scenario import (
    DEFAULT_BUCKET_PREFIX,
    DEFAULT_CONCURRENCY,
    DEFAULT_FAULT_RATE,
    DEFAULT_OPERATIONS,
    DEFAULT_RATE,
    DEFAULT_SEED,
    TOKEN_VARIABLE,
    DemoError,
    Settings,
    sole,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

    from ._run import View

__all__ = ["main"]

PROG: Final = "cloudkit-trio"
INSTALL_HINT: Final = "pip install 'cloudkit-trio[demo]'"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


# -- flag values -------------------------------------------------------------------------


def _number(
    kind: type[int | float], ok: Callable[[float], bool], what: str
) -> Callable[[str], Any]:
    """A flag type: ``kind(text)`` when ``ok`` says so, else argparse's error saying ``what``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
_seed = _number(int, lambda v: v >= 0, "a whole number >= 0")
_rate = _number(float, lambda v: v > 0, "a number of operations per second > 0")
_fraction = _number(float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
_port = _number(int, lambda v: 0 <= v <= 65535, "a TCP port from 0 to 65535 (0 picks a free one)")


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
        if "{n}" in args.endpoint:
            parser.error(
                "argument --endpoint: with --s3 it is the S3 service's base URL; "
                "{n} has no place in it"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="cloudkit-trio: a resilience runtime for Trio applications."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {ck.__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="watch the runtime retry, break circuits and refresh credentials",
        description=(
            "Drive operations through the runtime against fake endpoints on 127.0.0.1 that "
            "fail on a seeded plan (500/503 bursts, 429 with Retry-After, connection resets, "
            "slow answers, one endpoint's outage, expiring credentials), half through "
            "cloud.execute and half through the channel API; show what happens, and judge it."
        ),
        epilog=(
            "Exit status: 0 when the verdict passes (every operation answered exactly once, "
            "something succeeded, breakers recovered, retries within the budget, ...), 1 when "
            "it fails or the run cannot start, 2 for bad flags, 130 after Ctrl-C."
        ),
    )
    flags: list[tuple[str, dict[str, Any]]] = [
        ("--operations", {"type": _positive_int, "default": DEFAULT_OPERATIONS, "metavar": "N",
            "help": f"operations to run (default {DEFAULT_OPERATIONS}: about 20 s at the "
            "default rate)"}),
        ("--rate", {"type": _rate, "default": DEFAULT_RATE, "metavar": "PER_SECOND",
            "help": f"operations released per second (default {DEFAULT_RATE:g}); the fault plan "
            "scales with the run's length, operations / rate"}),
        ("--concurrency", {"type": _positive_int, "default": DEFAULT_CONCURRENCY, "metavar": "N",
            "help": f"operations in flight at most (default {DEFAULT_CONCURRENCY})"}),
        ("--fault-rate", {"type": _fraction, "default": DEFAULT_FAULT_RATE, "metavar": "P",
            "help": "share of attempts that fail at random, 0 to 1 "
            f"(default {DEFAULT_FAULT_RATE:g}); 0 also turns the error bursts off, the outage "
            "and the credential expiry stay"}),
        ("--seed", {"type": _seed, "default": DEFAULT_SEED, "metavar": "N",
            "help": f"seed of the fault plan and the backoff jitter (default {DEFAULT_SEED})"}),
        ("--metrics-port", {"type": _port, "default": None, "metavar": "PORT",
            "help": "serve Prometheus metrics at http://127.0.0.1:PORT/metrics during the run"}),
        ("--json", {"action": "store_true",
            "help": "print only a JSON summary, with the verdict, at the end"}),
        ("--endpoint", {"type": _http_url, "default": None, "metavar": "URL",
            "help": "GET this URL instead of the fake endpoints ({n} becomes the operation's "
            f"number); no faults injected; a bearer token only if {TOKEN_VARIABLE} is set. "
            "With --s3: the S3-compatible service to use (AWS, MinIO, moto)"}),
        ("--s3", {"action": "store_true",
            "help": "drive S3 calls: each operation puts an object, and the objects are listed "
            "after the run; against a fake S3 with injected faults, or --endpoint with "
            "credentials from the default AWS chain and AWS_REGION"}),
        ("--bucket", {"type": _bucket, "default": None, "metavar": "NAME",
            "help": "with --s3: the bucket, created unless it exists "
            f"(default {DEFAULT_BUCKET_PREFIX}SEED)"}),
    ]  # fmt: skip
    for flag, options in flags:
        demo.add_argument(flag, **options)
    demo.set_defaults(handler=_demo, check=partial(_check_demo, demo))
    return parser


def choose_view(stream: TextIO, *, json_output: bool) -> View:
    """JSON when asked; the live view on a terminal; plain lines otherwise."""
    from ._views import JsonView, PlainView

    if json_output:
        return JsonView(stream)
    if stream.isatty():
        from ._live import LiveView

        return LiveView(stream)
    return PlainView(stream)


def _demo(args: argparse.Namespace) -> int:
    settings = Settings(
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
    needed = [
        (module, why)
        for module, why, wanted in [
            ("rich", "its live view", not settings.json and sys.stdout.isatty()),
            ("hypercorn", "--metrics-port", settings.metrics_port is not None),
        ]
        if wanted and importlib.util.find_spec(module) is None
    ]
    for module, why in needed:
        print(f"{PROG} demo needs {module} for {why}: {INSTALL_HINT}", file=sys.stderr)
    if needed:
        return EXIT_FAILED

    import trio

    from ._run import run_demo

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
    if not summary.verdict.passed and not summary.interrupted and settings.json:
        print(f"{PROG} demo: {summary.verdict.words}", file=sys.stderr)
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
    except SystemExit as done:
        # argparse has printed the usage and the reason (or --help, or --version).
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: choose a command, e.g. `{PROG} demo`", file=sys.stderr)
        return EXIT_USAGE
    return handler(args)
