"""What the runtime costs per operation, side by side with a direct call and with peers.

Run: ``python benchmarks/runtime.py [--ops N] [--rounds R]`` (needs ``pip install -e '.[bench]'``).

All rows do the same no-op operation against an in-memory transport (``httpx.MockTransport``
answering 200), sequentially, in one process, interleaved round by round:

- direct:     build the httpx request and call the transport;
- stamina:    the same call wrapped in ``stamina.retry`` (a peer; success path, no retry);
- two-task:   a bare request/reply through two Trio tasks over a memory channel with a
              ``trio.Event`` reply (the floor of message passing), around the direct call;
- execute:    ``cloud.execute`` with the full pipeline (credentials, breaker, retry policy,
              admission with its default retry budget, metrics aggregator, logger), unsigned
              (``NoAuthSigner``) so that it compares with the peers, which sign nothing;
- no-admission: the same with ``.retry_budget(None).deadline_shedding(False)``: what the
              default admission decisions (the retry budget, deadline-aware shedding) cost;
- signed:     the same signed with SigV4, the AWS default: what signing costs;
- channel:    a ``Submission`` through ``cloud.submit_channel()`` and its ``Reply``.

Figures are microseconds per operation (median over rounds) and ratios computed per round.
Targets: execute / stamina <= 1.0; channel / two-task <= 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx
import stamina
import trio

import cloudkit_trio as ck
from cloudkit_trio.transport import NoAuthSigner

URL = "http://127.0.0.1:9000/bucket/key"


def _handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


TRANSPORT = httpx.MockTransport(_handler)


async def direct() -> None:
    request = httpx.Request("GET", URL)
    response = await TRANSPORT.handle_async_request(request)
    await response.aread()


@stamina.retry(on=httpx.HTTPError, attempts=3)
async def with_stamina() -> None:
    await direct()


async def timed(label: str, body: Callable[[], Awaitable[None]], ops: int) -> tuple[str, float]:
    start = time.perf_counter()
    for _ in range(ops):
        await body()
    return label, (time.perf_counter() - start) / ops * 1e6


def _builder() -> ck.CloudContextBuilder:
    return (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .transport(TRANSPORT)
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .metrics_collector(ck.NoopMetrics())
        .logger(ck.StdlibLogger())
    )


async def main(ops: int, rounds: int) -> None:
    context = _builder().signer(NoAuthSigner()).build()
    unadmitted = (
        _builder().signer(NoAuthSigner()).retry_budget(None).deadline_shedding(False).build()
    )
    signed_context = _builder().build()
    operation = ck.Operation(service="s3", name="get_object", url=URL)
    results: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {
        "execute/stamina": [],
        "channel/two-task": [],
        "execute/no-admission": [],
        "signed/execute": [],
    }
    async with (
        context as cloud,
        unadmitted as plain,
        signed_context as signed_cloud,
        trio.open_nursery() as nursery,
    ):
        # The floor: a server task answering requests from a memory channel.
        request_send, request_receive = trio.open_memory_channel[trio.Event](0)

        async def server() -> None:
            async for done in request_receive:
                await direct()
                done.set()

        nursery.start_soon(server)

        async def two_task() -> None:
            done = trio.Event()
            await request_send.send(done)
            await done.wait()

        async def execute() -> None:
            await cloud.execute(operation)

        async def no_admission() -> None:
            await plain.execute(operation)

        async def signed() -> None:
            await signed_cloud.execute(operation)

        reply_send, reply_receive = trio.open_memory_channel[ck.Reply](1)
        submit = cloud.submit_channel()

        async def channel() -> None:
            await submit.send(ck.Submission(operation, reply_send))
            (await reply_receive.receive()).result()

        cases = [
            ("direct", direct),
            ("stamina", with_stamina),
            ("two-task", two_task),
            ("execute", execute),
            ("no-admission", no_admission),
            ("signed", signed),
            ("channel", channel),
        ]
        for label, body in cases:  # warm up
            await timed(label, body, ops // 10)
        for _ in range(rounds):
            row = dict([await timed(label, body, ops) for label, body in cases])
            for label, value in row.items():
                results.setdefault(label, []).append(value)
            ratios["execute/stamina"].append(row["execute"] / row["stamina"])
            ratios["channel/two-task"].append(row["channel"] / row["two-task"])
            ratios["execute/no-admission"].append(row["execute"] / row["no-admission"])
            ratios["signed/execute"].append(row["signed"] / row["execute"])
        await submit.aclose()
        request_send.close()

    print(f"{'case':<12} {'us/op (median)':>15} {'x direct':>9}")
    base = statistics.median(results["direct"])
    for label, values in results.items():
        median = statistics.median(values)
        print(f"{label:<12} {median:>15.1f} {median / base:>9.2f}")
    print()
    for label, values in ratios.items():
        low, high = min(values), max(values)
        print(f"{label:<21} median {statistics.median(values):.2f}  [{low:.2f}-{high:.2f}]")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trio.run(main, args.ops, args.rounds)
