"""DESIGN.md §6 invariants under load: one reply per submission, no leaks, bounded queues."""

from __future__ import annotations

import random

import trio
import trio.testing

import cloudkit_trio as ck
import cloudkit_trio.testing
from cloudkit_trio.testing import FaultyTransport, RecordingMetrics

from ._support import ENDPOINT, context, op

SUBMISSIONS = 10_000
CALLERS = 100


class TestExactlyOneReply:
    async def test_ten_thousand_submissions_with_faults_cancellations_and_a_crash(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """10 000 submissions, random faults, callers that give up, a router crash: 10 000 replies."""
        rng = random.Random(1234)
        transport = FaultyTransport(rate=0.3, seed=99, slow_delay=3.0, retry_after=0.2)
        config = ck.CloudConfig(endpoint=ENDPOINT, max_concurrency=64, queue_size=256, timeout=2.0)
        metrics = RecordingMetrics()
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        received: dict[int, ck.Reply] = {}
        gave_up: set[int] = set()

        async with context(transport, config=config, metrics=metrics) as cloud:
            router = cloud._runtime.router
            deliver = router._deliver
            delivered = 0

            async def crash_after_5000(submission: ck.Submission, reply: ck.Reply) -> None:
                nonlocal delivered
                await deliver(submission, reply)
                delivered += 1
                if delivered == SUBMISSIONS // 2:
                    raise RuntimeError("injected router crash")

            router._deliver = crash_after_5000  # type: ignore[method-assign]

            async def caller(index: int) -> None:
                send, receive = trio.open_memory_channel[ck.Reply](SUBMISSIONS // CALLERS)
                ids = range(index * 100, index * 100 + 100)
                async with cloud.submit_channel() as submit:
                    for cid in ids:
                        await submit.send(ck.Submission(op(), send, correlation_id=cid))
                patience = rng.choice([None, None, None, None, rng.uniform(0.1, 5.0)])
                with (
                    receive,
                    trio.move_on_after(patience if patience is not None else 1e9) as scope,
                ):
                    for _ in ids:
                        reply = await receive.receive()
                        assert reply.correlation_id not in received
                        received[reply.correlation_id] = reply  # type: ignore[index]
                if scope.cancelled_caught:
                    gave_up.update(cid for cid in ids if cid not in received)

            async with trio.open_nursery() as nursery:
                for index in range(CALLERS):
                    nursery.start_soon(caller, index)

            [child] = [c for c in cloud.snapshot().tree.children if c.id == "router"]
            assert child.restarts == 1

        # Read after shutdown: operations of callers who gave up may still have been running.
        stats = router.statistics()
        assert stats.received == SUBMISSIONS
        assert stats.replied + stats.undeliverable == SUBMISSIONS
        assert len(received) + len(gave_up) == SUBMISSIONS
        assert set(received) | gave_up == set(range(SUBMISSIONS))
        assert gave_up, "some callers should have given up"
        outcomes = {type(r.error).__name__ for r in received.values() if r.error is not None}
        assert "InternalError" in outcomes  # operations abandoned by the crash
        assert sum(1 for r in received.values() if r.ok) > SUBMISSIONS // 2
        assert sum(transport.counts.values()) > 1000
        assert trio.lowlevel.current_statistics().tasks_living == tasks_before

    async def test_shutdown_with_work_in_flight(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Shutdown replies ContextClosed to what it could not finish, and to nothing twice."""
        transport = FaultyTransport(rate=1.0, weights={ck.testing.Fault.SLOW: 1.0}, slow_delay=60.0)
        config = ck.CloudConfig(
            endpoint=ENDPOINT, max_concurrency=8, queue_size=512, shutdown_grace=2.0, timeout=100
        )
        send, receive = trio.open_memory_channel[ck.Reply](1000)
        async with context(transport, config=config) as cloud:
            for n in range(300):
                cloud.submit_nowait(ck.Submission(op(), send, correlation_id=n))
            await trio.sleep(1.0)
        replies = []
        while True:
            try:
                replies.append(receive.receive_nowait())
            except trio.WouldBlock:
                break
        assert sorted(r.correlation_id for r in replies) == list(range(300))
        assert all(isinstance(r.error, ck.ContextClosed) for r in replies)
