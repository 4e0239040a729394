"""Bounded actor mailboxes and the references callers use to reach them.

The supervisor, not the actor body, owns a mailbox: it opens it when it starts the actor,
keeps it (and its queue) across restarts, and closes it when the actor stops for good,
failing every queued and in-flight call with :class:`ActorStopped`.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import Final, Generic, TypeVar, cast

import attrs
import trio
from trio.lowlevel import Abort, RaiseCancelT, Task

from ._calls import CallState, DeadlineTimer, PendingCall
from ._errors import ActorStopped, CallTimeout, MailboxFull
from ._snapshot import MailboxStatistics

__all__ = ["END", "ActorRef", "Mailbox", "Overflow"]

MsgT = TypeVar("MsgT")
ReplyT = TypeVar("ReplyT")

_PENDING = CallState.PENDING
_REPLIED = CallState.REPLIED
_FAILED = CallState.FAILED
_INF = math.inf

# A stop request the actor loop sees through ``get``: finish the current message and stop,
# or first handle everything already queued.
_RUN, _STOP, _DRAIN = 0, 1, 2

#: What ``Mailbox.get`` returns when the actor must stop (any object, None included, may be
#: a message).
END: Final = object()

# Messages handled back to back without the actor parking before ``get`` checkpoints, so a
# busy actor whose handlers never await still lets other tasks run and can be cancelled.
_BURST = 32


class Overflow(enum.Enum):
    """What a send does when the mailbox is full.

    - ``WAIT``: wait for room until the deadline (a call's ``timeout``, a cast's
      ``timeout``); a call then fails with :class:`CallTimeout`, a cast with
      :class:`MailboxFull`. ``cast_nowait`` raises :class:`MailboxFull` at once.
    - ``FAIL``: raise :class:`MailboxFull` at once.
    - ``DROP``: casts are dropped and counted as dead letters, without an error; calls
      raise :class:`MailboxFull` at once (a call needs an answer).

    .. versionadded:: 0.1.0
    """

    WAIT = "wait"
    FAIL = "fail"
    DROP = "drop"


@attrs.define(eq=False)
class Mailbox:
    """The queue of one actor: bounded, with its counters. Reached through an ActorRef."""

    actor_id: str
    capacity: int
    overflow: Overflow
    queue: deque[object] = attrs.field(factory=deque)
    receiver: Task | None = None
    accepting: bool = False
    stop_mode: int = _RUN
    timer: DeadlineTimer | None = None
    owner: object | None = None
    in_flight: PendingCall | None = None
    room: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)
    blocked: int = 0
    burst: int = 0
    peak: int = 0
    accepted: int = 0
    handled: int = 0
    rejected: int = 0
    dropped: int = 0
    expired: int = 0
    late_replies: int = 0
    crashed: int = 0
    discarded: int = 0
    stopped_calls: int = 0

    # -- supervisor side ---------------------------------------------------------------

    def open(self, owner: object, timer: DeadlineTimer) -> None:
        """Accept messages for a new incarnation; the queue is kept."""
        if self.owner is not None and self.owner is not owner:
            raise ValueError(f"actor {self.actor_id!r} is already run by another supervisor")
        self.owner = owner
        self.timer = timer
        self.accepting = True
        self.stop_mode = _RUN

    def request_stop(self, *, drain: bool) -> None:
        """Make the actor's ``get`` end its loop: now, or once the queue is empty.

        A draining mailbox refuses new messages at once.
        """
        if drain:
            self.accepting = False
            self.stop_mode = _DRAIN
        else:
            self.stop_mode = _STOP
        self._wake_receiver()
        if drain:
            self.room.unpark_all()

    def close(self, owner: object) -> None:
        """Stop for good: fail queued and in-flight calls, discard queued casts.

        Only the supervisor running the actor (or any, while none does) may close it.
        """
        if self.owner is not None and self.owner is not owner:
            return
        self.accepting = False
        self.stop_mode = _STOP
        queue = self.queue
        while queue:
            item = queue.popleft()
            if type(item) is PendingCall:
                if item.fail(self._stopped_error()):
                    self.stopped_calls += 1
                else:
                    self.expired += 1
            else:
                self.discarded += 1
        call = self.in_flight
        if call is not None and call.fail(self._stopped_error()):
            self.stopped_calls += 1
        self.in_flight = None
        self.room.unpark_all()
        self.owner = None
        self.timer = None

    def statistics(self) -> MailboxStatistics:
        """A frozen copy of the counters."""
        return MailboxStatistics(
            actor=self.actor_id,
            open=self.accepting,
            capacity=self.capacity,
            queued=len(self.queue),
            peak_queued=self.peak,
            accepted=self.accepted,
            handled=self.handled,
            rejected=self.rejected,
            dropped=self.dropped,
            expired=self.expired,
            late_replies=self.late_replies,
            crashed=self.crashed,
            discarded=self.discarded,
            stopped_calls=self.stopped_calls,
            blocked_senders=self.blocked,
        )

    # -- actor side ----------------------------------------------------------------------

    async def get(self) -> object:
        """The next message for the actor, or :data:`END` when it must stop."""
        while True:
            if self.stop_mode == _STOP:
                return END
            queue = self.queue
            if queue:
                if self.burst >= _BURST:
                    self.burst = 0
                    await trio.lowlevel.checkpoint()
                    continue
                self.burst += 1
                item = queue.popleft()
                if self.blocked:
                    self.room.unpark()
                return item
            if self.stop_mode == _DRAIN:
                return END
            self.burst = 0
            self.receiver = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_get)

    def _abort_get(self, raise_cancel: RaiseCancelT) -> Abort:
        self.receiver = None
        return Abort.SUCCEEDED

    def _wake_receiver(self) -> None:
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            trio.lowlevel.reschedule(receiver)

    # -- sender side ---------------------------------------------------------------------

    def _stopped_error(self) -> ActorStopped:
        return ActorStopped(f"actor {self.actor_id!r} is not running", actor=self.actor_id)

    def _full_error(self) -> MailboxFull:
        return MailboxFull(
            f"mailbox of actor {self.actor_id!r} is full ({self.capacity} messages)",
            actor=self.actor_id,
            capacity=self.capacity,
        )

    def _enqueue(self, item: object) -> None:
        queue = self.queue
        queue.append(item)
        self.accepted += 1
        if len(queue) > self.peak:
            self.peak = len(queue)
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            trio.lowlevel.reschedule(receiver)

    async def wait_for_room(self, deadline: float) -> bool:
        """Wait until there is room or the mailbox closes; false when the deadline passed."""
        with trio.move_on_at(deadline) as scope:
            while self.accepting and len(self.queue) >= self.capacity:
                self.blocked += 1
                try:
                    await self.room.park()
                finally:
                    self.blocked -= 1
        return not scope.cancelled_caught


@attrs.frozen(repr=False)
class ActorRef(Generic[MsgT, ReplyT]):
    """The address of an actor: stays valid across its restarts.

    Get one from :func:`actor_child`. Two refs are equal when they reach the same mailbox.
    ``call`` and ``cast`` are checkpoints; if they raise ``Cancelled`` (or a timeout)
    before the message was enqueued, it was not enqueued.

    .. versionadded:: 0.1.0
    """

    _mailbox: Mailbox

    @property
    def id(self) -> str:
        """The actor's id (its child id in the supervisor)."""
        return self._mailbox.actor_id

    def __repr__(self) -> str:
        return f"<ActorRef {self._mailbox.actor_id!r}>"

    def statistics(self) -> MailboxStatistics:
        """A frozen copy of the mailbox counters."""
        return self._mailbox.statistics()

    # The timeout is part of the message (the actor skips expired calls), so it cannot be
    # left to an enclosing trio.fail_after.
    async def call(self, msg: MsgT, *, timeout: float | None = 5.0) -> ReplyT:  # noqa: ASYNC109
        """Send ``msg`` and wait for the actor's reply.

        ``timeout`` seconds (``None``: no limit) form one absolute deadline covering
        enqueueing, queue wait, handling and the reply; the actor skips calls whose deadline
        passed before it got to them, and a reply that comes too late is counted as a dead
        letter. If the handler raises, the exception is raised here.

        Raises:
            CallTimeout: The deadline passed.
            ActorStopped: The actor is not running, or stopped for good before replying.
            MailboxFull: The mailbox was full and its policy is ``FAIL`` or ``DROP``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        mailbox = self._mailbox
        if not mailbox.accepting:
            raise mailbox._stopped_error()
        if timeout is None:
            deadline = _INF
        else:
            deadline = trio.current_time() + timeout
            if timeout <= 0:
                raise self._timeout_error(timeout)
        call = PendingCall(msg, deadline, trio.lowlevel.current_task())
        if len(mailbox.queue) >= mailbox.capacity:
            if mailbox.overflow is not Overflow.WAIT:
                mailbox.rejected += 1
                raise mailbox._full_error()
            if not await mailbox.wait_for_room(deadline):
                raise self._timeout_error(timeout)
            if not mailbox.accepting:
                raise mailbox._stopped_error()
        mailbox._enqueue(call)
        if deadline != _INF:
            timer = mailbox.timer
            if timer is not None:
                timer.add(call)
        await trio.lowlevel.wait_task_rescheduled(call.abort)
        state = call.state
        if state is _REPLIED:
            return cast("ReplyT", call.value)
        if state is _FAILED:
            error = call.error
            call.error = None
            assert error is not None
            raise error
        raise self._timeout_error(timeout)

    async def cast(self, msg: MsgT, *, timeout: float | None = 5.0) -> None:  # noqa: ASYNC109
        """Send ``msg`` without waiting for it to be handled.

        Under the ``WAIT`` policy a full mailbox makes this wait up to ``timeout`` seconds
        (``None``: no limit) for room; under ``DROP`` the message is dropped and counted.

        Raises:
            ActorStopped: The actor is not running.
            MailboxFull: No room within the policy (or within ``timeout`` under ``WAIT``).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        mailbox = self._mailbox
        if not mailbox.accepting:
            raise mailbox._stopped_error()
        if len(mailbox.queue) >= mailbox.capacity:
            policy = mailbox.overflow
            if policy is Overflow.WAIT:
                deadline = _INF if timeout is None else trio.current_time() + timeout
                if not await mailbox.wait_for_room(deadline):
                    mailbox.rejected += 1
                    raise mailbox._full_error()
                if not mailbox.accepting:
                    raise mailbox._stopped_error()
            else:
                mailbox.rejected += 1
                if policy is Overflow.DROP:
                    mailbox.dropped += 1
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                raise mailbox._full_error()
        mailbox._enqueue(msg)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def cast_nowait(self, msg: MsgT) -> None:
        """Enqueue ``msg`` now, without a checkpoint; never waits.

        A full mailbox raises :class:`MailboxFull`, except under ``DROP``, where the
        message is dropped and counted.

        Raises:
            ActorStopped: The actor is not running.
            MailboxFull: The mailbox is full (policy ``WAIT`` or ``FAIL``).
        """
        mailbox = self._mailbox
        if not mailbox.accepting:
            raise mailbox._stopped_error()
        if len(mailbox.queue) >= mailbox.capacity:
            mailbox.rejected += 1
            if mailbox.overflow is Overflow.DROP:
                mailbox.dropped += 1
                return
            raise mailbox._full_error()
        mailbox._enqueue(msg)

    def _timeout_error(self, timeout: float | None) -> CallTimeout:
        return CallTimeout(
            f"call to actor {self._mailbox.actor_id!r} got no reply within {timeout} s",
            actor=self._mailbox.actor_id,
            timeout=timeout,
        )
