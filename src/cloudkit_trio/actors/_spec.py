"""What a supervisor is told about its children: strategies, restart types, child specs."""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeAlias, final, runtime_checkable

import attrs
import trio

from ._errors import InvalidChildSpec

__all__ = [
    "IGNORE",
    "AutoShutdown",
    "ChildKind",
    "ChildSpec",
    "ChildTarget",
    "Restart",
    "StopSignal",
    "Stoppable",
    "Strategy",
    "check_duration",
]

#: A child's body: called as ``target(task_status=...)``; it must call
#: ``task_status.started(value=None)`` once it is ready, or return :data:`IGNORE` without
#: calling it to decline the start.
ChildTarget: TypeAlias = Callable[..., Awaitable[object]]


@final
class _Ignore:
    """The type of :data:`IGNORE`; there is one instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IGNORE"

    def __reduce__(self) -> str:
        return "IGNORE"


#: What a child's target returns, without calling ``task_status.started()``, to decline
#: to start (OTP's ``ignore``)::
#:
#:     async def mirror(*, task_status=trio.TASK_STATUS_IGNORED):
#:         if not settings.mirror_enabled:
#:             return IGNORE
#:         task_status.started()
#:         ...
#:
#: The supervisor keeps the spec, does not run or restart the child, reports it as
#: ``ChildState.IGNORED``, and ``start_child``/``restart_child`` return ``IGNORE``.
#: ``restart_child`` tries again. A temporary child, and any member of a
#: :class:`DynamicSupervisor`, is not kept.
#:
#: .. versionadded:: 0.2.0
IGNORE: Final = _Ignore()


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


class AutoShutdown(enum.Enum):
    """When a supervisor stops by itself because its *significant* children ended (OTP).

    Only a significant child ending *on its own* and not being restarted counts: a
    transient one returning normally, a temporary one returning or raising. A child the
    supervisor stopped (``terminate_child``, a sibling's restart, a shutdown) never does.
    The supervisor then stops its other children in reverse start order and its ``run``
    returns normally: it is not a failure. Run such a supervisor as a ``TRANSIENT`` or
    ``TEMPORARY`` child, or its parent starts it again.

    - ``NEVER``: the default; significant children are refused
      (:class:`InvalidChildSpec`).
    - ``ANY_SIGNIFICANT``: when any significant child ends so.
    - ``ALL_SIGNIFICANT``: when the last significant child still running or restarting
      ends so.

    .. versionadded:: 0.2.0
    """

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class ChildKind(enum.Enum):
    """Whether a child is a worker or a supervisor (OTP's child ``type``).

    It decides the default ``shutdown`` budget (none for a supervisor) and what
    ``count_children()`` reports; ``ChildSpec`` infers it from its target.

    .. versionadded:: 0.2.0
    """

    WORKER = "worker"
    SUPERVISOR = "supervisor"


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


def _default_kind(spec: ChildSpec) -> ChildKind:
    # The run method of a Supervisor (bound, so its __self__ is the supervisor). A target
    # that wraps one is a worker unless the spec says ``kind=ChildKind.SUPERVISOR``.
    owner = getattr(spec.target, "__self__", None)
    if getattr(owner, "_is_supervisor", False):
        return ChildKind.SUPERVISOR
    return ChildKind.WORKER


def _default_shutdown(spec: ChildSpec) -> float | None:
    # OTP gives supervisors an infinite shutdown: a finite budget would cut short the
    # ordered shutdown of the subtree and orphan grandchildren.
    if spec.kind is ChildKind.SUPERVISOR:
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
            graceful stop request. Returning :data:`IGNORE` without calling it declines
            the start.
        restart: When the child is started again after it ended on its own.
        kind: ``SUPERVISOR`` or ``WORKER``; by default ``SUPERVISOR`` exactly when the
            target is a supervisor's ``run``.
        shutdown: Seconds the child gets to stop: first gracefully (``request_stop``),
            then it is cancelled. ``None`` means no limit, the default for a supervisor;
            otherwise the default is 5 seconds. ``0`` is OTP's brutal kill: the child is
            cancelled at once, without a stop request.
        significant: Whether its ending on its own stops the supervisor, by the
            supervisor's :class:`AutoShutdown`. Only for ``TRANSIENT`` and ``TEMPORARY``
            children (:class:`InvalidChildSpec` otherwise), and only under a supervisor
            whose ``auto_shutdown`` is not ``NEVER``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``kind``, ``significant``; ``shutdown=0`` sends no stop request.
    """

    id: str = attrs.field(validator=_check_id)
    target: ChildTarget = attrs.field(validator=_check_target, repr=False)
    restart: Restart = attrs.field(
        default=Restart.PERMANENT, kw_only=True, validator=attrs.validators.instance_of(Restart)
    )
    kind: ChildKind = attrs.field(
        default=attrs.Factory(_default_kind, takes_self=True),
        kw_only=True,
        validator=attrs.validators.instance_of(ChildKind),
    )
    shutdown: float | None = attrs.field(
        default=attrs.Factory(_default_shutdown, takes_self=True),
        kw_only=True,
        validator=_check_shutdown,
    )
    significant: bool = attrs.field(
        default=False, kw_only=True, validator=attrs.validators.instance_of(bool)
    )

    def __attrs_post_init__(self) -> None:
        if self.significant and self.restart is Restart.PERMANENT:
            raise InvalidChildSpec(
                f"child {self.id!r} is significant and PERMANENT; a significant child must "
                "be TRANSIENT or TEMPORARY, since a permanent one is always restarted"
            )
