"""Actors: a message handler run by a supervisor, reached through an ActorRef."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Generic, NamedTuple, TypeVar

import attrs
import trio

from ._calls import CallState, DeadlineTimer, PendingCall
from ._errors import ActorStopped
from ._mailbox import END, ActorRef, Mailbox, Overflow
from ._spec import ChildSpec, Restart

if TYPE_CHECKING:
    from ._snapshot import MailboxStatistics

__all__ = ["Actor", "ActorContext", "ActorSpec", "actor_child"]

MsgT = TypeVar("MsgT")
ReplyT = TypeVar("ReplyT")

_PENDING = CallState.PENDING
_INF = float("inf")


@attrs.frozen(repr=False)
class ActorContext(Generic[MsgT, ReplyT]):
    """What an actor gets in :meth:`Actor.on_start`.

    Attributes:
        id: The actor's id.
        ref: Its own reference (to hand to others, or to cast to itself from a timer).
        nursery: A nursery that lives as long as this incarnation, for background tasks;
            a background task that raises crashes the actor.

    .. versionadded:: 0.1.0
    """

    id: str
    ref: ActorRef[MsgT, ReplyT]
    nursery: trio.Nursery
    _mailbox: Mailbox

    def __repr__(self) -> str:
        return f"<ActorContext {self.id!r}>"

    def stop(self) -> None:
        """End this incarnation normally after the current message.

        What follows is the supervisor's restart rule for a normal exit: a permanent actor
        is started again (its queue is kept), a transient one stays stopped and a temporary
        one is removed; in both last cases its queued calls fail with ``ActorStopped``.
        """
        self._mailbox.request_stop(drain=False)


class Actor(Generic[MsgT, ReplyT]):
    """Base class for actors: override the handlers you need.

    An actor handles one message at a time, in arrival order, so its state needs no lock.
    The supervisor creates a fresh instance for each incarnation (from the factory given
    to :func:`actor_child`); the mailbox and every :class:`ActorRef` survive restarts.

    - :meth:`handle_call` answers :meth:`ActorRef.call`; its return value is the reply.
      If it raises, the caller gets the exception **and the actor crashes** (as in OTP),
      unless the exception is an instance of one of :attr:`reply_errors`: those are
      answers, raised at the caller while the actor carries on.
    - :meth:`handle_cast` handles :meth:`ActorRef.cast`; if it raises, the actor crashes.
    - :meth:`on_start` runs before the actor reports itself started; raising fails the
      start. :meth:`on_stop` runs after a graceful stop (after the queue was drained when
      the stop is final), not after a crash or cancellation.

    The message being handled when the actor crashes is not delivered again; it counts as
    a dead letter.

    .. versionadded:: 0.1.0
    """

    #: Exception types that :meth:`handle_call` raises as answers (they do not crash the
    #: actor). Casts have no caller to answer: any exception crashes the actor.
    reply_errors: ClassVar[tuple[type[Exception], ...]] = ()

    async def on_start(self, ctx: ActorContext[MsgT, ReplyT]) -> None:
        """Initialise the incarnation; keep ``ctx`` if you need the ref or the nursery."""
        return None

    async def handle_call(self, msg: MsgT) -> ReplyT:
        """Answer a call."""
        raise TypeError(f"{type(self).__name__} does not handle calls (got {msg!r})")

    async def handle_cast(self, msg: MsgT) -> None:
        """Handle a cast."""
        raise TypeError(f"{type(self).__name__} does not handle casts (got {msg!r})")

    async def on_stop(self) -> None:
        """Clean up after a graceful stop; bounded by the child's ``shutdown`` budget."""
        return None


class ActorSpec(NamedTuple, Generic[MsgT, ReplyT]):
    """A child spec for an actor plus the ref that reaches it; unpacks as ``spec, ref``.

    .. versionadded:: 0.1.0
    """

    spec: ChildSpec
    ref: ActorRef[MsgT, ReplyT]


