"""Message round trips through cloudkit_trio.actors against the two-task floor.

Run it with ``python benchmarks/actors.py`` (``--help`` for the knobs). Every case runs in
the same process and is interleaved within each repetition:

* ``floor``: a bare server task reading ``(msg, event, box)`` from an unbuffered memory
  channel and replying through a ``trio.Event``: the cheapest two-task request/reply;
* ``call``: ``await ActorRef.call(msg)`` with the default 5 s deadline;
* ``call, no deadline``: ``await ActorRef.call(msg, timeout=None)``;
* ``call, 16 callers``: 16 tasks calling concurrently (wall time per call);
* ``cast``: ``await ActorRef.cast(msg)`` to a 1024-slot mailbox (throughput: wall time
  per message until the actor has handled them all);
* ``cast_nowait``: ``ActorRef.cast_nowait(msg)``, falling back to ``await cast`` only when
  the mailbox is full (so the producer yields only then).

Each cell is the median over the repetitions of microseconds per message; the ratio column
is the median of the per-repetition ratios to ``floor``. Nothing is asserted: read the
figures off the table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from cloudkit_trio.actors import Actor, ActorRef, MailboxFull, Supervisor, actor_child
from cloudkit_trio.spi import NoopLogger


class Echo(Actor[int, int]):
    async def handle_call(self, msg: int) -> int:
        return msg

    async def handle_cast(self, msg: int) -> None:
        return None


async def floor(n: int) -> float:
    send, receive = trio.open_memory_channel[tuple[int, trio.Event, list[int]]](0)

    async def server() -> None:
        async for msg, event, box in receive:
            box.append(msg)
            event.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for i in range(n):
            event = trio.Event()
            box: list[int] = []
            await send.send((i, event, box))
            await event.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def call(ref: ActorRef[int, int], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await ref.call(i)
    return time.perf_counter() - start


async def call_no_deadline(ref: ActorRef[int, int], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await ref.call(i, timeout=None)
    return time.perf_counter() - start


async def call_concurrent(ref: ActorRef[int, int], n: int) -> float:
    callers = 16
    per_caller = n // callers

    async def caller() -> None:
        for i in range(per_caller):
            await ref.call(i)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return (time.perf_counter() - start) * n / (per_caller * callers)


async def cast(ref: ActorRef[int, int], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await ref.cast(i)
    await ref.call(0)  # returns once everything cast before it was handled
    return time.perf_counter() - start


async def cast_nowait(ref: ActorRef[int, int], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        try:
            ref.cast_nowait(i)
        except MailboxFull:
            await ref.cast(i)  # the producer's pattern: wait for room only when full
    await ref.call(0)
    return time.perf_counter() - start


ActorCase = Callable[[ActorRef[int, int], int], Awaitable[float]]
CASES: dict[str, ActorCase | None] = {
    "floor": None,
    "call": call,
    "call, no deadline": call_no_deadline,
    "call, 16 callers": call_concurrent,
    "cast": cast,
    "cast_nowait": cast_nowait,
}


async def measure(n: int, repetitions: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in CASES}
    echo = actor_child("echo", Echo, capacity=1024)
    async with Supervisor([echo.spec], logger=NoopLogger()):
        for _ in range(repetitions):
            for name, case in CASES.items():
                elapsed = await floor(n) if case is None else await case(echo.ref, n)
                results[name].append(elapsed / n * 1e6)
    return results


def report(results: dict[str, list[float]]) -> None:
    floors = results["floor"]
    print(f"{'case':<20} {'us/msg':>8} {'min-max':>15} {'x floor':>8} {'msgs/s':>10}")
    for name, values in results.items():
        median = statistics.median(values)
        ratio = statistics.median(v / f for v, f in zip(values, floors, strict=True))
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{name:<20} {median:8.2f} {spread:>15} {ratio:8.2f} {1e6 / median:10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per case")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args()
    results = trio.run(measure, args.messages, args.reps)
    print(f"{args.messages} messages per case, {args.reps} interleaved repetitions")
    report(results)


if __name__ == "__main__":
    main()
