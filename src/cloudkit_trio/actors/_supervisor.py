"""OTP-style supervisors inside Trio's structured concurrency: configuration and entry points.

See :mod:`._control` for how a running supervisor decides, and :mod:`._handle` for the
handle its ``run`` reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from ._backoff import RestartBackoff
from ._contain import Containment
from ._control import SupervisorRun
from ._errors import DuplicateChild, InvalidChildSpec, SupervisorNotRunning
from ._groups import reraise
from ._handle import SupervisorHandle
from ._logging import StdlibSupervisorLogger, SupervisorLogger
from ._spec import AutoShutdown, ChildKind, ChildSpec, Restart, Strategy, check_duration

if TYPE_CHECKING:
    from ._snapshot import EventHook, SupervisorSnapshot

#: What the handle has and the supervisor has not: asked of a Supervisor, the
#: AttributeError says where to find it.
_HANDLE_ONLY: Final = frozenset(
    {
        "count_children",
        "delete_child",
        "get_childspec",
        "request_stop",
        "restart_child",
        "running",
        "start_child",
        "start_member",
        "stop",
        "terminate_child",
        "which_children",
    }
)

__all__ = ["Supervisor"]


class Supervisor:
    """Runs children, restarts them by an OTP strategy, stops them in order.

    Start it in a nursery and get its handle::

        sup = await nursery.start(Supervisor([ChildSpec("a", worker)]).run)

    or as an async context manager (leaving the block stops it in order)::

        async with Supervisor([ChildSpec("a", worker)]) as sup:
            ...

    Children start in list order, each only after the previous one called
    ``task_status.started()``; a child failing to start stops the ones already started in
    reverse order and makes the start raise :class:`ChildStartError`. More than
    ``max_restarts`` restarts within ``within`` seconds (exactly ``max_restarts`` is
    fine) make the supervisor stop all children in reverse order and raise
    :class:`RestartIntensityExceeded` into its parent. Cancellation from outside, or
    ``KeyboardInterrupt``/``SystemExit`` in a child, also stop the children in reverse
    order, each within its ``shutdown`` budget, before propagating.

    A restarted supervisor (one used as a child) starts again from ``children``; children
    added with ``start_child`` are not brought back.

    Run as a descendant of another supervisor (as its child, or anywhere inside one of
    its children), a supervisor's events also reach the ``on_event`` hooks above it, and
    when it gives up, the :class:`RestartIntensityExceeded` of every supervisor above it
    that gives up in turn keeps the real failure as ``__cause__``.

    Args:
        children: The initial child specs, in start order.
        strategy: Which children to restart when one has to be.
        max_restarts: Restarts allowed within ``within`` seconds.
        within: The intensity window in seconds.
        backoff: Delay restarts of a child that keeps failing; ``None`` restarts at once.
        max_children: Most children the supervisor holds (started, restarting or stopped);
            ``start_child`` beyond it raises :class:`TooManyChildren`.
        auto_shutdown: Whether significant children ending stop the supervisor (see
            :class:`AutoShutdown`); with the default ``NEVER`` no child may be
            significant.
        cancel_grace: Seconds a child gets to finish after it was cancelled, when its
            ``shutdown`` budget is used up, before the supervisor reports it unresponsive
            and moves on to the next child.
        name: Names the supervisor in logs, events and errors.
        logger: Where restarts, failures and shutdown problems are logged: any
            :class:`SupervisorLogger`, e.g. a :class:`cloudkit_trio.spi.Logger`; by default
            the stdlib :mod:`logging` logger ``cloudkit_trio.actors``, at INFO and above.
        on_event: Called with a frozen :class:`SupervisorEvent` for each event of this
            supervisor and of every supervisor below it, e.g. to count restarts per child
            in a metrics layer.

    Neither a logger nor an ``on_event`` hook that raises stops the supervisor: the
    failure is counted (``SupervisorSnapshot.logger_failures``/``hook_failures``), the
    first of each kind is reported once on standard error, and supervision carries on.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``auto_shutdown``; :meth:`snapshot`; events reach the hooks up the tree.
    """

    # Lets ChildSpec infer ChildKind.SUPERVISOR (and an unlimited shutdown) from run.
    _is_supervisor: Final = True

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: RestartBackoff | None = None,
        max_children: int | None = None,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        cancel_grace: float = 1.0,
        name: str = "supervisor",
        logger: SupervisorLogger | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        specs = tuple(children)
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"children must be ChildSpec instances, got {spec!r}")
        seen: set[str] = set()
        for spec in specs:
            if spec.id in seen:
                raise DuplicateChild(f"two children have the id {spec.id!r}")
            seen.add(spec.id)
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a Strategy, got {strategy!r}")
        if not isinstance(auto_shutdown, AutoShutdown):
            raise TypeError(f"auto_shutdown must be an AutoShutdown, got {auto_shutdown!r}")
        if auto_shutdown is AutoShutdown.NEVER:
            for spec in specs:
                if spec.significant:
                    raise InvalidChildSpec(
                        f"child {spec.id!r} is significant but auto_shutdown is NEVER; pass "
                        "auto_shutdown=AutoShutdown.ANY_SIGNIFICANT or ALL_SIGNIFICANT"
                    )
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        check_duration("Supervisor", "within", within, allow_none=False)
        if within <= 0:
            raise ValueError(f"Supervisor.within must be > 0 seconds, got {within!r}")
        check_duration("Supervisor", "cancel_grace", cancel_grace, allow_none=False)
        if max_children is not None and (
            isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
        ):
            raise ValueError(f"max_children must be an int >= 0 or None, got {max_children!r}")
        if max_children is not None and len(specs) > max_children:
            raise ValueError(f"{len(specs)} children exceed max_children={max_children}")
        if backoff is not None and not isinstance(backoff, RestartBackoff):
            raise TypeError(f"backoff must be a RestartBackoff or None, got {backoff!r}")
        if logger is not None and not isinstance(logger, SupervisorLogger):
            raise TypeError(
                "logger needs debug/info/warn/error(message, **fields) methods (subclass "
                f"cloudkit_trio.spi.Logger to get them from is_enabled and log), got {logger!r}"
            )
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be a callable or None, got {on_event!r}")
        self.specs: Final = specs
        self.strategy: Final = strategy
        self.max_restarts: Final = max_restarts
        self.within: Final = float(within)
        self.backoff: Final = backoff
        self.max_children: Final = max_children
        self.auto_shutdown: Final = auto_shutdown
        self.cancel_grace: Final = float(cancel_grace)
        self.name: Final = name
        self.logger: Final[SupervisorLogger] = (
            logger if logger is not None else StdlibSupervisorLogger()
        )
        self.on_event: Final = on_event
        #: Where every call into the logger, the hook and the backoff's random source goes.
        self._containment: Final = Containment(name)
        # A DynamicSupervisor's template and the arguments of its initial members.
        self._template: ChildSpec | None = None
        self._initial: tuple[tuple[object, ...], ...] = ()
        self._handle = self._new_handle()
        self._run: SupervisorRun | None = None
        self._last_run: SupervisorRun | None = None
        self._cm: AbstractAsyncContextManager[trio.Nursery] | None = None

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self.name!r} {self.strategy.name} "
            f"children={len(self.specs)} running={self._run is not None}>"
        )

    if not TYPE_CHECKING:
        # Only at run time: for mypy, a Supervisor keeps exactly its declared attributes.
        def __getattr__(self, name: str) -> NoReturn:
            if name in _HANDLE_ONLY:
                raise AttributeError(
                    f"{name!r} is a method of the supervisor's handle, not of the Supervisor: "
                    "use the handle that `await nursery.start(supervisor.run)` or "
                    "`async with supervisor as handle` gives (also `supervisor.handle`)",
                    name=name,
                    obj=self,
                )
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
            )

    def _new_handle(self) -> SupervisorHandle:
        return SupervisorHandle(self)

    @property
    def handle(self) -> SupervisorHandle:
        """The handle ``run`` hands back; the same object across runs."""
        return self._handle

    def snapshot(self) -> SupervisorSnapshot:
        """The running tree below this supervisor (see :meth:`SupervisorHandle.snapshot`).

        Raises:
            SupervisorNotRunning: It is not running. The handle (what
                ``await nursery.start(supervisor.run)`` returns, or ``supervisor.handle``)
                also describes a supervisor that has stopped: its last run.

        .. versionadded:: 0.2.0
        """
        if self._run is None:
            raise SupervisorNotRunning(
                f"supervisor {self.name!r} is not running, so it has no tree to snapshot; "
                "start it with `handle = await nursery.start(supervisor.run)` and call "
                "handle.snapshot(), which also describes the last run once it stopped"
            )
        return self._handle.snapshot()

    def child_spec(
        self,
        id: str | None = None,
        *,
        restart: Restart = Restart.PERMANENT,
        significant: bool = False,
    ) -> ChildSpec:
        """A spec that runs this supervisor as a child of another (shutdown unlimited).

        With ``auto_shutdown`` set, make it ``TRANSIENT`` (or ``TEMPORARY``): a permanent
        supervisor that shut itself down is started again by its parent.

        .. versionchanged:: 0.2.0
           ``significant``.
        """
        return ChildSpec(
            self.name if id is None else id,
            self.run,
            restart=restart,
            kind=ChildKind.SUPERVISOR,
            shutdown=None,
            significant=significant,
        )

    async def run(
        self, *, task_status: trio.TaskStatus[SupervisorHandle] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children, supervise them, and return once stopped.

        Reports the :class:`SupervisorHandle` through ``task_status`` once every child has
        started. Returns normally after ``stop()`` and after an automatic shutdown; raises
        :class:`RestartIntensityExceeded` when it gave up and :class:`ChildStartError` when
        a child failed to start.
        """
        if self._run is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        run = SupervisorRun(self)
        self._run = run
        try:
            try:
                async with trio.open_nursery() as nursery:
                    await run.control(nursery, task_status)
            except BaseExceptionGroup as group:
                reraise(group)
        finally:
            self._run = None
            self._last_run = run
            run.finished.set()
        if run.fatal is not None:
            raise run.fatal
        if run.outcome is not None:
            raise run.outcome

    async def __aenter__(self) -> SupervisorHandle:
        if self._cm is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already entered")
        cm = trio.open_nursery()
        nursery = await cm.__aenter__()
        try:
            handle: SupervisorHandle = await nursery.start(self.run)
        except BaseException as exc:
            # Not a loop: leave the nursery entered above, then raise the start error.
            try:
                await cm.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                reraise(group)
            raise
        self._cm = cm
        return handle

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        cm = self._cm
        assert cm is not None
        self._cm = None
        self._handle.request_stop()
        try:
            return bool(await cm.__aexit__(exc_type, exc, tb))
        except BaseExceptionGroup as group:
            reraise(group)
