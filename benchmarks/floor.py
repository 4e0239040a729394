"""The hot path at the floor: ``cloud.execute`` next to a bare h11 loop, S3 PutObject next to peers.

Run it with ``python benchmarks/floor.py`` (``--quick`` for a short run, well under a minute
once the peers' environment exists; ``--help`` for the knobs). It reuses the other
benchmarks' parts rather than copying them: ``http_transport.py``'s loopback server, bare h11
loop, httpx case and ``measure`` helper, and ``signing.py``'s PutObject server, signed
cloudkit_trio case, and aiobotocore and boto3 workers with their virtual environment
(created on first use at ``benchmarks/.venvs/aiobotocore`` with ``pip install aiobotocore
boto3``, reused afterwards). Both servers listen on 127.0.0.1 only: nginx with one worker when
installed (``apt-get install nginx-light``), otherwise a small Trio server in a subprocess,
which is then likely the bottleneck (the first lines say which). It prints two tables of
figures, both measured in the same run:

1. **cloud.execute vs the bare h11 loop**, a GET of a 3-byte body, at every ``--concurrency``
   (N Trio tasks, each sending its share of ``--requests``):

   * ``h11 loop``: one bare h11 connection per task on a Trio socket, no pool, no httpx: the
     floor (``http_transport.h11_figures``);
   * ``cloud.execute``: ``await cloud.execute(op)`` through the whole runtime (credentials,
     the endpoint's breaker and admission, the retry policy, metrics, the logger) on its
     default transport, with signing off: ``.signer(NoAuthSigner())``, the concurrency
     caps raised so they never bind (``http_transport.cloud_execute_figures``);
   * ``httpx``: one shared ``httpx.AsyncClient``, httpx's default transport (64
     connections), for reference only: it sends a quarter of ``--requests``
     (``--httpx-requests``), being slow at high concurrency, and ``--no-httpx`` skips it.

2. **S3 PutObject, 1 KiB body, signed, c=64**:

   * ``cloudkit_trio``: ``cloud.execute`` of ``PUT /bucket/key`` signed with SigV4 for
     ``s3`` in us-east-1, the signer an AWS context's default ``AwsSigner`` picks for it
     (``signing._measure_cloudkit``);
   * ``aiobotocore``: 64 asyncio tasks, one client, 64 pooled connections;
   * ``boto3``: 16 threads, one client, 16 pooled connections.

   The peers run in their own environment, one subprocess per measurement, as
   ``benchmarks/signing.py`` describes: path-style addressing, fake static credentials, no
   retries, botocore's CRC32 request checksum off unless ``--botocore-checksums``.
   ``--no-peers`` skips them (and so the second goal).

The figures of each row are medians over ``--reps`` repetitions of:

* ``req/s``: requests completed per second of wall clock in the measured phase;
* ``p50``/``p99``: latency of one request as its caller sees it, in microseconds;
* ``CPU µs/req``: CPU time of the client process (``time.process_time()``: all its threads,
  user and system) over the measured phase, divided by the requests. The servers run in
  their own processes and are not counted; a peer's subprocess measures its own.

Within each repetition every case runs once, after its own warm-up, in alternating order
(forward, then backward), and each ratio is computed per repetition before its median is
taken, so ratios compare cases measured side by side. The goals, read off the ratios:

* ``cloud.execute`` reaches at least **0.85** of the h11 loop's req/s at every concurrency;
* signed S3 PutObject reaches at least **5x** aiobotocore's req/s, at no more than **0.2x**
  its client CPU per request.

Nothing is asserted: a goals table says ``met`` or ``missed``, and the last lines repeat it
for machines, one per line::

    floor c=64 execute/h11=0.63 goal=missed
    floor signed_s3 req_s_vs_aiobotocore=3.90 cpu_vs_aiobotocore=0.25 goal=missed

The machine is likely shared: absolute figures move by tens of percent between runs, the
ratios within a run less. Servers and subprocesses are stopped on exit, on errors and on
Ctrl-C. Only 127.0.0.1 is contacted (and PyPI, by pip, to create the peers' environment).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import trio

# The other benchmarks are plain scripts beside this one, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_transport
import signing

#: The goals: execute/h11 req/s at least this, at every concurrency.
EXECUTE_VS_H11 = 0.85
#: Signed S3 PutObject vs aiobotocore: req/s at least this many times, CPU/req at most.
S3_RATE_VS_AIOBOTOCORE = 5.0
S3_CPU_VS_AIOBOTOCORE = 0.2

CONCURRENCIES = (1, 16, 64, 256)
S3_CONCURRENCY = signing.PEER_CONCURRENCY

#: (name, concurrency) of a load case; every one yields a list of figures, one per repetition.
Case = tuple[str, int]
Results = dict[Case, list[signing.Figures]]

#: The transport benchmark's case signature: (concurrency, url, requests, warmup).
LoopbackCase = Callable[[int, str, int, int], Awaitable[http_transport.Figures | None]]


# -- the one case neither benchmark has ------------------------------------------------------


LOOPBACK_CASES: dict[str, LoopbackCase] = {
    "h11 loop": http_transport.h11_figures,
    "cloud.execute": http_transport.cloud_execute_figures,
    "httpx": http_transport.httpx_figures,
}


# -- running the cases, interleaved ----------------------------------------------------------


def _as_figures(found: http_transport.Figures | None, name: str) -> signing.Figures:
    """One Figures type for both halves (the two benchmarks each define an identical one)."""
    if found is None:
        raise RuntimeError(f"the {name!r} case returned no figures")
    return signing.Figures(**dataclasses.asdict(found))


def _cases(args: argparse.Namespace, peers: bool) -> list[Case]:
    cases: list[Case] = []
    for concurrency in args.concurrency:
        cases += [("h11 loop", concurrency), ("cloud.execute", concurrency)]
        if not args.no_httpx:
            cases.append(("httpx", concurrency))
    cases.append(("cloudkit_trio", S3_CONCURRENCY))
    if peers:
        cases += [("aiobotocore", S3_CONCURRENCY), ("boto3", signing.BOTO3_THREADS)]
    return cases


def run_cases(
    args: argparse.Namespace, get_url: str, put_url: str, python: Path | None
) -> tuple[Results, dict[str, str]]:
    """Every case once per repetition, forward then backward; the peers' versions."""
    cases = _cases(args, python is not None)
    # What signing.py's cloudkit and peer runners read from their arguments.
    s3_args = argparse.Namespace(
        requests=args.s3_requests,
        warmup=args.s3_warmup,
        botocore_checksums=args.botocore_checksums,
    )
    results: Results = {case: [] for case in cases}
    versions: dict[str, str] = {}
    for repetition in range(args.reps):
        order = cases if repetition % 2 == 0 else cases[::-1]
        for name, concurrency in order:
            if name in LOOPBACK_CASES:
                requests = args.httpx_requests if name == "httpx" else args.requests
                found = trio.run(LOOPBACK_CASES[name], concurrency, get_url, requests, args.warmup)
                figures = _as_figures(found, name)
            elif name == "cloudkit_trio":
                figures = signing._cloudkit_figures(put_url, True, concurrency, s3_args)
            else:
                assert python is not None
                figures, versions = signing._peer_figures(python, name, put_url, s3_args)
            results[name, concurrency].append(figures)
        print(f"  repetition {repetition + 1}/{args.reps} done", file=sys.stderr)
    return results, versions


