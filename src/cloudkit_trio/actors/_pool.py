"""The worker-pool recipe: N supervised workers consuming one Trio receive channel."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import trio

from ._dynamic import DynamicSupervisor
from ._spec import AutoShutdown, ChildSpec, Restart

if TYPE_CHECKING:
    from ._backoff import RestartBackoff
    from ._logging import SupervisorLogger
    from ._snapshot import EventHook

__all__ = ["worker_pool"]

T = TypeVar("T")


class _Consumer:
    """A worker's started value: the stop request interrupts a wait, never a handler."""

    __slots__ = ("requested", "waiting")

    def __init__(self) -> None:
        self.requested = False
        #: The cancel scope around the worker's ``receive()``, while it waits in it.
        self.waiting: trio.CancelScope | None = None

    def request_stop(self) -> None:
        self.requested = True
        if self.waiting is not None:
            self.waiting.cancel()


async def _consume(
    receive: trio.abc.ReceiveChannel[T],
    handler: Callable[[T], Awaitable[object]],
    *,
    task_status: trio.TaskStatus[_Consumer] = trio.TASK_STATUS_IGNORED,
) -> None:
    consumer = _Consumer()
    task_status.started(consumer)
    while not consumer.requested:
        with trio.CancelScope() as waiting:
            consumer.waiting = waiting
            try:
                item = await receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return  # the channel is done: the worker is done
            finally:
                consumer.waiting = None
            # A stop request from here on lets the item in hand finish.
            await handler(item)


def worker_pool(
    receive: trio.abc.ReceiveChannel[T],
    handler: Callable[[T], Awaitable[object]],
    *,
    size: int,
    name: str = "worker_pool",
    shutdown: float | None = 5.0,
    max_restarts: int = 3,
    within: float = 5.0,
    backoff: RestartBackoff | None = None,
    logger: SupervisorLogger | None = None,
    on_event: EventHook | None = None,
) -> DynamicSupervisor:
    """``size`` workers that take items from ``receive`` and ``await handler(item)``.

    ::

        send, receive = trio.open_memory_channel[Job](100)
        pool = worker_pool(receive, process, size=8, name="jobs")
        handle = await cloud.supervisor.start_child(pool.child_spec(restart=Restart.TRANSIENT))

    It is a :class:`DynamicSupervisor` of ``size`` members made from the template
    ``"worker"`` (``worker-1`` ... ``worker-N``), so a metric labelled by
    ``SupervisorEvent.child_path`` sees ``<pool path>/worker``. Each worker handles one
    item at a time:

    - **A crash**: ``handler`` raising makes its worker fail; the pool restarts it (within
      ``max_restarts`` in ``within`` seconds, then the pool gives up with
      :class:`RestartIntensityExceeded`, the handler's exception as ``__cause__``). The
      item being handled is lost: it was taken from the channel and is not delivered
      again. Catch what you want to retry or record inside ``handler``.
    - **The channel ends** (every send side closed and the buffer empty, or the receive
      channel closed): each worker returns once it finds it so, and when the last one
      has, the pool returns normally (its workers are significant, with
      ``AutoShutdown.ALL_SIGNIFICANT``). Run it as a ``TRANSIENT`` child, or its parent
      starts it again.
    - **Shutdown** (``stop()``, leaving ``async with``, the parent stopping): the pool
      drains: every worker is asked at once; one waiting for an item returns at once,
      one handling an item finishes it, then returns. A worker still busy after
      ``shutdown`` seconds is cancelled. Items still queued in the channel stay there,
      for whoever owns the channel.

    Args:
        receive: Where the items come from; the workers share it and never close it.
        handler: Called once per item, on the worker that took it.
        size: How many workers (at least 1); also the pool's ``max_children``.
        name: The pool supervisor's name.
        shutdown: Seconds a worker may take to finish its item once asked to stop.
        max_restarts: As for :class:`Supervisor`.
        within: As for :class:`Supervisor`.
        backoff: As for :class:`Supervisor`.
        logger: As for :class:`Supervisor`.
        on_event: As for :class:`Supervisor`.

    .. versionadded:: 0.2.0
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if not callable(handler):
        raise TypeError(f"handler must be an async callable, got {handler!r}")
    template = ChildSpec(
        "worker",
        functools.partial(_consume, receive, handler),
        restart=Restart.TRANSIENT,
        shutdown=shutdown,
        significant=True,
    )
    return DynamicSupervisor(
        template,
        initial=[()] * size,
        max_children=size,
        max_restarts=max_restarts,
        within=within,
        backoff=backoff,
        auto_shutdown=AutoShutdown.ALL_SIGNIFICANT,
        name=name,
        logger=logger,
        on_event=on_event,
    )
