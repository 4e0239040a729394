"""A supervisor's bookkeeping for one child: state, incarnation, exit, status object."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs
import trio

from ._snapshot import ChildState, FailureInfo
from ._spec import ChildSpec

if TYPE_CHECKING:
    from ._calls import DeadlineTimer
    from ._snapshot import MailboxStatistics

__all__ = ["Child", "ChildStatus", "Exit", "ExitKind", "ManagedTarget"]


@runtime_checkable
class ManagedTarget(Protocol):
    """A target that owns something the supervisor must manage across incarnations.

    Actors implement it: their mailbox opens before each start, receives the stop request,
    and closes when the child stops for good.
    """

    def supervised_open(self, owner: object, timer: DeadlineTimer) -> None: ...

    def supervised_stop(self, *, final: bool) -> bool: ...

    def supervised_close(self, owner: object) -> None: ...

    def supervised_statistics(self) -> MailboxStatistics: ...


class ExitKind(enum.Enum):
    """How one incarnation of a child ended."""

    RETURNED = "returned"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: KeyboardInterrupt or SystemExit: never a crash, never restarted.
    FATAL = "fatal"
    #: Returned ``IGNORE`` without calling ``started()``: declined to start.
    IGNORED = "ignored"


@attrs.frozen
class Exit:
    """The end of one incarnation."""

    kind: ExitKind
    error: BaseException | None
    incarnation: int


@attrs.define(eq=False)
class Child:
    """Mutable state of one child, owned by the supervisor's control task."""

    spec: ChildSpec
    managed: ManagedTarget | None
    #: Its name in events and in its descendants' paths: the id, or a pool's template id.
    label: str
    state: ChildState = ChildState.STOPPED
    restarts: int = 0
    last_failure: FailureInfo | None = None
    started_at: float | None = None
    value: object = None
    incarnation: int = 0
    #: The latest incarnation whose exit has been dealt with.
    handled: int = 0
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None
    exit: Exit | None = None
    restart_due: float = math.inf
    #: Consecutive restarts, for the backoff.
    consecutive: int = 0
    removed: bool = False

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def alive(self) -> bool:
        """Whether an incarnation runs (or is being started or stopped)."""
        return self.state in (ChildState.STARTING, ChildState.RUNNING, ChildState.STOPPING)


class ChildStatus(trio.TaskStatus[object]):
    """The ``task_status`` a supervisor hands to a child's target.

    The supervisor starts each child with ``start_soon`` from its own control task and
    waits on this object, rather than using ``nursery.start``: the child runs in the
    supervisor's nursery from its first instruction, so no task ever moves between
    nurseries mid-start.
    """

    __slots__ = ("_started", "called", "value")

    def __init__(self, started: trio.Event) -> None:
        self._started = started
        self.called = False
        self.value: object = None

    def started(self, value: object = None) -> None:
        if self.called:
            raise RuntimeError("called 'started' twice on the same task status")
        self.called = True
        self.value = value
        self._started.set()

    def __repr__(self) -> str:
        return f"<ChildStatus called={self.called}>"