# -- the report ------------------------------------------------------------------------------


def _spread(results: Results, top: Case, bottom: Case) -> str:
    """The lowest and highest per-repetition req/s ratio, to show how much a median moves."""
    pairs = list(zip(results.get(top, []), results.get(bottom, []), strict=False))
    ratios = [a.requests_per_second / b.requests_per_second for a, b in pairs]
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "n/a"


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def report(results: Results, args: argparse.Namespace, peers: bool) -> None:
    concurrencies: list[int] = args.concurrency
    print()
    print("## 1. GET, 3-byte body: cloud.execute (NoAuthSigner) vs the bare h11 loop")
    rows = [
        (name, (name, c)) for c in concurrencies for name in ("h11 loop", "cloud.execute", "httpx")
    ]
    signing._print_case_table(results, rows)
    print()
    execute = {
        c: signing._ratios(results, ("cloud.execute", c), ("h11 loop", c)) for c in concurrencies
    }
    ratio_rows = [(f"execute/h11 c={c}", execute[c]) for c in concurrencies]
    if not args.no_httpx:
        ratio_rows += [
            (f"httpx/h11 c={c}", signing._ratios(results, ("httpx", c), ("h11 loop", c)))
            for c in concurrencies
        ]
    signing._print_ratio_table(ratio_rows)

    s3 = ("cloudkit_trio", S3_CONCURRENCY)
    aio_case = ("aiobotocore", S3_CONCURRENCY)
    aio = signing._ratios(results, s3, aio_case)
    print()
    print(
        f"## 2. S3 PutObject, 1 KiB, signed (SigV4), c={S3_CONCURRENCY} "
        f"(boto3: {signing.BOTO3_THREADS} threads)"
    )
    signing._print_case_table(
        results,
        [
            ("cloudkit_trio (trio)", s3),
            ("aiobotocore (asyncio)", aio_case),
            ("boto3 (threads)", ("boto3", signing.BOTO3_THREADS)),
        ],
    )
    if peers:
        print()
        boto = signing._ratios(results, s3, ("boto3", signing.BOTO3_THREADS))
        signing._print_ratio_table([("cloudkit/aiobotocore", aio), ("cloudkit/boto3", boto)])
    else:
        print("(aiobotocore and boto3 skipped: --no-peers)")

    print()
    print("## Goals (medians of per-repetition ratios; min-max over the repetitions)")
    print("| goal | target | measured | spread | status |")
    print("|---|---|---|---|---|")
    for c in concurrencies:
        rate = execute[c][0]
        spread = _spread(results, ("cloud.execute", c), ("h11 loop", c))
        print(
            f"| execute/h11 req/s, c={c} | >= {EXECUTE_VS_H11:.2f} | {rate:.2f} | {spread} "
            f"| {_verdict(rate >= EXECUTE_VS_H11)} |"
        )
    if peers:
        rate, cpu, _ = aio
        print(
            f"| signed S3 req/s vs aiobotocore | >= {S3_RATE_VS_AIOBOTOCORE:g} | {rate:.2f} "
            f"| {_spread(results, s3, aio_case)} | {_verdict(rate >= S3_RATE_VS_AIOBOTOCORE)} |"
        )
        print(
            f"| signed S3 CPU/req vs aiobotocore | <= {S3_CPU_VS_AIOBOTOCORE:g} | {cpu:.2f} "
            f"| | {_verdict(cpu <= S3_CPU_VS_AIOBOTOCORE)} |"
        )
    else:
        print("| signed S3 vs aiobotocore | | | | skipped (--no-peers) |")

    print()
    for c in concurrencies:
        rate = execute[c][0]
        print(f"floor c={c} execute/h11={rate:.2f} goal={_verdict(rate >= EXECUTE_VS_H11)}")
    if peers:
        rate, cpu, _ = aio
        met = rate >= S3_RATE_VS_AIOBOTOCORE and cpu <= S3_CPU_VS_AIOBOTOCORE
        print(
            f"floor signed_s3 req_s_vs_aiobotocore={rate:.2f} "
            f"cpu_vs_aiobotocore={cpu:.2f} goal={_verdict(met)}"
        )
    else:
        print("floor signed_s3 req_s_vs_aiobotocore=n/a cpu_vs_aiobotocore=n/a goal=skipped")


