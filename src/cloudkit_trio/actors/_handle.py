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
from ._errors import SupervisorNotRunning
from ._snapshot import Children, SupervisorSnapshot
from ._spec import ChildSpec

if TYPE_CHECKING:
    import trio

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

    .. versionadded:: 0.1.0
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

        Raises:
            DuplicateChild: Its id is taken.
            TooManyChildren: ``max_children`` is reached.
            ChildStartError: It failed before ``started()``; it is not added.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a ChildSpec, got {spec!r}")
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
        """Start a stopped child again; returns its started value.

        Raises:
            ChildNotFound: No such child.
            ChildRunning: It is not stopped.
            ChildStartError: It failed before ``started()``.
        """
        return await self._command(RestartChild(child_id))

    async def delete_child(self, child_id: str) -> None:
        """Remove a stopped child's spec.

        Raises:
            ChildNotFound: No such child.
            ChildRunning: It is not stopped.
        """
        await self._command(DeleteChild(child_id))

    def which_children(self) -> Children:
        """The children in start order, as frozen records (also awaitable)."""
        run = self._supervisor._run or self._supervisor._last_run
        if run is None:
            return Children()
        return Children(run.child_info(child, deep=False) for child in run.children)

    def snapshot(self) -> SupervisorSnapshot:
        """The whole tree below this supervisor, nested supervisors included."""
        supervisor = self._supervisor
        run = supervisor._run or supervisor._last_run
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
        )

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
