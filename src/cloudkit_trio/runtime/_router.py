"""The router: admits submissions from the channel and runs each one to exactly one reply."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._errors import CloudError, ContextClosed, InternalError
from .._submission import Reply, Submission

if TYPE_CHECKING:
    from ..spi import Logger
    from ._runner import OperationRunner

__all__ = ["Router", "RouterStatistics"]

# How long a reply may wait for room in the caller's channel once the runtime is stopping.
_REPLY_GRACE: Final = 1.0


@attrs.frozen
class RouterStatistics:
    """What the router has done since the context started.

    ``replied`` counts replies delivered; ``undeliverable`` counts replies whose channel
    was closed (or stayed full through shutdown): together they equal the submissions the
    router took from the queue.

    .. versionadded:: 0.1.0
    """

    received: int
    replied: int
    undeliverable: int
    refused_while_closing: int
    workers: int


class Router:
    """Takes submissions off the bounded queue with a pool of workers.

    The pool's size is the concurrency cap for channel submissions; the runner's own
    limiter caps ``execute`` and channel work together. A worker that is cancelled in the
    middle of an operation (the router crashed and is being restarted, or the context is
    stopping) still replies, with :class:`ContextClosed` or :class:`InternalError`.
    Submissions still queued survive a router restart: the queue belongs to the context.
    """

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[Submission],
        runner: OperationRunner,
        logger: Logger,
        *,
        workers: int,
    ) -> None:
        self._receive = receive
        self._runner = runner
        self._logger = logger
        self._workers = workers
        # Each worker's scope, and whether the worker is waiting for a submission.
        self._idle: dict[trio.CancelScope, bool] = {}
        self._stopping = False
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

    def request_stop(self) -> None:
        """Graceful stop: workers finish their operation, refuse the queue, and return."""
        self._stopping = True
        for scope, idle in list(self._idle.items()):
            if idle:
                scope.cancel()  # busy workers see _stopping once their operation is done

    async def run(self, *, task_status: trio.TaskStatus[Router] = trio.TASK_STATUS_IGNORED) -> None:
        """The router actor: a nursery of workers."""
        self._stopping = False
        async with trio.open_nursery() as nursery:
            for _ in range(self._workers):
                nursery.start_soon(self._worker)
            task_status.started(self)

    async def _worker(self) -> None:
        # One scope for the worker's life, cancelled by request_stop only while it waits:
        # cheaper than a scope per receive. A submission handed over just as the scope is
        # cancelled is still served (and answered), never lost.
        scope = trio.CancelScope()
        self._idle[scope] = True
        try:
            with scope:
                while not self._stopping:
                    self._idle[scope] = True
                    submission = await self._receive.receive()
                    self._idle[scope] = False
                    self.received += 1
                    await self._serve(submission)
        finally:
            del self._idle[scope]
        await self.refuse_queued()

    async def _serve(self, submission: Submission) -> None:
        operation = submission.operation
        try:
            response = await self._runner.run(operation)
        except CloudError as error:
            reply = Reply(submission.correlation_id, error=error)
        except trio.Cancelled:
            abandoned: CloudError = (
                _closed()
                if self._runner.closing
                else InternalError(
                    "the operation was abandoned because the router was restarted; "
                    "it may or may not have reached the endpoint",
                    service=operation.service,
                    operation=operation.name,
                )
            )
            await self._deliver(submission, Reply(submission.correlation_id, error=abandoned))
            raise
        except Exception as exc:  # a bug must cost one reply, not the whole router
            self._logger.error(
                "operation failed unexpectedly",
                service=operation.service,
                operation=operation.name,
                error=f"{type(exc).__name__}: {exc}",
            )
            reply = Reply(
                submission.correlation_id,
                error=InternalError(
                    f"unexpected {type(exc).__name__} while running the operation",
                    service=operation.service,
                    operation=operation.name,
                ),
            )
        else:
            reply = Reply(submission.correlation_id, response=response)
        await self._deliver(submission, reply)

    async def refuse_queued(self) -> None:
        """Reply :class:`ContextClosed` to every submission still queued."""
        while True:
            try:
                submission = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self.received += 1
            self.refused += 1
            await self._deliver(submission, Reply(submission.correlation_id, error=_closed()))

    async def _deliver(self, submission: Submission, reply: Reply) -> None:
        """Send the one reply; count it as undeliverable if the caller is gone."""
        channel = submission.reply_to
        try:
            channel.send_nowait(reply)
        except trio.WouldBlock:
            pass  # the caller's channel is full: wait for room below
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.undeliverable += 1
            return
        else:
            self.replied += 1
            return
        cancelled = trio.current_effective_deadline() == -math.inf
        if not (cancelled or self._stopping or self._runner.closing):
            try:
                delivered = await _send(channel, reply)
            except trio.Cancelled:
                await self._deliver_bounded(channel, reply)
                raise
        else:
            await self._deliver_bounded(channel, reply)
            return
        if delivered:
            self.replied += 1
        else:
            self.undeliverable += 1

    async def _deliver_bounded(self, channel: trio.MemorySendChannel[Reply], reply: Reply) -> None:
        # Shielded so the reply goes out even while this worker is being cancelled, and
        # bounded so a caller who stopped reading cannot hang shutdown.
        delivered = False
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _REPLY_GRACE):
            delivered = await _send(channel, reply)
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
