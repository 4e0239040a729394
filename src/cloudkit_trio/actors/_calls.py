"""One-shot reply slots for calls, and the timer that enforces their deadlines.

A caller parks on its own :class:`PendingCall` with ``wait_task_rescheduled`` instead of a
reply channel: whoever settles the call first (the actor's reply, the deadline timer, the
caller's own cancellation, or a final stop) wins; later settlements find it already settled
and count as dead letters. No per-call channel or cancel scope is created: a cancel scope
costs more than the whole message hop, so deadlines are kept in one heap per supervisor.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math

import attrs
import trio
from trio.lowlevel import Abort, RaiseCancelT, Task

__all__ = ["CallState", "DeadlineTimer", "PendingCall"]


class CallState(enum.IntEnum):
    """Life of a :class:`PendingCall`; only ``PENDING`` can change."""

    PENDING = 0
    REPLIED = 1
    FAILED = 2
    TIMED_OUT = 3
    ABANDONED = 4


_PENDING = CallState.PENDING


@attrs.define(eq=False)
class PendingCall:
    """A call in flight: the message, its absolute deadline and the parked caller."""

    msg: object
    deadline: float
    task: Task
    state: CallState = _PENDING
    value: object = None
    error: BaseException | None = None
    timer: DeadlineTimer | None = None

    def reply(self, value: object) -> bool:
        """Hand ``value`` to the caller; false if the caller is already gone."""
        if self.state is not _PENDING:
            return False
        self.value = value
        self.state = CallState.REPLIED
        self._settled()
        trio.lowlevel.reschedule(self.task)
        return True

    def fail(self, error: BaseException) -> bool:
        """Make the caller raise ``error``; false if the caller is already gone."""
        if self.state is not _PENDING:
            return False
        self.error = error
        self.state = CallState.FAILED
        self._settled()
        trio.lowlevel.reschedule(self.task)
        return True

    def expire(self) -> None:
        """The deadline passed: wake the caller with a timeout."""
        if self.state is _PENDING:
            self.state = CallState.TIMED_OUT
            self._settled()
            trio.lowlevel.reschedule(self.task)

    def abort(self, raise_cancel: RaiseCancelT) -> Abort:
        """``wait_task_rescheduled`` abort hook: the caller was cancelled."""
        # Trio only calls this while the caller is parked, i.e. before any settlement.
        self.state = CallState.ABANDONED
        self._settled()
        return Abort.SUCCEEDED

    def _settled(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.live -= 1


@attrs.define(eq=False)
class DeadlineTimer:
    """Wakes callers whose deadline passed; one per running supervisor.

    Settled calls stay in the heap until they reach its top or until the heap holds
    mostly settled entries, when it is rebuilt: that keeps an ``add`` at one heap push
    while bounding memory by a small multiple of the calls actually waiting.
    """

    heap: list[tuple[float, int, PendingCall]] = attrs.field(factory=list)
    live: int = 0
    _armed: float = math.inf
    _scope: trio.CancelScope | None = None
    _seq: itertools.count[int] = attrs.field(factory=itertools.count)

    def add(self, call: PendingCall) -> None:
        """Watch ``call``'s (finite) deadline."""
        call.timer = self
        self.live += 1
        heap = self.heap
        heapq.heappush(heap, (call.deadline, next(self._seq), call))
        if call.deadline < self._armed:
            self._armed = call.deadline
            if self._scope is not None:
                self._scope.deadline = call.deadline
        elif len(heap) > 64 and len(heap) > 4 * self.live:
            self._compact()

    def _compact(self) -> None:
        self.heap = [entry for entry in self.heap if entry[2].state is _PENDING]
        heapq.heapify(self.heap)

    async def run(self) -> None:
        """Expire calls as their deadlines pass, until cancelled."""
        while True:
            now = trio.current_time()
            heap = self.heap
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2].expire()
            self._armed = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._armed) as self._scope:
                await trio.sleep_forever()
            self._scope = None