@attrs.define(eq=False, repr=False)
class _ActorRunner(Generic[MsgT, ReplyT]):
    """The child target of an actor; the supervisor manages its mailbox through it."""

    mailbox: Mailbox
    ref: ActorRef[MsgT, ReplyT]
    factory: Callable[[], Actor[MsgT, ReplyT]]

    def __repr__(self) -> str:
        return f"<actor {self.mailbox.actor_id!r}>"

    def supervised_open(self, owner: object, timer: DeadlineTimer) -> None:
        self.mailbox.open(owner, timer)

    def supervised_stop(self, *, final: bool) -> bool:
        self.mailbox.request_stop(drain=final)
        return True

    def supervised_close(self, owner: object) -> None:
        self.mailbox.close(owner)

    def supervised_statistics(self) -> MailboxStatistics:
        return self.mailbox.statistics()

    async def __call__(
        self, *, task_status: trio.TaskStatus[ActorRef[MsgT, ReplyT]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        mailbox = self.mailbox
        actor = self.factory()
        error: Exception | None = None
        # Handler and start errors are caught inside the nursery and raised after it, so
        # the supervisor sees the exception itself rather than a one-member group.
        async with trio.open_nursery() as nursery:
            try:
                await actor.on_start(ActorContext(mailbox.actor_id, self.ref, nursery, mailbox))
            except Exception as exc:
                error = exc
            else:
                task_status.started(self.ref)
                error = await _serve(actor, mailbox)
                if error is None:
                    try:
                        await actor.on_stop()
                    except Exception as exc:
                        error = exc
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error


async def _serve(actor: Actor[MsgT, ReplyT], mailbox: Mailbox) -> Exception | None:
    """Handle messages until a stop request; return the exception that crashed the actor."""
    handle_call = actor.handle_call
    handle_cast = actor.handle_cast
    reply_errors = actor.reply_errors
    get = mailbox.get
    current_time = trio.current_time
    try:
        while True:
            item = await get()
            if item is END:
                return None
            if type(item) is PendingCall:
                if item.state is not _PENDING or (
                    item.deadline != _INF and item.deadline <= current_time()
                ):
                    item.expire()
                    mailbox.expired += 1
                    continue
                mailbox.in_flight = item
                try:
                    reply = await handle_call(item.msg)  # type: ignore[arg-type]
                except reply_errors as exc:
                    mailbox.in_flight = None
                    mailbox.handled += 1
                    if not item.fail(exc):
                        mailbox.late_replies += 1
                    continue
                except Exception as exc:
                    mailbox.in_flight = None
                    mailbox.crashed += 1
                    item.fail(exc)
                    return exc
                mailbox.in_flight = None
                mailbox.handled += 1
                if not item.reply(reply):
                    mailbox.late_replies += 1
            else:
                try:
                    await handle_cast(item)  # type: ignore[arg-type]
                except Exception as exc:
                    mailbox.crashed += 1
                    return exc
                mailbox.handled += 1
    finally:
        # Cancelled (stopped or restarted by the supervisor) in the middle of a call: that
        # call is not delivered again, and its caller must not wait for it.
        call = mailbox.in_flight
        if call is not None:
            mailbox.in_flight = None
            if call.fail(
                ActorStopped(
                    f"actor {mailbox.actor_id!r} stopped while handling the call",
                    actor=mailbox.actor_id,
                )
            ):
                mailbox.stopped_calls += 1


def actor_child(
    id: str,
    factory: Callable[[], Actor[MsgT, ReplyT]],
    *,
    capacity: int = 64,
    overflow: Overflow = Overflow.WAIT,
    restart: Restart = Restart.PERMANENT,
    shutdown: float | None = 5.0,
) -> ActorSpec[MsgT, ReplyT]:
    """Make the child spec for an actor, and the ref that reaches it.

    ::

        counter = actor_child("counter", Counter, capacity=128)
        async with Supervisor([counter.spec]):
            await counter.ref.call(Increment(1))

    The ref works as soon as the supervisor has started the actor, keeps working across
    restarts, and raises :class:`ActorStopped` while the actor is stopped for good. Pass the
    spec to one supervisor only.

    Args:
        id: The child id, also the actor's name in errors and statistics.
        factory: Builds a fresh :class:`Actor` for each incarnation (a class works).
        capacity: Most messages the mailbox queues (at least 1).
        overflow: What a send does when the mailbox is full.
        restart: The child's restart type.
        shutdown: Seconds a graceful stop may take (drain, ``on_stop``) before the actor is
            cancelled; ``None`` for no limit.

    .. versionadded:: 0.1.0
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
    if not isinstance(overflow, Overflow):
        raise TypeError(f"overflow must be an Overflow, got {overflow!r}")
    if not callable(factory):
        raise TypeError(f"factory must build an Actor, got {factory!r}")
    mailbox = Mailbox(id, capacity, overflow)
    ref: ActorRef[MsgT, ReplyT] = ActorRef(mailbox)
    runner = _ActorRunner(mailbox, ref, factory)
    return ActorSpec(ChildSpec(id, runner, restart=restart, shutdown=shutdown), ref)
