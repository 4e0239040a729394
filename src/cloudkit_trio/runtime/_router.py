"""The router: takes submissions off the queue and runs each one to exactly one reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._errors import CloudError, ContextClosed, InternalError
from .._submission import Reply, Submission

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle
    from ._queue import Queued, SubmissionQueue
    from ._runner import OperationRunner

__all__ = ["Router", "RouterStatistics"]

# How long a reply may wait for room in the caller's channel once the runtime is stopping.
_REPLY_GRACE: Final = 1.0


@attrs.frozen
class RouterStatistics:
    """What the router has done since the context started.

    ``replied`` counts replies delivered; ``undeliverable`` counts replies whose channel
    was closed (or stayed full through shutdown): together they equal the submissions
    taken from the queue, ``refused_while_closing`` (answered ``ContextClosed`` without
    running) included.

    .. versionadded:: 0.1.0
    """

    received: int
    replied: int
    undeliverable: int
    refused_while_closing: int
    workers: int


class Router:
    """A pool of workers on the submission queue.

    The pool's size caps channel submissions; the runner's admission caps ``execute`` and
    channel work together. The workers end when the queue is closed (shutdown closes it
    and answers what was left in it, :meth:`refuse`); the router then waits to be stopped.
    A worker cancelled in the middle of an operation still replies: ``ContextClosed``
    when the context is closing, :class:`InternalError` when the router itself is being
    restarted. Queued submissions survive a router restart: the queue is the context's.
    """

    def __init__(
        self,
        queue: SubmissionQueue,
        runner: OperationRunner,
        lifecycle: Lifecycle,
        *,
        workers: int,
    ) -> None:
        self._queue = queue
        self._runner = runner
        self._lifecycle = lifecycle
        self._workers = workers
        self._live = 0
        self.received = 0
        self.replied = 0
        self.undeliverable = 0
        self.refused = 0

    def statistics(self) -> RouterStatistics:
        return RouterStatistics(
            received=self.received,
            replied=self.replied,
            undeliverable=self.undeliverable,
            refused_while_closing=self.refused,
            workers=self._workers,
        )

    async def run(self, *, task_status: trio.TaskStatus[Router] = trio.TASK_STATUS_IGNORED) -> None:
        """The router actor: a nursery of workers and the queue's deadline keeper."""
        async with trio.open_nursery() as nursery:
            for _ in range(self._workers):
                nursery.start_soon(self._worker)
            nursery.start_soon(self._expire_queued, nursery)
            task_status.started(self)

    @property
    def idle(self) -> bool:
        """Whether every worker is waiting for a submission (none holds one).

        Counted from the queue's parked receivers, not from the workers' own view: a
        submission handed to a parked worker that has not resumed yet is in nobody's hands
        but the worker's, and must not read as idle.
        """
        return self._queue.receivers_waiting == self._live

    async def _worker(self) -> None:
        queue = self._queue
        receive = queue.receive_channel
        self._live += 1
        try:
            while True:
                try:
                    queued = await receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break  # shutdown closed the queue and answers what was left in it
                if queued.taken:
                    continue  # its deadline passed in the queue: already answered
                queued.taken = True
                queue.accepted(queued)
                self.received += 1
                await self._serve(queued)
        finally:
            self._live -= 1
        # Returning would read as a permanent child's exit and be restarted, so the
        # router waits for the supervisor to stop it instead.
        await trio.sleep_forever()

    async def _expire_queued(self, nursery: trio.Nursery) -> None:
        """Answer a queued submission when its deadline passes, not when a worker is free."""
        queue = self._queue
        while True:
            with trio.move_on_at(queue.next_deadline):
                await queue.deadline_added.wait()
            for queued in queue.take_expired(trio.current_time()):
                submission = queued.submission
                self.received += 1
                error = self._runner.expired_in_queue(submission.operation, queued.accepted_at)
                reply = Reply(submission.correlation_id, error=error)
                if not self._deliver_nowait(submission, reply):
                    # A caller slow to read must not hold up the others' answers.
                    nursery.start_soon(self._deliver, submission, reply)

    async def _serve(self, queued: Queued) -> None:
        submission = queued.submission
        operation = submission.operation
        accepted_at = queued.accepted_at
        try:
            response = await self._runner.run(
                operation, accepted_at=accepted_at, trace_parent=submission._trace_context
            )
        except CloudError as error:
            reply = Reply(submission.correlation_id, error=error)
        except trio.Cancelled:
            abandoned: CloudError = (
                _closed()
                if not self._lifecycle.accepting
                else InternalError(
                    "the operation was abandoned because the router was restarted; "
                    "it may or may not have reached the endpoint",
                    service=operation.service,
                    operation=operation.name,
                )
            )
            await self._deliver_bounded(
                submission, Reply(submission.correlation_id, error=abandoned)
            )
            raise
        else:
            reply = Reply(submission.correlation_id, response=response)
        await self._deliver(submission, reply)

    async def refuse(self, taken: list[Queued]) -> None:
        """Answer :class:`ContextClosed` to submissions shutdown took from the queue.

        Every reply that fits goes out at once; only then are the callers whose channel
        is full waited for, within the shutdown's bounded time.
        """
        blocked: list[tuple[Submission, Reply]] = []
        for queued in taken:
            submission = queued.submission
            self.received += 1
            self.refused += 1
            self._runner.report_unrun(submission.operation, queued.accepted_at, _closed())
            reply = Reply(submission.correlation_id, error=_closed())
            if not self._deliver_nowait(submission, reply):
                blocked.append((submission, reply))
        for submission, reply in blocked:
            await self._deliver_bounded(submission, reply)

    def _deliver_nowait(self, submission: Submission, reply: Reply) -> bool:
        """Deliver ``reply`` if there is room; False if the caller's channel is full."""
        try:
            submission.reply_to.send_nowait(reply)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.undeliverable += 1
        else:
            self.replied += 1
        return True

    async def _deliver(self, submission: Submission, reply: Reply) -> None:
        """Send the one reply; count it as undeliverable if the caller is gone."""
        if self._deliver_nowait(submission, reply):
            return
        if not self._lifecycle.accepting:
            await self._deliver_bounded(submission, reply)
            return
        try:
            delivered = await _send(submission.reply_to, reply)
        except trio.Cancelled:
            await self._deliver_bounded(submission, reply)
            raise
        self._count(delivered)

    async def _deliver_bounded(self, submission: Submission, reply: Reply) -> None:
        # Shielded so the reply goes out even while this worker is being cancelled, and
        # bounded so a caller who stopped reading cannot hang shutdown.
        delivered = False
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _REPLY_GRACE):
            delivered = await _send(submission.reply_to, reply)
        self._count(delivered)

    def _count(self, delivered: bool) -> None:
        if delivered:
            self.replied += 1
        else:
            self.undeliverable += 1


async def _send(channel: trio.MemorySendChannel[Reply], reply: Reply) -> bool:
    try:
        await channel.send(reply)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


def _closed() -> ContextClosed:
    return ContextClosed("the cloud context is shutting down; the operation was not run")