# -- the command line ------------------------------------------------------------------------


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, noisier figures")
    parser.add_argument("--reps", type=int, help="repetitions (default 5, quick 2)")
    parser.add_argument(
        "--requests", type=int, help="requests per GET case (default 3000, quick 800)"
    )
    parser.add_argument(
        "--warmup", type=int, help="unmeasured GET requests first (default 300, quick 100)"
    )
    parser.add_argument(
        "--s3-requests", type=int, help="requests per PutObject case (default 3000, quick 600)"
    )
    parser.add_argument(
        "--s3-warmup", type=int, help="unmeasured PutObject requests first (default 300, quick 100)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(CONCURRENCIES),
        help="tasks per GET case (default: %(default)s)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip aiobotocore and boto3")
    parser.add_argument(
        "--httpx-requests", type=int, help="requests per httpx case (default: --requests / 4)"
    )
    parser.add_argument("--no-httpx", action="store_true", help="skip the httpx reference row")
    parser.add_argument(
        "--botocore-checksums",
        action="store_true",
        help="keep botocore's default CRC32 request checksum (off: SHA-256 only, like ours)",
    )
    parser.add_argument(
        "--server",
        choices=["auto", "nginx", "trio"],
        default="auto",
        help="which loopback servers to start (auto: nginx when installed, else trio)",
    )
    args = parser.parse_args()
    for name, normal, short in (
        ("reps", 5, 2),
        ("requests", 3000, 800),
        ("warmup", 300, 100),
        ("s3_requests", 3000, 600),
        ("s3_warmup", 300, 100),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if args.quick else normal)
    if args.httpx_requests is None:
        args.httpx_requests = max(1, args.requests // 4)
    args.concurrency = list(dict.fromkeys(args.concurrency))
    if args.reps < 1 or min(args.concurrency) < 1:
        parser.error("--reps and every --concurrency must be at least 1")
    return args


def main() -> None:
    args = _parse()
    python = None if args.no_peers else signing._peer_python()
    kind = "fallback" if args.server == "trio" else args.server
    with ExitStack() as stack:
        get_url, get_server = stack.enter_context(http_transport.loopback_server(kind))
        put_url, put_server, put_log = stack.enter_context(signing._put_server(kind))
        print(
            f"servers: GET {get_server}; PUT {put_server}. {args.requests} GET requests "
            f"per case ({args.httpx_requests} for httpx), {args.s3_requests} PutObject; "
            f"{args.reps} repetitions; "
            f"Python {sys.version.split()[0]}, trio {trio.__version__}, httpx "
            f"{httpx.__version__}, h11 {importlib.metadata.version('h11')}, cloudkit_trio "
            f"{importlib.metadata.version('cloudkit-trio')}; {os.cpu_count()} CPUs"
        )
        try:
            results, versions = run_cases(args, get_url, put_url, python)
        except RuntimeError:
            if put_log.exists():
                print(f"the PUT server's log:\n{put_log.read_text()[-3000:]}", file=sys.stderr)
            raise
    if versions:
        print("peers: " + ", ".join(f"{name} {v}" for name, v in sorted(versions.items())))
        if not args.botocore_checksums:
            print("peers: botocore request checksums off (when_required), as for cloudkit")
    report(results, args, python is not None)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The servers and workers have been stopped on the way out.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
