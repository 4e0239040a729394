"""The errors of the supervision runtime.

Operational failures share one root, :class:`SupervisionError`::

    SupervisionError
    ├── RestartIntensityExceeded   (a supervisor gave up; ``__cause__`` is the real failure)
    ├── ChildStartError            (a child failed before it reported ``started``)
    ├── TooManyChildren            (``max_children`` reached)
    ├── ActorStopped               (the actor is not running and will not answer)
    ├── MailboxFull                (the mailbox had no room within the overflow policy)
    └── CallTimeout                (also a ``trio.TooSlowError``: the call's deadline passed)

Misuse errors subclass the builtin they resemble: :class:`DuplicateChild` and
:class:`InvalidChildSpec` (``ValueError``), :class:`ChildNotFound` (``LookupError``),
:class:`ChildRunning` and :class:`SupervisorNotRunning` (``RuntimeError``).

Every error can be built from a message alone; the context is keyword-only.
"""

from __future__ import annotations

import trio

__all__ = [
    "ActorStopped",
    "CallTimeout",
    "ChildNotFound",
    "ChildRunning",
    "ChildStartError",
    "DuplicateChild",
    "InvalidChildSpec",
    "MailboxFull",
    "RestartIntensityExceeded",
    "SupervisionError",
    "SupervisorNotRunning",
    "TooManyChildren",
]


class SupervisionError(Exception):
    """Root of the operational errors raised by :mod:`cloudkit_trio.actors`.

    .. versionadded:: 0.1.0
    """


class RestartIntensityExceeded(SupervisionError):
    """A supervisor saw more than ``max_restarts`` restarts within ``within`` seconds.

    It has already stopped all its children, in reverse start order, when this is raised
    into its parent. ``__cause__`` is the real failure that tipped it over: the exception
    of the worker that failed, also when that worker sits in a nested supervisor that gave
    up first (or failed to start again): the nested supervisor's own
    ``RestartIntensityExceeded`` (or ``ChildStartError``) is not the cause, it is named in
    ``child_path`` and in the message. ``__cause__`` is ``None`` when a permanent child
    returned normally once too often.

    Attributes:
        supervisor: The name of the supervisor that gave up.
        child_id: Its child whose end used up the intensity.
        child_path: The child ids from that supervisor down to the child whose exception
            is ``__cause__``: ``("worker",)`` for a direct child, ``("jobs", "worker")``
            when the nested supervisor ``jobs`` gave up because of its child ``worker``.
            Empty for an error built by hand.
        max_restarts: The supervisor's intensity limit.
        within: Its intensity window in seconds.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``child_path``; ``__cause__`` skips the nested supervisors' own errors.
    """

    def __init__(
        self,
        message: str,
        *,
        supervisor: str | None = None,
        child_id: str | None = None,
        max_restarts: int | None = None,
        within: float | None = None,
        child_path: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child_id = child_id
        self.max_restarts = max_restarts
        self.within = within
        self.child_path = child_path


class ChildStartError(SupervisionError):
    """A child raised, or returned, before it called ``task_status.started()``.

    ``child_id`` names it; ``__cause__`` is what it raised.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, child_id: str | None = None, supervisor: str | None = None
    ) -> None:
        super().__init__(message)
        self.child_id = child_id
        self.supervisor = supervisor


class TooManyChildren(SupervisionError):
    """``start_child`` would exceed the supervisor's ``max_children``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, supervisor: str | None = None, max_children: int | None = None
    ) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.max_children = max_children


class ActorStopped(SupervisionError):
    """The actor is not running and no incarnation will answer this message.

    Raised for messages sent before the actor started or after it stopped for good, and
    for every queued or in-flight call when it stops for good. While an actor is merely
    restarting its mailbox stays open and calls wait for the next incarnation instead.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, actor: str | None = None) -> None:
        super().__init__(message)
        self.actor = actor


class MailboxFull(SupervisionError):
    """The mailbox had no room, and the actor's overflow policy refused to wait for it.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, actor: str | None = None, capacity: int | None = None
    ) -> None:
        super().__init__(message)
        self.actor = actor
        self.capacity = capacity


class CallTimeout(SupervisionError, trio.TooSlowError):
    """A call's deadline passed before its reply arrived.

    The deadline covers enqueueing, waiting in the queue, handling and the reply. A reply
    that arrives later is counted as a dead letter; the actor is not affected.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, actor: str | None = None, timeout: float | None = None):
        super().__init__(message)
        self.actor = actor
        self.timeout = timeout


class DuplicateChild(ValueError):
    """A child with this id is already in the supervisor.

    .. versionadded:: 0.1.0
    """


class InvalidChildSpec(ValueError):
    """A child spec the supervisor cannot take, whatever its other fields say.

    Raised by :class:`ChildSpec` for a significant child that is ``PERMANENT`` (a child
    that is always restarted never ends on its own, so it cannot end the supervisor), and
    by :class:`Supervisor` and ``start_child`` for a significant child under
    ``auto_shutdown=AutoShutdown.NEVER``, as OTP rejects both.

    .. versionadded:: 0.2.0
    """


class ChildNotFound(LookupError):
    """No child with this id is in the supervisor.

    .. versionadded:: 0.1.0
    """


class ChildRunning(RuntimeError):
    """The operation needs a stopped child (``restart_child``, ``delete_child``).

    .. versionadded:: 0.1.0
    """


class SupervisorNotRunning(RuntimeError):
    """The supervisor behind this handle is not running, so it cannot take the command.

    .. versionadded:: 0.1.0
    """
