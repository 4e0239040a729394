"""What a supervisor is told about its children: strategies, restart types, child specs."""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, runtime_checkable

import attrs
import trio

__all__ = [
    "ChildSpec",
    "ChildTarget",
    "Restart",
    "StopSignal",
    "Stoppable",
    "Strategy",
    "check_duration",
]

#: A child's body: called as ``target(task_status=...)``; it must call
#: ``task_status.started(value=None)`` once it is ready.
ChildTarget: TypeAlias = Callable[..., Awaitable[object]]


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them has to be restarted.

    - ``ONE_FOR_ONE``: only that child.
    - ``ONE_FOR_ALL``: all running children: the others are stopped in reverse start order,
      then all are started again in start order.
    - ``REST_FOR_ONE``: that child and the running children started after it.

    Temporary children taken down with a sibling are not started again.

    .. versionadded:: 0.1.0
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.Enum):
    """When a child that ended on its own is started again.

    - ``PERMANENT``: always, also after a normal return.
    - ``TRANSIENT``: only after it raised an exception.
    - ``TEMPORARY``: never; its spec is removed once it has ended.

    Cancellation, ``KeyboardInterrupt`` and ``SystemExit`` never cause a restart.

    .. versionadded:: 0.1.0
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@runtime_checkable
class Stoppable(Protocol):
    """The graceful-stop protocol for a child's started value.

    When a child passes an object with ``request_stop()`` to ``task_status.started()``, the
    supervisor calls it first when it stops the child, and cancels the child only when it
    has not returned within its ``shutdown`` budget. ``request_stop`` must not block and
    must not raise; the child should return soon after it. Nested supervisors and actors
    follow this protocol; :class:`StopSignal` is a ready-made one for plain workers.

    .. versionadded:: 0.1.0
    """

    def request_stop(self) -> None:
        """Ask the child to finish what it is doing and return."""
        ...


@attrs.define(eq=False)
class StopSignal:
    """A :class:`Stoppable` for plain worker tasks: pass it to ``task_status.started()``.

    ::

        async def worker(*, task_status=trio.TASK_STATUS_IGNORED):
            stop = StopSignal()
            task_status.started(stop)
            while not stop.requested:
                await do_one_unit_of_work()

    .. versionadded:: 0.1.0
    """

    _event: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)

    @property
    def requested(self) -> bool:
        """Whether the supervisor has asked the worker to stop."""
        return self._event.is_set()

    def request_stop(self) -> None:
        """Ask the worker to stop (called by the supervisor)."""
        self._event.set()

    async def wait(self) -> None:
        """Return once a stop has been requested."""
        await self._event.wait()


def check_duration(owner: str, name: str, value: float | None, *, allow_none: bool) -> None:
    """Reject a duration that is not finite, non-negative seconds (``None`` if allowed)."""
    if value is None:
        if allow_none:
            return
        raise TypeError(f"{owner}.{name} must be seconds, got None")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{name} must be seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be finite seconds >= 0, got {value!r}")


def _default_shutdown(spec: ChildSpec) -> float | None:
    # OTP gives supervisors an infinite shutdown: a finite budget would cut short the
    # ordered shutdown of the subtree and orphan grandchildren.
    owner = getattr(spec.target, "__self__", None)
    if getattr(owner, "_is_supervisor", False):
        return None
    return 5.0


def _check_id(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"ChildSpec.id must be a str, got {type(value).__name__}")


def _check_target(_: object, __: attrs.Attribute[ChildTarget], value: ChildTarget) -> None:
    if not callable(value):
        raise TypeError(f"ChildSpec.target must be an async callable, got {value!r}")


def _check_shutdown(_: object, __: attrs.Attribute[float | None], value: float | None) -> None:
    check_duration("ChildSpec", "shutdown", value, allow_none=True)


@attrs.frozen
class ChildSpec:
    """How to run one child of a :class:`Supervisor`.

    Args:
        id: Unique among the supervisor's children; names the child in logs, events and
            errors.
        target: An async callable run as ``target(task_status=...)``. It must call
            ``task_status.started(value=None)`` once it is ready; ``value`` is what
            ``start_child`` returns, and if it is :class:`Stoppable` it receives the
            graceful stop request.
        restart: When the child is started again after it ended on its own.
        shutdown: Seconds the child gets to stop: first gracefully (``request_stop``),
            then it is cancelled. ``None`` means no limit, the default for a nested
            supervisor's ``run``; otherwise the default is 5 seconds. ``0`` cancels at once.

    .. versionadded:: 0.1.0
    """

    id: str = attrs.field(validator=_check_id)
    target: ChildTarget = attrs.field(validator=_check_target, repr=False)
    restart: Restart = attrs.field(
        default=Restart.PERMANENT, kw_only=True, validator=attrs.validators.instance_of(Restart)
    )
    shutdown: float | None = attrs.field(
        default=attrs.Factory(_default_shutdown, takes_self=True),
        kw_only=True,
        validator=_check_shutdown,
    )
