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
is the median of the per-repetition ratios to ``floor``.

Then, with ``--children`` (default 1,000) children in one supervisor:

* **call and cast in a big tree**: ``call`` and ``cast`` to one actor among that many actor
  children, against the same actor alone under its supervisor (ratio: ``x alone``);
* **restart cost**: one child crashing and being started again, timed from the crash to
  its next ``started()``, alone under a supervisor and among that many idle siblings, in a
  ``Supervisor`` and in a ``DynamicSupervisor`` (ratio: ``x alone``);
* **memory per idle child** (``tracemalloc``, everything the child costs: its spec, task
  and bookkeeping), for a bare Trio task (the floor), a plain worker, a pool member and an
  actor (ratio: ``x task``).

Nothing is asserted: read the figures off the tables. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from cloudkit_trio.actors import (
    Actor,
    ActorRef,
    ChildSpec,
    DynamicSupervisor,
    MailboxFull,
    StopSignal,
    Supervisor,
    actor_child,
)
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


# -- a big tree ------------------------------------------------------------------------


async def idle_worker(
    *, task_status: trio.TaskStatus[StopSignal] = trio.TASK_STATUS_IGNORED
) -> None:
    stop = StopSignal()
    task_status.started(stop)
    await stop.wait()


async def in_a_big_tree(children: int, n: int, repetitions: int) -> dict[str, list[float]]:
    """call and cast to one actor, alone and among ``children`` actors (us per message)."""
    crowd_call, crowd_cast = f"call, 1 of {children:,}", f"cast, 1 of {children:,}"
    results: dict[str, list[float]] = {
        "call, alone": [],
        crowd_call: [],
        "cast, alone": [],
        crowd_cast: [],
    }
    alone = actor_child("echo", Echo, capacity=1024)
    crowd = [actor_child(f"echo-{i}", Echo, capacity=1024) for i in range(children)]
    target = crowd[children // 2].ref
    cases: list[tuple[str, ActorCase, ActorRef[int, int]]] = [
        ("call, alone", call, alone.ref),
        (crowd_call, call, target),
        ("cast, alone", cast, alone.ref),
        (crowd_cast, cast, target),
    ]
    async with (
        Supervisor([alone.spec], logger=NoopLogger()),
        Supervisor([a.spec for a in crowd], logger=NoopLogger()),
    ):
        for _ in range(repetitions):
            for name, case, ref in cases:
                results[name].append(await case(ref, n) / n * 1e6)
    return results


class Flapper:
    """The child that crashes on demand; each incarnation sets ``up`` once started."""

    def __init__(self) -> None:
        self.kick = trio.Event()
        self.up = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.up.set()
        await self.kick.wait()
        raise RuntimeError("benchmark crash")

    async def member(
        self, role: str, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """A pool template: the member started with "hot" flaps, the others idle."""
        if role == "hot":
            await self.run(task_status=task_status)
        else:
            await idle_worker(task_status=task_status)

    async def flap(self, restarts: int) -> float:
        """Seconds for ``restarts`` crash-and-restart rounds, one after the other."""
        start = time.perf_counter()
        for _ in range(restarts):
            kick, self.kick, self.up = self.kick, trio.Event(), trio.Event()
            kick.set()
            await self.up.wait()
        return time.perf_counter() - start


async def restart_cost(children: int, restarts: int, repetitions: int) -> dict[str, list[float]]:
    """Microseconds from a crash to the restarted child's started(), in four trees.

    The four trees run side by side and are measured in turn within each repetition.
    """
    budget = restarts * repetitions + 1  # never give up: every restart is in one window
    trees: list[tuple[str, Flapper, Supervisor]] = []
    for size in (1, children):
        flapper = Flapper()
        specs = [ChildSpec("hot", flapper.run)]
        specs += [ChildSpec(f"idle-{i}", idle_worker) for i in range(size - 1)]
        supervisor = Supervisor(specs, max_restarts=budget, within=1e9, logger=NoopLogger())
        trees.append((f"Supervisor, {size:,} children", flapper, supervisor))
    for size in (1, children):
        flapper = Flapper()
        pool = DynamicSupervisor(
            ChildSpec("member", flapper.member),
            initial=[("hot",)] + [("idle",)] * (size - 1),
            max_restarts=budget,
            within=1e9,
            logger=NoopLogger(),
        )
        trees.append((f"DynamicSupervisor, {size:,} members", flapper, pool))
    results: dict[str, list[float]] = {name: [] for name, _, _ in trees}
    async with trio.open_nursery() as nursery:
        handles = [await nursery.start(supervisor.run) for _, _, supervisor in trees]
        for _ in range(repetitions):
            for name, flapper, _ in trees:
                results[name].append(await flapper.flap(restarts) / restarts * 1e6)
        for handle in handles:
            await handle.stop()
    return results


async def bare_tasks(n: int) -> int:
    """Bytes for ``n`` bare Trio tasks parked in a nursery: the floor."""
    async with trio.open_nursery() as nursery:
        before = _traced()
        for _ in range(n):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        used = _traced() - before
        nursery.cancel_scope.cancel()
    return used


async def supervised(n: int, kind: str) -> int:
    """Bytes for ``n`` idle children of ``kind``, specs and supervisor bookkeeping included."""
    before = _traced()
    supervisor: Supervisor
    if kind == "worker":
        supervisor = Supervisor(
            [ChildSpec(f"w-{i}", idle_worker) for i in range(n)], logger=NoopLogger()
        )
    elif kind == "member":
        supervisor = DynamicSupervisor(
            ChildSpec("m", Flapper().member), initial=[("idle",)] * n, logger=NoopLogger()
        )
    else:
        supervisor = Supervisor(
            [actor_child(f"a-{i}", Echo, capacity=64).spec for i in range(n)], logger=NoopLogger()
        )
    async with supervisor:
        await trio.testing.wait_all_tasks_blocked()
        used = _traced() - before
    return used


def _traced() -> int:
    gc.collect()  # what is still referenced, not what the collector has yet to free
    return tracemalloc.get_traced_memory()[0]


def memory_per_child(n: int) -> dict[str, float]:
    """Bytes per idle child, by kind; each kind in a fresh trio.run, under tracemalloc."""
    tracemalloc.start()
    try:
        results = {"bare Trio task": trio.run(bare_tasks, n) / n}
        for label, kind in (
            ("worker (Supervisor)", "worker"),
            ("member (DynamicSupervisor)", "member"),
            ("actor (mailbox 64)", "actor"),
        ):
            results[label] = trio.run(supervised, n, kind) / n
    finally:
        tracemalloc.stop()
    return results


def report_relative(title: str, results: dict[str, list[float]], pairs: dict[str, str]) -> None:
    """Medians, with the ratio of each case to the one it is paired with."""
    print(title)
    print(f"{'case':<34} {'us':>9} {'min-max':>17} {'x alone':>8}")
    for name, values in results.items():
        median = statistics.median(values)
        base = pairs.get(name)
        if base is None:
            ratio = "1.00"
        else:
            ratios = [v / b for v, b in zip(values, results[base], strict=True)]
            ratio = f"{statistics.median(ratios):.2f}"
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{name:<34} {median:9.2f} {spread:>17} {ratio:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per case")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--children", type=int, default=1_000, help="children in the big tree")
    parser.add_argument("--restarts", type=int, default=500, help="restarts per repetition")
    args = parser.parse_args()
    children = max(2, args.children)
    results = trio.run(measure, args.messages, args.reps)
    print(f"{args.messages} messages per case, {args.reps} interleaved repetitions")
    report(results)

    print()
    big = trio.run(in_a_big_tree, children, args.messages, args.reps)
    report_relative(
        f"call and cast, us per message ({args.messages} messages, {args.reps} repetitions)",
        big,
        {f"call, 1 of {children:,}": "call, alone", f"cast, 1 of {children:,}": "cast, alone"},
    )

    print()
    restarts = trio.run(restart_cost, children, args.restarts, args.reps)
    report_relative(
        f"restart cost, us per crash-and-restart ({args.restarts} per repetition)",
        restarts,
        {
            f"Supervisor, {children:,} children": "Supervisor, 1 children",
            f"DynamicSupervisor, {children:,} members": "DynamicSupervisor, 1 members",
        },
    )

    print()
    memory = memory_per_child(children)
    floor_bytes = memory["bare Trio task"]
    print(f"memory per idle child, bytes (tracemalloc, {children:,} children)")
    print(f"{'kind':<34} {'bytes':>9} {'x task':>8}")
    for name, per_child in memory.items():
        print(f"{name:<34} {per_child:9,.0f} {per_child / floor_bytes:8.2f}")


if __name__ == "__main__":
    main()
