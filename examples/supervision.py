"""Supervise a small tree: an actor, a flaky worker, a nested supervisor, a dynamic child.

Run it with ``python examples/supervision.py``; it needs no network and takes a fraction of
a second. It shows restarts with backoff, an actor whose reference survives a crash, a
dynamic child, the tree snapshot, an event hook counting restarts, and the ordered shutdown.
"""

from __future__ import annotations

import collections

import attrs
import trio

from cloudkit_trio.actors import (
    Actor,
    ActorContext,
    ChildSpec,
    EventKind,
    RestartBackoff,
    StopSignal,
    Strategy,
    Supervisor,
    SupervisorEvent,
    actor_child,
)
from cloudkit_trio.spi import NoopLogger


@attrs.frozen
class Put:
    key: str
    value: str


@attrs.frozen
class Get:
    key: str


class Store(Actor[Put | Get, str | None]):
    """A key-value store: casts write, calls read. Each incarnation starts empty."""

    async def on_start(self, ctx: ActorContext[Put | Get, str | None]) -> None:
        self.data: dict[str, str] = {}

    async def handle_call(self, msg: Put | Get) -> str | None:
        if isinstance(msg, Get):
            if msg.key == "":
                raise KeyError("empty key")  # crashes the actor; the caller sees it too
            return self.data.get(msg.key)
        self.data[msg.key] = msg.value
        return msg.value

    async def handle_cast(self, msg: Put | Get) -> None:
        if isinstance(msg, Put):
            self.data[msg.key] = msg.value


stop_order: list[str] = []


def worker(name: str, *, failures: int = 0) -> ChildSpec:
    """A worker that fails ``failures`` times at first, then waits to be stopped."""
    remaining = [failures]

    async def run(*, task_status: trio.TaskStatus[StopSignal]) -> None:
        stop = StopSignal()
        task_status.started(stop)  # the supervisor calls stop.request_stop() to stop us
        if remaining[0] > 0:
            remaining[0] -= 1
            await trio.sleep(0.001)
            raise ConnectionError(f"{name}: upstream refused")
        await stop.wait()
        stop_order.append(name)

    return ChildSpec(name, run)


async def main() -> None:
    restarts: collections.Counter[str] = collections.Counter()

    def count_restarts(event: SupervisorEvent) -> None:
        # What a metrics layer would do: count restarts per child.
        if event.kind is EventKind.CHILD_RESTARTING and event.child_id is not None:
            restarts[event.child_id] += 1

    store = actor_child("store", Store, capacity=16)
    jobs = Supervisor([worker("job-1")], strategy=Strategy.ONE_FOR_ALL, name="jobs")
    root = Supervisor(
        [store.spec, worker("flaky", failures=2), jobs.child_spec(), worker("last")],
        backoff=RestartBackoff(initial=0.01, max_delay=0.05, jitter=0.0),
        name="root",
        logger=NoopLogger(),  # keep the output readable; the default logs via `logging`
        on_event=count_restarts,
    )

    async with root as sup:
        await store.ref.cast(Put("colour", "blue"))
        print(f"store says: {await store.ref.call(Get('colour'))}")

        await trio.sleep(0.1)  # the flaky worker fails twice, restarted after 10 and 20 ms
        print(f"flaky worker restarted {restarts['flaky']} times")

        try:
            await store.ref.call(Get(""))
        except KeyError as exc:
            print(f"the caller sees the crash: {exc!r}")
        print(f"same ref, new incarnation: {await store.ref.call(Get('colour'))}")

        job_ref = jobs.handle
        await job_ref.start_child(worker("job-2"))
        print(f"jobs now: {[c.id for c in job_ref.which_children()]}")

        print("tree:")
        for path, child in sup.snapshot().walk():
            line = f"  {'/'.join(path):<12} {child.state.value:<8} restarts={child.restarts}"
            if child.last_failure is not None:
                line += f"  last failure: {child.last_failure}"
            if child.mailbox is not None:
                line += f"  handled={child.mailbox.handled} dead={child.mailbox.dead_letters}"
            print(line)

    print(f"stopped in reverse start order: {', '.join(stop_order)}")


if __name__ == "__main__":
    trio.run(main)
