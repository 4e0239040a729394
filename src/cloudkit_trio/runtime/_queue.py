"""The bounded submission queue, and the send channels callers hold on it.

The queue belongs to one run of a context, not to the router, so queued submissions
survive a router restart. Callers never hold the queue's own channel: each gets a
:class:`SubmissionChannel`, which asks the lifecycle before every send, so a send after
shutdown began answers :class:`~cloudkit_trio.ContextClosed` instead of a Trio error, and
which stamps the time a submission was accepted (its ``Operation.timeout`` counts from
then, queue wait included).

Closing the queue and taking what is in it are one synchronous step
(:meth:`SubmissionQueue.close_and_take_all`): no checkpoint lies between the last
submission taken and the closed queue, so nothing can be accepted that is not answered.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, final

import trio

from .._errors import Overloaded
from .._submission import Submission
from ._lifecycle import ContextState

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle

__all__ = ["Queued", "SubmissionChannel", "SubmissionQueue"]


class Queued:
    """A submission in the queue, with the time it was accepted."""

    __slots__ = ("accepted_at", "submission")

    def __init__(self, submission: Submission, accepted_at: float | None) -> None:
        self.submission = submission
        #: ``trio.current_time()`` when the queue took it; None while a blocked send has
        #: not resumed yet (whoever sees it first, the sender or a worker, stamps it).
        self.accepted_at = accepted_at


def _check(submission: object) -> Submission:
    if not isinstance(submission, Submission):
        raise TypeError(f"send() takes a Submission, got {type(submission).__name__}")
    return submission


class SubmissionQueue:
    """The context's queue of submissions (bounded by ``CloudConfig.queue_size``)."""

    __slots__ = ("_lifecycle", "_receive", "_send", "capacity")

    def __init__(self, capacity: int, lifecycle: Lifecycle) -> None:
        self.capacity = capacity
        self._lifecycle = lifecycle
        self._send, self._receive = trio.open_memory_channel[Queued](capacity)

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    @property
    def receivers_waiting(self) -> int:
        """Tasks parked in :meth:`receive`."""
        return self._receive.statistics().tasks_waiting_receive

    def channel(self) -> SubmissionChannel:
        """A new send channel on the queue for one producer."""
        self._lifecycle.check_open("no submission channel is handed out")
        return SubmissionChannel._create(self, self._send.clone())

    def clone(self, send: trio.MemorySendChannel[Queued]) -> SubmissionChannel:
        """Another producer's channel, cloned from ``send``."""
        self._lifecycle.check_open("no submission channel is handed out")
        return SubmissionChannel._create(self, send.clone())

    def put_nowait(self, submission: Submission) -> None:
        """Accept ``submission`` now, or raise :class:`Overloaded` / ``ContextClosed``."""
        self._put_nowait(self._send, submission)

    def _put_nowait(self, send: trio.MemorySendChannel[Queued], submission: Submission) -> None:
        operation = submission.operation
        self._lifecycle.check_open(
            "the submission was refused", service=operation.service, operation=operation.name
        )
        try:
            send.send_nowait(Queued(submission, trio.current_time()))
        except trio.WouldBlock:
            raise Overloaded(
                f"the submission queue is full ({self.capacity} waiting); "
                "slow down or raise CloudConfig.queue_size",
                provider=self._lifecycle.provider,
                service=operation.service,
                operation=operation.name,
            ) from None
        except trio.BrokenResourceError:
            raise self._refused(submission) from None

    async def _put(self, send: trio.MemorySendChannel[Queued], submission: object) -> None:
        submission = _check(submission)
        lifecycle = self._lifecycle
        if lifecycle.state is not ContextState.RUNNING:
            operation = submission.operation
            lifecycle.check_open(
                "the submission was refused", service=operation.service, operation=operation.name
            )
        queued = Queued(submission, None)
        try:
            await send.send(queued)
        except trio.BrokenResourceError:
            raise self._refused(submission) from None
        if queued.accepted_at is None:
            queued.accepted_at = trio.current_time()

    def _refused(self, submission: Submission) -> Exception:
        operation = submission.operation
        return self._lifecycle.closed_error(
            "the submission was refused", service=operation.service, operation=operation.name
        )

    async def receive(self) -> Queued | None:
        """The next submission, or None once the queue is closed."""
        try:
            queued = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        if queued.accepted_at is None:
            queued.accepted_at = trio.current_time()
        return queued

    def close_and_take_all(self) -> list[Queued]:
        """Close the queue and return everything in it, blocked senders' submissions included.

        Synchronous on purpose (see the module docstring). Taking an item from a full
        queue moves a blocked sender's submission in (its ``send`` then returns: it was
        accepted), so the loop ends only when no sender is left waiting.
        """
        taken: list[Queued] = []
        now = trio.current_time()
        while True:
            try:
                queued = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if queued.accepted_at is None:
                queued.accepted_at = now
            taken.append(queued)
        self._receive.close()
        return taken


@final
class SubmissionChannel(trio.abc.SendChannel[Submission]):
    """A producer's channel into a context's submission queue (from :meth:`Cloud.submit_channel`).

    Use it like a ``trio.MemorySendChannel``: ``await send(submission)`` waits while the
    queue is full; :meth:`send_nowait` raises :class:`~cloudkit_trio.Overloaded` instead;
    :meth:`clone` gives another producer its own; close it when you are done (``async
    with`` or ``with``). Once the context is shutting down, both raise
    :class:`~cloudkit_trio.ContextClosed`. A submission whose ``send`` returned was
    accepted and gets exactly one :class:`~cloudkit_trio.Reply`.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_queue", "_send")

    def __init__(self) -> None:
        raise TypeError("a SubmissionChannel comes from Cloud.submit_channel()")

    @classmethod
    def _create(
        cls, queue: SubmissionQueue, send: trio.MemorySendChannel[Queued]
    ) -> SubmissionChannel:
        self = object.__new__(cls)
        self._queue = queue
        self._send = send
        return self

    _queue: SubmissionQueue
    _send: trio.MemorySendChannel[Queued]

    async def send(self, value: Submission) -> None:
        """Queue ``value``, waiting while the queue is full."""
        await self._queue._put(self._send, value)

    def send_nowait(self, value: Submission) -> None:
        """Queue ``value`` now, or raise :class:`~cloudkit_trio.Overloaded`."""
        self._queue._put_nowait(self._send, _check(value))

    def clone(self) -> SubmissionChannel:
        """Another channel on the same queue; each clone is closed on its own."""
        return self._queue.clone(self._send)

    def close(self) -> None:
        """Close this channel (other clones stay open). Idempotent."""
        self._send.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> SubmissionChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The queue's statistics, as ``trio.MemorySendChannel.statistics()``."""
        return self._send.statistics()

    def __repr__(self) -> str:
        return f"<SubmissionChannel queued={self._queue.depth}/{self._queue.capacity}>"
