"""Introspection records: frozen copies of a supervision tree's state and of its events."""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from typing import Any, TypeAlias

import attrs

from ._spec import AutoShutdown, ChildKind, Restart, Strategy

__all__ = [
    "ChildCounts",
    "ChildInfo",
    "ChildState",
    "Children",
    "EventHook",
    "EventKind",
    "FailureInfo",
    "MailboxStatistics",
    "SupervisorEvent",
    "SupervisorSnapshot",
    "describe_failure",
]


class ChildState(enum.Enum):
    """Where a child is in its life.

    - ``STARTING``: its target runs but has not called ``task_status.started()`` yet.
    - ``RUNNING``: started and not asked to stop.
    - ``STOPPING``: the supervisor is stopping it (graceful request, then cancel).
    - ``RESTARTING``: it ended and waits to be started again (restart backoff).
    - ``STOPPED``: not running and not going to be restarted on its own (a transient child
      that returned, or one stopped with ``terminate_child``).
    - ``IGNORED``: its target declined to start (it returned :data:`IGNORE`); the spec is
      kept, nothing runs, and only ``restart_child`` tries again.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``IGNORED``.
    """

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    IGNORED = "ignored"


@attrs.frozen
class FailureInfo:
    """A failure as a value: the exception's type name and message, never the live object.

    ``str()`` gives ``"TypeName: message"`` (or the type name alone).

    Attributes:
        type_name: The exception's class name, e.g. ``"ConnectionError"`` (for a group,
            ``"ExceptionGroup"``).
        message: ``str()`` of the exception, cut to 200 characters (ending in ``...``), or
            ``"<unprintable message>"`` when its ``__str__`` raised.
        at: ``trio.current_time()`` when the supervisor saw the failure.

    .. versionadded:: 0.1.0
    """

    type_name: str
    message: str
    at: float

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


def describe_failure(error: BaseException, at: float) -> FailureInfo:
    """Freeze ``error`` into a :class:`FailureInfo`, shortening long messages."""
    try:
        message = str(error)
    except Exception:  # a child's exception whose __str__ raises must not stop the tree
        message = "<unprintable message>"
    if len(message) > 200:
        message = message[:197] + "..."
    return FailureInfo(type(error).__name__, message, at)


@attrs.frozen
class MailboxStatistics:
    """A copy of an actor mailbox's counters.

    ``dead_letters`` counts every message that reached nobody: ``expired`` calls,
    ``late_replies``, casts ``dropped`` by the overflow policy, the message whose handling
    crashed the actor (``crashed``), and casts still queued when the actor stopped for good
    (``discarded``). Calls failed with ``ActorStopped`` are not dead letters: their callers
    got an answer.

    Attributes:
        actor: The actor's id.
        open: Whether the mailbox accepts messages (false before start and after a final
            stop).
        capacity: Most messages the mailbox holds.
        queued: Messages waiting now.
        peak_queued: Highest ``queued`` seen.
        accepted: Messages taken in so far.
        handled: Messages an actor finished handling (replied calls and casts).
        rejected: Sends refused for lack of room (``MailboxFull`` raised or cast dropped).
        dropped: Casts dropped by the ``DROP`` policy.
        expired: Calls skipped because their caller's deadline passed or it gave up.
        late_replies: Replies that found their caller gone.
        crashed: Messages whose handling crashed the actor.
        discarded: Casts thrown away when the actor stopped for good.
        stopped_calls: Calls failed with ``ActorStopped``.
        blocked_senders: Senders waiting for room now.

    .. versionadded:: 0.1.0
    """

    actor: str
    open: bool
    capacity: int
    queued: int
    peak_queued: int
    accepted: int
    handled: int
    rejected: int
    dropped: int
    expired: int
    late_replies: int
    crashed: int
    discarded: int
    stopped_calls: int
    blocked_senders: int

    @property
    def dead_letters(self) -> int:
        """Messages that reached nobody (see the class docstring)."""
        return self.dropped + self.expired + self.late_replies + self.crashed + self.discarded


