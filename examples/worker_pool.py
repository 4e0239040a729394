"""Run your own workers: a supervised pool consuming a Trio channel.

Run it with ``python examples/worker_pool.py``; it needs no network and takes well under a
second. It shows:

1. a pool of three workers under your own supervisor, one item that crashes its worker
   (the worker is restarted, that item is lost), the pool finishing by itself once the
   channel is closed and drained, and a metrics-style hook counting restarts by path;
2. a pool being stopped while it works: each worker finishes the item in its hands, and
   what is still queued stays in the channel.
"""

from __future__ import annotations

import collections

import trio

from cloudkit_trio.actors import (
    EventKind,
    Restart,
    Supervisor,
    SupervisorEvent,
    worker_pool,
)
from cloudkit_trio.spi import NoopLogger


async def finishing_by_itself() -> None:
    restarts: collections.Counter[str] = collections.Counter()
    pool_ended = trio.Event()

    def on_event(event: SupervisorEvent) -> None:
        # Events of the whole tree reach the root's hook. What a metrics layer does: one
        # counter per bounded path ("squares/worker"), whatever the members' ids.
        if event.kind is EventKind.CHILD_RESTARTING:
            restarts["/".join(event.child_path)] += 1
        elif event.kind is EventKind.CHILD_EXITED and event.child_path == ("squares",):
            pool_ended.set()  # the pool returned on its own

    squares: list[int] = []

    async def square(n: int) -> None:
        if n == 13:
            raise ValueError("13 is unlucky")  # crashes this worker; the pool restarts it
        await trio.sleep(0.001)
        squares.append(n * n)

    send, receive = trio.open_memory_channel[int](4)
    pool = worker_pool(receive, square, size=3, name="squares", logger=NoopLogger())
    app = Supervisor(
        # TRANSIENT: once its channel is done the pool returns, and stays stopped.
        [pool.child_spec("squares", restart=Restart.TRANSIENT)],
        name="app",
        logger=NoopLogger(),  # keep the output readable; the default logs via `logging`
        on_event=on_event,
    )
    async with app as handle:
        print(f"pool members: {[c.id for c in pool.handle.which_children()]}")
        async with send:  # closing the send side ends the channel once it is drained
            for n in range(1, 21):
                await send.send(n)
        with trio.fail_after(2):
            await pool_ended.wait()
        state = handle.which_children().by_id("squares").state.value
        print(f"handled {len(squares)} of 20 items; item 13 was lost with its worker's crash")
        print(f"sum of squares: {sum(squares)}")
        print(f"restarts by path: {dict(restarts)}")
        print(f"the pool finished by itself: {state}")


async def draining_on_stop() -> None:
    finished: list[int] = []

    async def slow(n: int) -> None:
        await trio.sleep(0.2)
        finished.append(n)

    send, receive = trio.open_memory_channel[int](8)
    for n in range(8):
        send.send_nowait(n)
    async with worker_pool(receive, slow, size=3, name="slow", logger=NoopLogger()):
        await trio.sleep(0.05)  # each worker now holds one item
    # Leaving the block stopped the pool: the three items in hand were finished.
    queued = receive.statistics().current_buffer_used
    print(f"stopped while busy: {len(finished)} items in hand finished, {queued} still queued")


async def main() -> None:
    await finishing_by_itself()
    await draining_on_stop()


if __name__ == "__main__":
    trio.run(main)
