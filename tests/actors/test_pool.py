"""worker_pool: N supervised workers on one channel, restarted on crash, drained on stop."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    ChildState,
    DynamicSupervisor,
    EventKind,
    Restart,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorEvent,
    worker_pool,
)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


class Poison(Exception):
    """What the handler raises for a bad item."""


class Recorder:
    """A handler that takes ``seconds`` per item and raises on negative items."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.done: list[int] = []
        self.begun: list[int] = []

    async def __call__(self, item: int) -> None:
        self.begun.append(item)
        if item < 0:
            raise Poison(item)
        await trio.sleep(self.seconds)
        self.done.append(item)


class TestWorkerPool:
    async def test_workers_share_the_channel_and_the_pool_ends_with_it(
        self, autojump_clock: Any
    ) -> None:
        """Items are spread over the workers; closing the channel ends the pool normally."""
        send, receive = trio.open_memory_channel[int](10)
        handler = Recorder(seconds=1.0)
        pool = worker_pool(receive, handler, size=3)
        assert isinstance(pool, DynamicSupervisor)
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(pool.run)
            assert [c.id for c in handle.which_children()] == ["worker-1", "worker-2", "worker-3"]
            async with send:
                for item in range(6):
                    await send.send(item)
        # Three at a time, one second each: six items take two seconds.
        assert sorted(handler.done) == list(range(6))
        assert trio.current_time() == 2.0
        assert not handle.running

    async def test_a_crashing_item_restarts_its_worker_and_is_lost(
        self, autojump_clock: Any
    ) -> None:
        """The handler's exception restarts the worker; that item is not delivered again."""
        send, receive = trio.open_memory_channel[int](10)
        handler = Recorder(seconds=0.5)
        events: list[SupervisorEvent] = []
        pool = worker_pool(receive, handler, size=2, on_event=events.append)
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(pool.run)
            async with send:
                for item in (1, -1, 2, 3):
                    await send.send(item)
                await settle()
                await trio.sleep(5)
                restarts = sum(c.restarts for c in handle.which_children())
                assert restarts == 1
        assert sorted(handler.done) == [1, 2, 3]
        assert handler.begun.count(-1) == 1
        failed = [e for e in events if e.kind is EventKind.CHILD_FAILED]
        assert [e.failure.type_name for e in failed if e.failure] == ["Poison"]
        assert {e.child_label for e in failed} == {"worker"}

    async def test_too_many_crashes_give_up_with_the_handlers_exception(
        self, autojump_clock: Any
    ) -> None:
        """Past the intensity the pool gives up; the cause is the handler's exception."""
        send, receive = trio.open_memory_channel[int](10)
        pool = worker_pool(receive, Recorder(), size=2, max_restarts=1)
        for item in (-1, -2, -3):
            send.send_nowait(item)
        with pytest.raises(RestartIntensityExceeded) as info:
            await pool.run()
        assert isinstance(info.value.__cause__, Poison)
        assert info.value.child_path[0].startswith("worker-")

    async def test_shutdown_drains_the_items_in_hand_and_leaves_the_queue(
        self, autojump_clock: Any
    ) -> None:
        """stop(): busy workers finish their item, idle ones return, queued items stay."""
        send, receive = trio.open_memory_channel[int](10)
        handler = Recorder(seconds=3.0)
        async with worker_pool(receive, handler, size=2, shutdown=10.0) as handle:
            for item in range(5):
                send.send_nowait(item)
            await trio.sleep(1.0)
            assert sorted(handler.begun) == [0, 1]
        assert sorted(handler.done) == [0, 1]
        assert trio.current_time() == 3.0
        assert receive.statistics().current_buffer_used == 3
        assert [c.state for c in handle.which_children()] == [ChildState.STOPPED] * 2

    async def test_an_idle_pool_stops_at_once(self, autojump_clock: Any) -> None:
        """Workers waiting for an item return as soon as they are asked."""
        send, receive = trio.open_memory_channel[int](1)
        async with worker_pool(receive, Recorder(), size=4):
            await settle()
        assert trio.current_time() == 0.0
        send.send_nowait(1)  # the channel stayed open: the pool never closes it

    async def test_a_handler_over_its_budget_is_cancelled(self, autojump_clock: Any) -> None:
        """A worker still busy after its shutdown budget is cancelled."""
        send, receive = trio.open_memory_channel[int](1)
        handler = Recorder(seconds=100.0)
        async with worker_pool(receive, handler, size=1, shutdown=2.0):
            send.send_nowait(1)
            await settle()
        assert handler.done == []
        assert trio.current_time() == 2.0

    async def test_as_a_transient_child_it_stays_stopped_once_the_channel_ended(
        self, autojump_clock: Any
    ) -> None:
        """Under a parent, a finished pool is not started again, and its restarts are
        reported to the parent's hook under the pool's path."""
        send, receive = trio.open_memory_channel[int](10)
        events: list[SupervisorEvent] = []
        pool = worker_pool(receive, Recorder(seconds=0.1), size=2, name="ingest")
        async with Supervisor(
            [pool.child_spec("ingest", restart=Restart.TRANSIENT)], on_event=events.append
        ) as root:
            async with send:
                await send.send(-1)
                await send.send(1)
            await trio.sleep(1)
            info = root.which_children().by_id("ingest")
            assert info.state is ChildState.STOPPED
            assert info.restarts == 0
        restarting = [e for e in events if e.kind is EventKind.CHILD_RESTARTING]
        assert ["/".join(e.child_path) for e in restarting] == ["ingest/worker"]

    def test_arguments_are_checked(self) -> None:
        """size must be a positive int; the handler must be callable."""
        _, receive = trio.open_memory_channel[int](1)
        with pytest.raises(ValueError, match="size"):
            worker_pool(receive, Recorder(), size=0)
        with pytest.raises(TypeError, match="handler"):
            worker_pool(receive, "nope", size=1)  # type: ignore[arg-type]