@attrs.frozen
class ChildInfo:
    """One child of a supervisor, as :meth:`SupervisorHandle.which_children` sees it.

    Attributes:
        id: The child's id.
        state: Where it is in its life.
        restart: Its restart type.
        restarts: How many times the supervisor started it again after a failure or exit
            (including restarts caused by a sibling under ``ONE_FOR_ALL``/``REST_FOR_ONE``).
        last_failure: The last exception it ended with, frozen; ``None`` if it never failed.
        started_at: ``trio.current_time()`` of its latest start, or ``None``.
        mailbox: Mailbox counters when the child is an actor.
        subtree: The snapshot of a nested supervisor (only filled by ``snapshot()``).
        kind: Worker or supervisor (see :class:`ChildKind`).
        significant: Whether it is a significant child (see :class:`AutoShutdown`).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``kind`` and ``significant``.
    """

    id: str
    state: ChildState
    restart: Restart
    restarts: int
    last_failure: FailureInfo | None = None
    started_at: float | None = None
    mailbox: MailboxStatistics | None = None
    subtree: SupervisorSnapshot | None = None
    kind: ChildKind = ChildKind.WORKER
    significant: bool = False


@attrs.frozen
class ChildCounts:
    """How many children a supervisor holds, as OTP's ``count_children`` counts them.

    Attributes:
        specs: Child specs it holds, whatever their state.
        active: Children with an incarnation alive now (starting, running or stopping).
        supervisors: Specs whose kind is ``SUPERVISOR``, running or not.
        workers: Specs whose kind is ``WORKER``, running or not.

    .. versionadded:: 0.2.0
    """

    specs: int
    active: int
    supervisors: int
    workers: int


