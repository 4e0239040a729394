"""The bounded submission queue, and the send channels callers hold on it.

The queue belongs to one run of a context, not to the router, so queued submissions
survive a router restart. Callers never hold the queue's own channel: each gets a
:class:`SubmissionChannel`, which asks the lifecycle before every send, so a send after
shutdown began answers :class:`~cloudkit_trio.ContextClosed` instead of a Trio error, and
which stamps the time a submission was accepted: its ``Operation.timeout`` counts from
then, queue wait included. A submission whose deadline passes while it is still queued is
answered then, not when a worker gets to it: the queue keeps those deadlines in a heap
(:meth:`SubmissionQueue.take_expired`), and whichever comes first — a worker taking the
submission or its deadline — marks it taken, so it is answered once.

Closing the queue and taking what is in it are one synchronous step
(:meth:`SubmissionQueue.close_and_take_all`): no checkpoint lies between the last
submission taken and the closed queue, so nothing can be accepted that is not answered.
"""

from __future__ import annotations

import heapq
import itertools
import math
from types import TracebackType
from typing import TYPE_CHECKING, final

import trio

from .._errors import ContextClosed, Overloaded
from .._submission import Submission
from ._lifecycle import ContextState

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle

__all__ = ["Queued", "SubmissionChannel", "SubmissionQueue"]


class Queued:
    """A submission in the queue, with the time it was accepted."""

    __slots__ = ("accepted_at", "submission", "taken")

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        #: ``trio.current_time()`` when the queue took it; None while a blocked send has
        #: not resumed yet (whoever sees it first, the sender or a worker, stamps it).
        self.accepted_at: float | None = None
        #: Whether somebody (a worker, the deadline keeper, shutdown) answers it.
        self.taken = False


def _check(submission: object) -> Submission:
    if not isinstance(submission, Submission):
        raise TypeError(f"send() takes a Submission, got {type(submission).__name__}")
    return submission


class SubmissionQueue:
    """The context's queue of submissions (bounded by ``CloudConfig.queue_size``)."""

    __slots__ = (
        "_deadlines",
        "_order",
        "_receive",
        "_send",
        "capacity",
        "deadline_added",
        "lifecycle",
    )

    def __init__(self, capacity: int, lifecycle: Lifecycle) -> None:
        self.capacity = capacity
        self.lifecycle = lifecycle
        self._send, self._receive = trio.open_memory_channel[Queued](capacity)
        # (deadline, tie-breaker, queued) of accepted submissions with a timeout.
        self._deadlines: list[tuple[float, int, Queued]] = []
        self._order = itertools.count()
        #: Set when a submission's deadline is earlier than every other queued one's.
        self.deadline_added = trio.Event()

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    @property
    def receivers_waiting(self) -> int:
        """Tasks parked in a receive on the queue."""
        return self._receive.statistics().tasks_waiting_receive

    def channel(self) -> SubmissionChannel:
        """A new send channel on the queue for one producer."""
        return self.clone(self._send)

    def clone(self, send: trio.MemorySendChannel[Queued]) -> SubmissionChannel:
        """Another producer's channel, cloned from ``send``."""
        self.lifecycle.check_open("no submission channel is handed out")
        return SubmissionChannel._create(self, send.clone())

    # -- accepting -------------------------------------------------------------------------

    def put_nowait(self, submission: Submission) -> None:
        """Accept ``submission`` now, or raise :class:`Overloaded` / ``ContextClosed``."""
        self._put_nowait(self._send, submission)

    def _put_nowait(self, send: trio.MemorySendChannel[Queued], submission: object) -> None:
        submission = _check(submission)
        if self.lifecycle.state is not ContextState.RUNNING:
            self.refuse(submission)
        queued = Queued(submission)
        try:
            send.send_nowait(queued)
        except trio.WouldBlock:
            operation = submission.operation
            raise Overloaded(
                f"the submission queue is full ({self.capacity} waiting); "
                "slow down or raise CloudConfig.queue_size",
                provider=self.lifecycle.provider,
                service=operation.service,
                operation=operation.name,
            ) from None
        except trio.BrokenResourceError:
            raise self.refused(submission) from None
        self.accepted(queued)

    def accepted(self, queued: Queued) -> None:
        """Stamp ``queued`` as accepted now (once) and keep its deadline, if it has one."""
        if queued.accepted_at is not None:
            return
        now = queued.accepted_at = trio.current_time()
        timeout = queued.submission.operation.timeout
        if timeout is None or queued.taken:
            return
        deadlines = self._deadlines
        deadline = now + timeout
        if not deadlines or deadline < deadlines[0][0]:
            self.deadline_added.set()
        heapq.heappush(deadlines, (deadline, next(self._order), queued))
        if len(deadlines) > 2 * self.capacity + 64:
            # Submissions taken long before their deadline stay in the heap until it
            # passes; drop them so the heap stays bounded by what is still queued.
            self._deadlines = [entry for entry in deadlines if not entry[2].taken]
            heapq.heapify(self._deadlines)

    def refuse(self, submission: Submission) -> None:
        """Raise why the queue does not accept work: the lifecycle's answer."""
        operation = submission.operation
        self.lifecycle.check_open(
            "the submission was refused", service=operation.service, operation=operation.name
        )

    def refused(self, submission: Submission) -> ContextClosed:
        operation = submission.operation
        return self.lifecycle.closed_error(
            "the submission was refused", service=operation.service, operation=operation.name
        )

    # -- taking ----------------------------------------------------------------------------

    @property
    def receive_channel(self) -> trio.MemoryReceiveChannel[Queued]:
        """The queue's receiving end, for the router's workers (closed by shutdown only).

        A worker calls :meth:`accepted` and skips a :class:`Queued` already ``taken``.
        """
        return self._receive

    @property
    def next_deadline(self) -> float:
        """The earliest deadline of a queued submission (``inf`` if none)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].taken:
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else math.inf

    def take_expired(self, now: float) -> list[Queued]:
        """Mark taken and return every queued submission whose deadline has passed."""
        self.deadline_added = trio.Event()
        expired: list[Queued] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            queued = heapq.heappop(deadlines)[2]
            if not queued.taken:
                queued.taken = True
                expired.append(queued)
        return expired

    def close_and_take_all(self) -> list[Queued]:
        """Close the queue and return everything in it, blocked senders' submissions included.

        Synchronous on purpose (see the module docstring). Taking an item from a full
        queue moves a blocked sender's submission in (its ``send`` then returns: it was
        accepted), so the loop ends only when no sender is left waiting.
        """
        taken: list[Queued] = []
        while True:
            try:
                queued = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            self.accepted(queued)
            if not queued.taken:
                queued.taken = True
                taken.append(queued)
        self._receive.close()
        self._deadlines.clear()
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
        queue = self._queue
        # The hot path of the channel API: one frame, one state check.
        if not isinstance(value, Submission):
            raise TypeError(f"send() takes a Submission, got {type(value).__name__}")
        if queue.lifecycle.state is not ContextState.RUNNING:
            queue.refuse(value)
        queued = Queued(value)
        try:
            await self._send.send(queued)
        except trio.BrokenResourceError:
            raise queue.refused(value) from None
        queue.accepted(queued)

    def send_nowait(self, value: Submission) -> None:
        """Queue ``value`` now, or raise :class:`~cloudkit_trio.Overloaded`."""
        self._queue._put_nowait(self._send, value)

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
