"""The driver: releases the run's operations at a steady rate, half of them through
``cloud.execute`` and half as :class:`~cloudkit_trio.Submission` messages, and counts what
comes back."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import CloudError
from .._submission import Reply, Submission

if TYPE_CHECKING:
    from .._context import Cloud
    from .._operation import Operation
    from ._settings import DemoSettings
    from ._target import Target

__all__ = ["Driver", "Tally"]


@attrs.define(eq=False)
class Tally:
    """What the driver handed to the runtime and what came back.

    ``submitted`` counts operations the runtime accepted (an ``execute`` call made, a
    submission sent); ``replied`` counts their answers, a response or an error. The run's
    invariant is that the two end equal.
    """

    submitted: int = 0
    replied: int = 0
    succeeded: int = 0
    failed: int = 0
    via_execute: int = 0
    via_channel: int = 0
    #: Operations that needed more than one attempt, whatever their outcome.
    retried_operations: int = 0
    failures: Counter[str] = attrs.field(factory=Counter)
    releasing: bool = True
    _all_replied: trio.Event = attrs.field(factory=trio.Event)

    def success(self, attempts: int) -> None:
        self.succeeded += 1
        self._replied(attempts)

    def failure(self, error: CloudError) -> None:
        self.failed += 1
        self.failures[type(error).__name__] += 1
        self._replied(error.attempt or 1)

    def reply(self, reply: Reply) -> None:
        if reply.response is not None:
            self.success(reply.response.attempts)
        else:
            assert reply.error is not None
            self.failure(reply.error)

    def released_all(self) -> None:
        """No more operations will be submitted."""
        self.releasing = False
        self._check()

    async def wait_replied(self) -> None:
        """Return once every submitted operation has been answered and no more will come."""
        await self._all_replied.wait()

    def _replied(self, attempts: int) -> None:
        self.replied += 1
        if attempts > 1:
            self.retried_operations += 1
        self._check()

    def _check(self) -> None:
        if not self.releasing and self.replied >= self.submitted:
            self._all_replied.set()


class Driver:
    """Releases ``settings.operations`` operations, ``settings.rate`` per second, with at
    most ``settings.concurrency`` unanswered at any time.

    Even-numbered operations are awaited with ``cloud.execute``; odd-numbered ones go
    through ``cloud.submit_channel()`` with the driver's own reply channel. When ``stop``
    is set, releasing stops; what was submitted is still answered (the caller closes the
    context, which answers the rest with ``ContextClosed``).
    """

    def __init__(
        self, cloud: Cloud, target: Target, settings: DemoSettings, tally: Tally, stop: trio.Event
    ) -> None:
        self.cloud = cloud
        self.target = target
        self.settings = settings
        self.tally = tally
        self.stop = stop
        self.started_at: float | None = None
        self.released = trio.Event()
        self._limiter = trio.CapacityLimiter(settings.concurrency)

    async def run(self) -> None:
        """Release everything, then return once every answer is in."""
        # Room for every unanswered submission, so the runtime never waits to reply.
        replies_send, replies_receive = trio.open_memory_channel[Reply](self.settings.concurrency)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._collect, replies_receive)
            with trio.CancelScope() as releasing:
                nursery.start_soon(self._cancel_on_stop, releasing)
                try:
                    await self._release(nursery, replies_send)
                finally:
                    self.tally.released_all()
                    self.released.set()
            await self.tally.wait_replied()
            nursery.cancel_scope.cancel()
        replies_send.close()

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self.stop.wait()
        scope.cancel()

    async def _release(self, nursery: trio.Nursery, replies: trio.MemorySendChannel[Reply]) -> None:
        tally, limiter = self.tally, self._limiter
        interval = 1.0 / self.settings.rate
        start = self.started_at = trio.current_time()
        self.target.begin(start)
        async with self.cloud.submit_channel() as submit:
            for n in range(self.settings.operations):
                await trio.sleep_until(start + n * interval)
                await limiter.acquire_on_behalf_of(n)
                operation = self.target.operation(n)
                if n % 2 == 0:
                    tally.submitted += 1
                    tally.via_execute += 1
                    nursery.start_soon(self._execute, operation, n)
                    continue
                try:
                    await submit.send(Submission(operation, replies, correlation_id=n))
                except BaseException:
                    # Not sent (cancelled, or the queue closed): nobody will answer it.
                    limiter.release_on_behalf_of(n)
                    raise
                tally.submitted += 1
                tally.via_channel += 1

    async def _execute(self, operation: Operation, n: int) -> None:
        try:
            response = await self.cloud.execute(operation)
        except CloudError as error:
            self.tally.failure(error)
        else:
            self.tally.success(response.attempts)
        finally:
            self._limiter.release_on_behalf_of(n)

    async def _collect(self, replies: trio.MemoryReceiveChannel[Reply]) -> None:
        async for reply in replies:
            assert isinstance(reply.correlation_id, int)
            self._limiter.release_on_behalf_of(reply.correlation_id)
            self.tally.reply(reply)
