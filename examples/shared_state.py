"""Three worker processes on one host sharing breaker state through Redis.

Run it with ``python examples/shared_state.py`` (a few seconds; it needs the ``test``
extra, for coredis and the redis-server binary it starts on 127.0.0.1; give
``--redis redis://host:port/0`` to use a Redis of your own). Nothing else leaves the
machine: each worker's endpoint is an in-memory transport that fails once the parent
says the endpoint is down.

What it shows, in order:

1. The endpoint goes down. The busiest worker's breaker opens on its own failures and
   reports it; with ``quorum=1`` the two quiet workers open on that report, after fewer
   failures of their own than their breakers need.
2. The endpoint comes back. After the break only one worker (one with traffic) takes the
   probe lease and probes; its success closes the other two without a probe of theirs.
3. ``force_everywhere(OPEN)`` from one worker is seen by all three; lifting it closes
   all three again.
4. A second endpoint has one rate limit for the three (``RateLimit(shared=True)``): each
   worker offers more than the limit, and together they send about the limit, however
   they split it (an attempt past its worker's share fails fast with ``Throttled``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Self

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.redis import RedisState
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.testing import LocalRedis
from cloudkit_trio.transport import NoAuthSigner

ENDPOINT = "https://storage.example.com"
QUEUE = "https://queue.example.com"
BREAK: float = 1.0
#: The queue endpoint's limit, for the three workers together, and what each offers.
SHARED_LIMIT: float = 60.0
OFFERED: dict[str, float] = {"worker-0": 80.0, "worker-1": 40.0, "worker-2": 20.0}
SHARED_SECONDS: float = 3.0


def say(line: str) -> None:
    """One write per line, so the three processes' lines never interleave."""
    os.write(1, (line + "\n").encode())


def worker(
    name: str, rate: float, redis: str, down: Event, step: Barrier, sent: Queue[int]
) -> None:
    """One process: calls the endpoint ``rate`` times a second; prints what it saw."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if down.is_set() else 200)

    async def main() -> None:
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=ENDPOINT))
            .transport(httpx.MockTransport(answer))
            .signer(NoAuthSigner())
            .logger(ck.NoopLogger())
            .retry_policy(
                ck.CircuitBreaker(
                    ck.NoRetry(),
                    minimum_throughput=10,
                    failure_ratio=0.5,
                    sampling_window=0.5,
                    break_duration=BREAK,
                )
            )
            .shared_state(RedisState(redis, namespace="example"), quorum=1, process=name)
            .rate_limit(ck.RateLimit(SHARED_LIMIT, wait=False, shared=True), endpoint=QUEUE)
            .build()
        )
        operation = ck.Operation(service="s3", name="head_bucket", method="HEAD", path="/")
        counts = {"ok": 0, "503": 0, "refused": 0}
        async with context as cloud:

            async def traffic(seconds: float) -> None:
                until = trio.current_time() + seconds
                while trio.current_time() < until:
                    try:
                        await cloud.execute(operation)
                        counts["ok"] += 1
                    except ck.ServiceUnavailable:
                        counts["503"] += 1
                    except ck.CircuitOpenError:
                        counts["refused"] += 1
                    await trio.sleep(1.0 / rate)

            def state() -> str:
                return str(cloud.breaker(ENDPOINT).state)

            await trio.to_thread.run_sync(step.wait)  # 1. the endpoint goes down
            await traffic(1.0)
            shared = cloud.snapshot().shared
            assert shared is not None
            say(
                f"{name}: outage   breaker {state():6}  own 503s {counts['503']:3}  refused "
                f"{counts['refused']:3}  opened by the others' report: {shared.opened_by_quorum}"
            )
            await trio.to_thread.run_sync(step.wait)  # 2. it comes back
            await traffic(BREAK + 1.0)
            shared = cloud.snapshot().shared
            assert shared is not None
            say(f"{name}: recovery breaker {state():6}  probes it sent: {shared.probes_led}")
            await trio.to_thread.run_sync(step.wait)  # 3. a cluster-wide override
            if name == "worker-0":
                await cloud.force_everywhere(ENDPOINT, ck.ForcedState.OPEN)
            await trio.sleep(0.5)
            forced = cloud.breaker(ENDPOINT).state is BreakerState.FORCED_OPEN
            await trio.to_thread.run_sync(step.wait)
            if name == "worker-1":
                await cloud.force_everywhere(ENDPOINT, None)
            await trio.sleep(0.5)
            say(f"{name}: override forced open: {forced}, lifted: {state()}")
            await trio.to_thread.run_sync(step.wait)  # 4. one rate limit for the three
            sent.put(await offer(cloud, OFFERED[name]))

    async def offer(cloud: ck.Cloud, per_second: float) -> int:
        """Sends to the rate-limited endpoint in an open loop; how many were sent."""
        send = ck.Operation(service="sqs", name="send_message", method="POST", url=QUEUE)
        admitted = throttled = 0

        async def one() -> None:
            nonlocal admitted, throttled
            try:
                await cloud.execute(send)
                admitted += 1
            except ck.Throttled:
                throttled += 1

        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            for index in range(round(per_second * SHARED_SECONDS)):
                await trio.sleep_until(start + index / per_second)
                nursery.start_soon(one)
        say(
            f"{name}: shared limit offered {per_second:3.0f}/s  sent "
            f"{admitted / SHARED_SECONDS:3.0f}/s  throttled {throttled:3}"
        )
        return admitted

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", help="redis://host:port/db (default: start one here)")
    args = parser.parse_args()
    with LocalRedis() if args.redis is None else _given(args.redis) as server:
        spawn = multiprocessing.get_context("spawn")
        down, step, sent = spawn.Event(), spawn.Barrier(4), spawn.Queue()
        rates = {"worker-0": 200.0, "worker-1": 20.0, "worker-2": 20.0}
        workers = [
            spawn.Process(target=worker, args=(name, rate, server.url, down, step, sent))
            for name, rate in rates.items()
        ]
        for process in workers:
            process.start()
        down.set()
        step.wait()  # 1
        time.sleep(1.2)
        down.clear()
        step.wait()  # 2
        step.wait()  # 3
        step.wait()
        step.wait()  # 4
        together = sum(sent.get(timeout=30) for _ in workers) / SHARED_SECONDS
        say(
            f"together: sent {together:.0f}/s of {sum(OFFERED.values()):.0f}/s offered, "
            f"against a shared limit of {SHARED_LIMIT:.0f}/s"
        )
        for process in workers:
            process.join(timeout=30)


class _given:
    """A Redis the user runs: nothing to start or stop."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
