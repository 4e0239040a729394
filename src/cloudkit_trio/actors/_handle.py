"""The handle of a running supervisor: commands and introspection."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from ._commands import (
    Command,
    DeleteChild,
    PendingCommand,
    RestartChild,
    StartChild,
    TerminateChild,
)
from ._contain import UserCode
from ._errors import ChildNotFound, SupervisorNotRunning
from ._snapshot import ChildCounts, Children, SupervisorSnapshot
from ._spec import ChildKind, ChildSpec

if TYPE_CHECKING:
    import trio

    from ._control import SupervisorRun
    from ._supervisor import Supervisor

__all__ = ["SupervisorHandle"]


class _StopWaiter:
    """What ``SupervisorHandle.stop()`` returns: awaiting it waits for the shutdown."""

    __slots__ = ("_finished",)

    def __init__(self, finished: trio.Event | None) -> None:
        self._finished = finished

    def __await__(self) -> Generator[Any, None, None]:
        if self._finished is not None:
            yield from self._finished.wait().__await__()


class SupervisorHandle:
    """Controls a running :class:`Supervisor`; what ``run`` reports as started.

    Commands (``start_child``, ``terminate_child``, ``restart_child``, ``delete_child``)
    are executed one at a time by the supervisor's control task, in order with its own
    restart decisions; cancelling the caller does not cancel a command already sent. They
    raise :class:`SupervisorNotRunning` when the supervisor is not running.

    Introspection (``which_children``, ``count_children``, ``get_childspec``,
    ``snapshot``) is synchronous and also describes the last run once it stopped.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``count_children`` and ``get_childspec``.
    """

    __slots__ = ("_supervisor",)

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def __repr__(self) -> str:
        return f"<SupervisorHandle {self._supervisor.name!r} running={self.running}>"

    @property
    def name(self) -> str:
        """The supervisor's name."""
        return self._supervisor.name

    @property
    def running(self) -> bool:
        """Whether the supervisor's ``run`` is active."""
        return self._supervisor._run is not None

    async def start_child(self, spec: ChildSpec) -> object:
        """Add ``spec`` as the last child and start it; returns its started value.

        If the child declines to start (its target returned :data:`IGNORE`), it is kept
        as ``IGNORED`` (a temporary one is not kept) and ``IGNORE`` is returned.

        Raises:
            DuplicateChild: Its id is taken.
            InvalidChildSpec: It is significant and the supervisor's ``auto_shutdown``
                is ``NEVER``.
            TooManyChildren: ``max_children`` is reached.
            ChildStartError: It failed before ``started()``; it is not added.
            TypeError: The supervisor is a :class:`DynamicSupervisor`: its children come
                from its template (``start_member``).
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a ChildSpec, got {spec!r}")
        if self._supervisor._template is not None:
            raise TypeError(
                f"supervisor {self.name!r} is a DynamicSupervisor: its children are built "
                "from its template; call start_member(*args) instead of start_child(spec)"
            )
        return await self._command(StartChild(spec))

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (graceful request, then cancel) and keep its spec.

        A temporary child's spec is removed. Restart it with :meth:`restart_child`; remove
        it with :meth:`delete_child`.

        Raises:
            ChildNotFound: No such child.
        """
        await self._command(TerminateChild(child_id))

    async def restart_child(self, child_id: str) -> object:
        """Start a stopped (or ``IGNORED``) child again; returns its started value.

        ``IGNORE`` if it declined to start again.

        Raises:
            ChildNotFound: No such child.
            ChildRunning: It is not stopped.
            ChildStartError: It failed before ``started()``.
        """
        return await self._command(RestartChild(child_id))

    async def delete_child(self, child_id: str) -> None:
        """Remove a stopped (or ``IGNORED``) child's spec.

        Raises:
            ChildNotFound: No such child.
            ChildRunning: It is not stopped.
        """
        await self._command(DeleteChild(child_id))

    def which_children(self) -> Children:
        """The children in start order, as frozen records (also awaitable)."""
        run = self._view()
        if run is None:
            return Children()
        return Children(run.child_info(child, deep=False) for child in run.children)

    def count_children(self) -> ChildCounts:
        """How many children there are, as OTP's ``count_children`` counts them.

        .. versionadded:: 0.2.0
        """
        run = self._view()
        if run is None:
            specs = self._supervisor.specs
            supervisors = sum(1 for s in specs if s.kind is ChildKind.SUPERVISOR)
            workers = len(specs) - supervisors
            return ChildCounts(specs=len(specs), active=0, supervisors=supervisors, workers=workers)
        return run.counts()

    def get_childspec(self, child_id: str) -> ChildSpec:
        """The spec of the child ``child_id`` (for a pool member: the template, with its
        id and its arguments bound into its target).

        Raises:
            ChildNotFound: No such child.

        .. versionadded:: 0.2.0
        """
        run = self._view()
        if run is not None:
            return run.find(child_id).spec
        for spec in self._supervisor.specs:
            if spec.id == child_id:
                return spec
        raise ChildNotFound(f"supervisor {self.name!r} has no child {child_id!r}")

    def snapshot(self) -> SupervisorSnapshot:
        """The whole tree below this supervisor, nested supervisors included."""
        supervisor = self._supervisor
        run = self._view()
        children = () if run is None else tuple(run.child_info(c, deep=True) for c in run.children)
        return SupervisorSnapshot(
            name=supervisor.name,
            running=supervisor._run is not None,
            strategy=supervisor.strategy,
            max_restarts=supervisor.max_restarts,
            within=supervisor.within,
            recent_restarts=0 if run is None else run.recent_restarts(),
            children=children,
            logger_failures=supervisor._containment.failures(UserCode.LOGGER),
            hook_failures=supervisor._containment.failures(UserCode.ON_EVENT, UserCode.RANDOM),
            auto_shutdown=supervisor.auto_shutdown,
        )

    def _view(self) -> SupervisorRun | None:
        """The run to describe: the current one, else the last one."""
        return self._supervisor._run or self._supervisor._last_run

    def request_stop(self) -> None:
        """Ask the supervisor to stop its children in order and return (no waiting)."""
        run = self._supervisor._run
        if run is not None:
            run.request_stop()

    def stop(self) -> Awaitable[None]:
        """Stop the supervisor; await the result to wait until its shutdown finished.

        The request takes effect at once, awaited or not.
        """
        run = self._supervisor._run
        if run is None:
            return _StopWaiter(None)
        run.request_stop()
        return _StopWaiter(run.finished)

    async def _command(self, command: Command) -> object:
        run = self._supervisor._run
        if run is None or not run.accepting:
            raise SupervisorNotRunning(f"supervisor {self._supervisor.name!r} is not running")
        pending = PendingCommand(command)
        run.post(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result
