"""The errors of the supervision runtime.

Operational failures share one root, :class:`SupervisionError`::

    SupervisionError
    ├── RestartIntensityExceeded   (a supervisor gave up; ``__cause__`` is the last failure)
    ├── ChildStartError            (a child failed before it reported ``started``)
    ├── TooManyChildren            (``max_children`` reached)
    ├── ActorStopped               (the actor is not running and will not answer)
    ├── MailboxFull                (the mailbox had no room within the overflow policy)
    └── CallTimeout                (also a ``trio.TooSlowError``: the call's deadline passed)

Misuse errors subclass the builtin they resemble: :class:`DuplicateChild` (``ValueError``),
:class:`ChildNotFound` (``LookupError``), :class:`ChildRunning` and
:class:`SupervisorNotRunning` (``RuntimeError``).

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
    into its parent. ``__cause__`` is the failure that tipped it over (``None`` when a
    permanent child returned normally once too often).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        supervisor: str | None = None,
        child_id: str | None = None,
        max_restarts: int | None = None,
        within: float | None = None,
    ) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child_id = child_id
        self.max_restarts = max_restarts
        self.within = within


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