class Children(tuple[ChildInfo, ...]):
    """The children of a supervisor in start order, as returned by ``which_children()``.

    A plain tuple of :class:`ChildInfo`. It can also be awaited (it returns itself, without
    a checkpoint), so code written in OTP's call style, ``await sup.which_children()``,
    works too.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, Children]:
        return self
        yield  # pragma: no cover - makes this a generator; never reached

    def by_id(self, child_id: str) -> ChildInfo:
        """The record for ``child_id``; ``KeyError`` if there is none."""
        for info in self:
            if info.id == child_id:
                return info
        raise KeyError(child_id)


@attrs.frozen
class SupervisorSnapshot:
    """A whole (sub)tree at one moment: the supervisor, its children, nested supervisors.

    Attributes:
        name: The supervisor's name.
        running: Whether its ``run`` is active.
        strategy: Its restart strategy.
        max_restarts: Its intensity limit.
        within: Its intensity window in seconds.
        recent_restarts: Restarts counted in the current window.
        children: Its children in start order; a nested supervisor's ``subtree`` is filled.
        logger_failures: Calls of its logger that raised, since it was created; the
            supervisor carried on without that log line.
        hook_failures: Calls of its ``on_event`` hook, or of its restart backoff's random
            source, that raised (or returned a coroutine), since it was created; the
            supervisor carried on (without jitter, for the random source).
        auto_shutdown: Its :class:`AutoShutdown` setting.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``auto_shutdown``.
    """

    name: str
    running: bool
    strategy: Strategy
    max_restarts: int
    within: float
    recent_restarts: int
    children: tuple[ChildInfo, ...]
    logger_failures: int = 0
    hook_failures: int = 0
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER

    def walk(self) -> Generator[tuple[tuple[str, ...], ChildInfo], None, None]:
        """Yield ``(path, child)`` for every child in the tree, depth first, in start order.

        ``path`` is a tuple of child ids from this supervisor down to the child, the child
        included: ``("a",)`` for a child of this supervisor, ``("jobs", "job-2")`` for the
        child ``job-2`` of the nested supervisor ``jobs``. ``"/".join(path)`` is the
        usual way to print it (ids may contain ``"/"``; the tuple stays exact). Members
        of a :class:`DynamicSupervisor` appear under their own ids here; events name
        them by the template's id instead (see :attr:`SupervisorEvent.child_path`).
        """
        for child in self.children:
            yield (child.id,), child
            if child.subtree is not None:
                for path, grandchild in child.subtree.walk():
                    yield (child.id, *path), grandchild


class EventKind(enum.Enum):
    """What a :class:`SupervisorEvent` reports.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``CHILD_IGNORED`` and ``AUTO_SHUTDOWN``.
    """

    SUPERVISOR_STARTED = "supervisor_started"
    SUPERVISOR_STOPPED = "supervisor_stopped"
    CHILD_STARTED = "child_started"
    #: Ended on its own by returning (not asked to).
    CHILD_EXITED = "child_exited"
    #: Ended on its own by raising.
    CHILD_FAILED = "child_failed"
    #: A restart was decided; ``delay`` says when it happens.
    CHILD_RESTARTING = "child_restarting"
    #: Stopped by the supervisor.
    CHILD_STOPPED = "child_stopped"
    #: Did not stop within its ``shutdown`` budget after the graceful request: cancelled.
    SHUTDOWN_TIMEOUT = "shutdown_timeout"
    #: Still running after being cancelled: shutdown moves on without it.
    CHILD_UNRESPONSIVE = "child_unresponsive"
    START_FAILED = "start_failed"
    INTENSITY_EXCEEDED = "intensity_exceeded"
    #: Its target declined to start (returned ``IGNORE``); it is not run or restarted.
    CHILD_IGNORED = "child_ignored"
    #: Significant children ended (see :class:`AutoShutdown`): the supervisor stops its
    #: children and returns normally. ``child_id`` is the child whose end triggered it.
    AUTO_SHUTDOWN = "auto_shutdown"


@attrs.frozen
class SupervisorEvent:
    """A frozen record of one supervision event, handed to the ``on_event`` hooks.

    An event reaches the hook of the supervisor it happened in *and the hook of every
    supervisor above it* in the tree, so one hook on the root sees the restarts of every
    nested supervisor. ``path`` then says where it happened, relative to the supervisor
    whose hook receives it: each hook gets its own copy of the record.

    Attributes:
        kind: What happened.
        supervisor: The name of the supervisor it happened in.
        child_id: The child concerned, if any.
        at: ``trio.current_time()`` when it happened.
        restarts: The child's restart count when the event happened (a ``CHILD_RESTARTING``
            event comes before the restart it announces is counted).
        failure: The exception involved, frozen.
        delay: For ``CHILD_RESTARTING``: seconds until the restart.
        path: Where the supervisor it happened in sits, as a tuple of child ids from the
            hook's supervisor down to it: ``()`` for the hook's own supervisor,
            ``("jobs",)`` for its child supervisor ``jobs``. A supervisor running inside
            a member of a :class:`DynamicSupervisor` is placed under the template's id,
            not the member's, so paths stay few.
        child_label: The name of the child for metric labels: ``child_id``, except for a
            member of a :class:`DynamicSupervisor`, whose ids grow without bound: for
            those it is the template's id. ``None`` when no child is concerned.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``path``, ``child_label`` and ``child_path``; events of nested supervisors reach
       the hooks above them.
    """

    kind: EventKind
    supervisor: str
    child_id: str | None
    at: float
    restarts: int = 0
    failure: FailureInfo | None = None
    delay: float | None = None
    path: tuple[str, ...] = ()
    child_label: str | None = None

    @property
    def child_path(self) -> tuple[str, ...]:
        """``path`` plus ``child_label``: a bounded name for the child, e.g. for metrics.

        ``"/".join(event.child_path)`` is a label whose values are bounded by the tree's
        shape: ``"jobs/fetcher"`` for every member of the pool ``jobs`` whose template is
        ``fetcher``. For an event without a child it is ``path``.
        """
        if self.child_label is None:
            return self.path
        return (*self.path, self.child_label)


#: Receives every :class:`SupervisorEvent` of its supervisor's subtree; must not block.
#: Exceptions it raises are logged and counted in :attr:`SupervisorSnapshot.hook_failures`
#: of the supervisor that owns the hook, and otherwise ignored.
EventHook: TypeAlias = Callable[[SupervisorEvent], None]
