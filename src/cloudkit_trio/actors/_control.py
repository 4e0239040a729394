"""The control task of a running supervisor: every decision about its children.

One control task per running supervisor makes every decision: it starts children (one at a
time, each ``started`` before the next), handles their exits, applies the strategy and the
restart intensity, runs commands from the handle, and performs the ordered shutdown. Each
child runs in the supervisor's nursery inside its own *shielded* cancel scope, so nothing
but the control task cancels it: a cancellation from outside reaches the control task
alone, which then stops the children one by one in reverse start order (under a shield)
before letting the cancellation continue.

Children are started with ``start_soon`` from the control task, which then waits on the
child's own ``task_status`` object, never with ``nursery.start``: a child lives in the
supervisor's nursery from its first instruction, which sidesteps the ``nursery.start``
races of trio#1431/#2258.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Final, assert_never

import trio

from ._calls import DeadlineTimer
from ._child import Child, ChildStatus, Exit, ExitKind, ManagedTarget
from ._commands import (
    DeleteChild,
    PendingCommand,
    RestartChild,
    StartChild,
    TerminateChild,
)
from ._contain import Failure, UserCode
from ._errors import (
    ChildNotFound,
    ChildRunning,
    ChildStartError,
    DuplicateChild,
    RestartIntensityExceeded,
    SupervisorNotRunning,
    TooManyChildren,
)
from ._groups import first_fatal
from ._handle import SupervisorHandle
from ._logging import Level, log_at
from ._snapshot import (
    ChildInfo,
    ChildState,
    EventKind,
    FailureInfo,
    SupervisorEvent,
    describe_failure,
)
from ._spec import ChildSpec, Restart, Stoppable, Strategy

if TYPE_CHECKING:
    from ._backoff import RestartBackoff
    from ._supervisor import Supervisor

__all__ = ["SupervisorRun"]

# What a command may raise at its caller; anything else is a bug of the control task.
_COMMAND_ERRORS: Final = (
    ChildNotFound,
    ChildRunning,
    ChildStartError,
    DuplicateChild,
    TooManyChildren,
)


class SupervisorRun:
    """The state of one ``Supervisor.run``; only its control task mutates it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.children: list[Child] = [self._new_child(spec) for spec in supervisor.specs]
        self.inbox: deque[tuple[Child, Exit] | PendingCommand] = deque()
        self.wake = trio.Event()
        self.finished = trio.Event()
        self.timer = DeadlineTimer()
        self.timer_scope = trio.CancelScope(shield=True)
        self.restart_times: deque[float] = deque()
        self.accepting = False
        self.stop_requested = False
        self.fatal: BaseException | None = None
        self.outcome: BaseException | None = None
        self._nursery: trio.Nursery | None = None

    @staticmethod
    def _new_child(spec: ChildSpec) -> Child:
        target = spec.target
        managed = target if isinstance(target, ManagedTarget) else None
        return Child(spec, managed)

    # -- plumbing ------------------------------------------------------------------------

    def post(self, item: tuple[Child, Exit] | PendingCommand) -> None:
        self.inbox.append(item)
        self.wake.set()

    def request_stop(self) -> None:
        self.stop_requested = True
        self.wake.set()

    def recent_restarts(self) -> int:
        horizon = trio.current_time() - self.sup.within
        return sum(1 for t in self.restart_times if t >= horizon)

    def child_info(self, child: Child, *, deep: bool) -> ChildInfo:
        subtree = None
        if deep and isinstance(child.value, SupervisorHandle):
            subtree = child.value.snapshot()
        mailbox = child.managed.supervised_statistics() if child.managed is not None else None
        return ChildInfo(
            id=child.id,
            state=child.state,
            restart=child.spec.restart,
            restarts=child.restarts,
            last_failure=child.last_failure,
            started_at=child.started_at,
            mailbox=mailbox,
            subtree=subtree,
        )

    def _find(self, child_id: object) -> Child:
        for child in self.children:
            if child.id == child_id:
                return child
        raise ChildNotFound(f"supervisor {self.sup.name!r} has no child {child_id!r}")

    def _remove(self, child: Child) -> None:
        child.removed = True
        self.children.remove(child)

    def _log(self, level: Level, message: str, /, **fields: object) -> None:
        """Log through the supervisor's logger; a logger that raises is contained."""
        self.sup._containment.call(UserCode.LOGGER, log_at, self.sup.logger, level, message, fields)

    def _report(
        self,
        kind: EventKind,
        level: Level,
        message: str,
        child: Child | None = None,
        *,
        failure: FailureInfo | None = None,
        delay: float | None = None,
    ) -> None:
        sup = self.sup
        now = trio.current_time()
        fields: dict[str, object] = {"supervisor": sup.name, "event": kind.value}
        if child is not None:
            fields["child"] = child.id
            fields["restarts"] = child.restarts
        if failure is not None:
            fields["error_type"] = failure.type_name
            fields["error"] = failure.message
        if delay is not None:
            fields["delay"] = round(delay, 6)
        self._log(level, message, **fields)
        hook = sup.on_event
        if hook is not None:
            event = SupervisorEvent(
                kind=kind,
                supervisor=sup.name,
                child_id=None if child is None else child.id,
                at=now,
                restarts=0 if child is None else child.restarts,
                failure=failure,
                delay=delay,
            )
            outcome = sup._containment.call(UserCode.ON_EVENT, hook, event)
            if isinstance(outcome, Failure):
                # The type only: the message is the hook's text and may hold a secret.
                self._log(
                    Level.ERROR,
                    "supervisor event hook failed",
                    supervisor=sup.name,
                    event=kind.value,
                    error_type=outcome.type_name,
                )

    def _restart_delay(self, backoff: RestartBackoff, consecutive: int) -> float:
        """The backoff's delay; without jitter when its random source fails."""
        delay = self.sup._containment.call(UserCode.RANDOM, backoff.delay, consecutive)
        if isinstance(delay, Failure):
            return backoff.base_delay(consecutive)
        return delay

    # -- the control task ----------------------------------------------------------------

    async def control(
        self, nursery: trio.Nursery, task_status: trio.TaskStatus[SupervisorHandle]
    ) -> None:
        self._nursery = nursery
        nursery.start_soon(self._run_timer, name=f"{self.sup.name}:call-deadlines")
        try:
            try:
                if await self._start_initial():
                    self.accepting = True
                    task_status.started(self.sup.handle)
                    self._report(EventKind.SUPERVISOR_STARTED, Level.DEBUG, "supervisor started")
                    await self._loop()
                await self._shutdown()
            except trio.Cancelled:
                # Cancelled from outside: the children are shielded, so they are still
                # running; stop them in order before the cancellation goes on.
                with trio.CancelScope(shield=True):
                    await self._shutdown()
                raise
        finally:
            self._abandon()

    async def _run_timer(self) -> None:
        with self.timer_scope:
            await self.timer.run()

    def _abandon(self) -> None:
        """Synchronous last resort: nothing may keep the nursery open or a caller waiting."""
        self.accepting = False
        for child in self.children:
            if child.scope is not None:
                child.scope.cancel()
            if child.managed is not None:
                child.managed.supervised_close(self)
        self.timer_scope.cancel()
        while self.inbox:
            item = self.inbox.popleft()
            if isinstance(item, PendingCommand):
                item.finish(error=SupervisorNotRunning(f"supervisor {self.sup.name!r} stopped"))

    async def _start_initial(self) -> bool:
        for child in list(self.children):
            if await self._start(child):
                continue
            failure = self._exit_failure(child)
            self._report(
                EventKind.START_FAILED,
                Level.ERROR,
                "child failed to start",
                child,
                failure=failure,
            )
            exit_ = child.exit
            if exit_ is not None and exit_.kind is ExitKind.FATAL:
                self.fatal = exit_.error
                return False
            error = ChildStartError(
                f"child {child.id!r} of supervisor {self.sup.name!r} failed to start: {failure}",
                child_id=child.id,
                supervisor=self.sup.name,
            )
            error.__cause__ = None if exit_ is None else exit_.error
            self.outcome = error
            return False
        return True

    def _exit_failure(self, child: Child) -> FailureInfo | None:
        exit_ = child.exit
        if exit_ is None or exit_.error is None:
            return None
        failure = describe_failure(exit_.error, trio.current_time())
        child.last_failure = failure
        return failure

    async def _loop(self) -> None:
        while not self.stop_requested:
            await self._restart_due()
            if self.stop_requested:
                break
            if not self.inbox:
                self.wake = trio.Event()
                due = min(
                    (c.restart_due for c in self.children if c.state is ChildState.RESTARTING),
                    default=math.inf,
                )
                with trio.move_on_at(due):
                    await self.wake.wait()
                continue
            item = self.inbox.popleft()
            if isinstance(item, PendingCommand):
                await self._execute(item)
            else:
                await self._on_exit(*item)

    # -- starting ------------------------------------------------------------------------

    async def _start(self, child: Child) -> bool:
        """Start one incarnation and wait until it reports started or ends."""
        assert self._nursery is not None
        child.incarnation += 1
        child.scope = trio.CancelScope(shield=True)
        child.done = trio.Event()
        child.exit = None
        child.value = None
        child.state = ChildState.STARTING
        if child.managed is not None:
            try:
                child.managed.supervised_open(self, self.timer)
            except ValueError as exc:
                child.exit = Exit(ExitKind.FAILED, exc, child.incarnation)
                child.done.set()
                child.state = ChildState.STOPPED
                return False
        started = trio.Event()
        status = ChildStatus(started)
        self._nursery.start_soon(
            self._child_task,
            child,
            child.incarnation,
            child.scope,
            child.done,
            started,
            status,
            name=f"{self.sup.name}/{child.id}",
        )
        await started.wait()
        if not status.called:
            child.state = ChildState.STOPPED
            return False
        child.value = status.value
        child.state = ChildState.RUNNING
        child.started_at = trio.current_time()
        self._report(EventKind.CHILD_STARTED, Level.DEBUG, "child started", child)
        return True

    async def _child_task(
        self,
        child: Child,
        incarnation: int,
        scope: trio.CancelScope,
        done: trio.Event,
        started: trio.Event,
        status: ChildStatus,
    ) -> None:
        kind = ExitKind.RETURNED
        error: BaseException | None = None
        try:
            with scope:
                await child.spec.target(task_status=status)
            if scope.cancelled_caught:
                kind = ExitKind.CANCELLED
            elif not status.called:
                kind = ExitKind.FAILED
                error = RuntimeError(f"child {child.id!r} returned without calling started()")
        except Exception as exc:
            kind, error = ExitKind.FAILED, exc
        except (KeyboardInterrupt, SystemExit) as exc:
            kind, error = ExitKind.FATAL, exc
        except BaseExceptionGroup as group:
            failures, rest = group.split(Exception)
            fatal = first_fatal(rest)
            if fatal is not None:
                kind, error = ExitKind.FATAL, fatal
            elif rest is not None:
                # Only a cancellation not ours (or GeneratorExit) remains: it is not a
                # crash, and it is not ours to stop.
                kind = ExitKind.CANCELLED
                raise
            else:
                kind, error = ExitKind.FAILED, failures
        finally:
            exit_ = Exit(kind, error, incarnation)
            if child.incarnation == incarnation:
                child.exit = exit_
            done.set()
            started.set()
            self.post((child, exit_))

    # -- exits and restarts --------------------------------------------------------------

    async def _on_exit(self, child: Child, exit_: Exit) -> None:
        if child.removed or exit_.incarnation <= child.handled:
            return
        child.handled = exit_.incarnation
        child.value = None
        child.state = ChildState.STOPPED
        if exit_.kind is ExitKind.FATAL:
            self._report(
                EventKind.CHILD_STOPPED,
                Level.WARN,
                "child raised KeyboardInterrupt/SystemExit; stopping the supervisor",
                child,
                failure=None
                if exit_.error is None
                else describe_failure(exit_.error, trio.current_time()),
            )
            self.fatal = exit_.error
            self.request_stop()
            if child.managed is not None:
                child.managed.supervised_close(self)
            return
        failed = exit_.kind is ExitKind.FAILED
        if failed:
            failure = self._exit_failure(child)
            self._report(
                EventKind.CHILD_FAILED, Level.ERROR, "child failed", child, failure=failure
            )
        else:
            self._report(EventKind.CHILD_EXITED, Level.INFO, "child exited", child)
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not failed):
            if child.managed is not None:
                child.managed.supervised_close(self)
            if restart is Restart.TEMPORARY:
                self._remove(child)
            return
        await self._restart(child, exit_.error if failed else None)

    def _affected(self, child: Child) -> list[Child]:
        strategy = self.sup.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [child]
        members = self.children
        if strategy is Strategy.REST_FOR_ONE:
            members = members[members.index(child) :]
        return [c for c in members if c is child or c.alive or c.state is ChildState.RESTARTING]

    async def _restart(self, child: Child, error: BaseException | None) -> None:
        sup = self.sup
        now = trio.current_time()
        times = self.restart_times
        times.append(now)
        horizon = now - sup.within
        while times and times[0] < horizon:
            times.popleft()
        if len(times) > sup.max_restarts:
            self._give_up(child, error)
            return
        delay = 0.0
        backoff = sup.backoff
        if backoff is not None:
            started_at = child.started_at
            if started_at is not None and now - started_at >= backoff.effective_reset_after:
                child.consecutive = 0
            delay = self._restart_delay(backoff, child.consecutive)
            child.consecutive += 1
        group = self._affected(child)
        for sibling in reversed(group):
            if sibling is not child and sibling.alive:
                await self._stop_child(sibling, final=sibling.spec.restart is Restart.TEMPORARY)
        due = trio.current_time() + delay
        for member in group:
            if member.removed:
                continue
            if member is not child and member.spec.restart is Restart.TEMPORARY:
                self._remove(member)
                continue
            member.state = ChildState.RESTARTING
            member.restart_due = due
            self._report(
                EventKind.CHILD_RESTARTING,
                Level.WARN,
                "child restarting",
                member,
                delay=delay,
            )

    def _give_up(self, child: Child, error: BaseException | None) -> None:
        sup = self.sup
        cause = "failed" if error is not None else "exited"
        outcome = RestartIntensityExceeded(
            f"supervisor {sup.name!r} gave up: child {child.id!r} {cause} and more than "
            f"{sup.max_restarts} restarts were needed within {sup.within:g} s",
            supervisor=sup.name,
            child_id=child.id,
            max_restarts=sup.max_restarts,
            within=sup.within,
        )
        outcome.__cause__ = error
        self.outcome = outcome
        self._report(
            EventKind.INTENSITY_EXCEEDED,
            Level.ERROR,
            "restart intensity exceeded; stopping all children",
            child,
            failure=child.last_failure if error is not None else None,
        )
        self.request_stop()

    async def _restart_due(self) -> None:
        now = trio.current_time()
        for child in list(self.children):
            if self.stop_requested:
                return
            if child.removed or child.state is not ChildState.RESTARTING:
                continue
            if child.restart_due > now:
                continue
            child.restart_due = math.inf
            child.restarts += 1
            if not await self._start(child):
                exit_ = child.exit
                assert exit_ is not None
                await self._on_exit(child, exit_)
                return

    # -- stopping ------------------------------------------------------------------------

    async def _stop_child(self, child: Child, *, final: bool) -> None:
        """Stop one child: graceful request, wait its budget, cancel, wait, move on."""
        if not child.alive:
            child.state = ChildState.STOPPED
            child.restart_due = math.inf
            if final and child.managed is not None:
                child.managed.supervised_close(self)
            return
        sup = self.sup
        done = child.done
        scope = child.scope
        assert done is not None
        assert scope is not None
        child.state = ChildState.STOPPING
        budget = child.spec.shutdown
        deadline = math.inf if budget is None else trio.current_time() + budget
        graceful = False
        if child.managed is not None:
            graceful = child.managed.supervised_stop(final=final)
        elif isinstance(child.value, Stoppable):
            try:
                child.value.request_stop()
                graceful = True
            except Exception as exc:
                self._log(
                    Level.WARN,
                    "request_stop raised; cancelling the child",
                    supervisor=sup.name,
                    child=child.id,
                    error_type=type(exc).__name__,
                    error=describe_failure(exc, trio.current_time()).message,
                )
        if graceful and not done.is_set():
            with trio.move_on_at(deadline):
                await done.wait()
            if not done.is_set():
                self._report(
                    EventKind.SHUTDOWN_TIMEOUT,
                    Level.WARN,
                    "child did not stop within its shutdown budget; cancelling it",
                    child,
                )
        if not done.is_set():
            scope.cancel()
            with trio.move_on_at(max(deadline, trio.current_time() + sup.cancel_grace)):
                await done.wait()
            if not done.is_set():
                self._report(
                    EventKind.CHILD_UNRESPONSIVE,
                    Level.ERROR,
                    "child is still running after cancellation; shutdown continues without it",
                    child,
                )
        child.handled = child.incarnation
        child.value = None
        child.state = ChildState.STOPPED
        exit_ = child.exit
        if exit_ is not None and exit_.incarnation == child.incarnation:
            if exit_.kind is ExitKind.FAILED:
                failure = self._exit_failure(child)
                self._report(
                    EventKind.CHILD_FAILED,
                    Level.WARN,
                    "child failed while stopping",
                    child,
                    failure=failure,
                )
            elif exit_.kind is ExitKind.FATAL and self.fatal is None:
                self.fatal = exit_.error
                self.request_stop()
        if final and child.managed is not None:
            child.managed.supervised_close(self)
        self._report(EventKind.CHILD_STOPPED, Level.DEBUG, "child stopped", child)

    async def _shutdown(self) -> None:
        self.accepting = False
        for child in reversed(list(self.children)):
            if child.alive or child.state is ChildState.RESTARTING:
                await self._stop_child(child, final=True)
            elif child.managed is not None:
                child.managed.supervised_close(self)
        self._report(EventKind.SUPERVISOR_STOPPED, Level.DEBUG, "supervisor stopped")

    # -- commands ------------------------------------------------------------------------

    async def _execute(self, pending: PendingCommand) -> None:
        try:
            result = await self._dispatch(pending)
        except _COMMAND_ERRORS as exc:
            pending.finish(error=exc)
        else:
            pending.finish(result)
        finally:
            # Cancelled or crashed midway: the caller must still get an answer.
            if not pending.done.is_set():
                pending.finish(error=SupervisorNotRunning(f"supervisor {self.sup.name!r} stopped"))

    async def _dispatch(self, pending: PendingCommand) -> object:
        """Run one command: the one place commands are matched."""
        match pending.command:
            case StartChild(spec):
                return await self._start_child(spec)
            case TerminateChild(child_id):
                await self._terminate_child(self._find(child_id))
                return None
            case RestartChild(child_id):
                return await self._restart_child(self._find(child_id))
            case DeleteChild(child_id):
                self._delete_child(self._find(child_id))
                return None
            case unknown:  # pragma: no cover - mypy proves the match exhaustive
                assert_never(unknown)

    async def _start_child(self, spec: ChildSpec) -> object:
        sup = self.sup
        if any(c.id == spec.id for c in self.children):
            raise DuplicateChild(f"supervisor {sup.name!r} already has a child {spec.id!r}")
        if sup.max_children is not None and len(self.children) >= sup.max_children:
            raise TooManyChildren(
                f"supervisor {sup.name!r} already holds max_children={sup.max_children}",
                supervisor=sup.name,
                max_children=sup.max_children,
            )
        child = self._new_child(spec)
        self.children.append(child)
        return await self._start_or_raise(child, remove=True)

    async def _start_or_raise(self, child: Child, *, remove: bool) -> object:
        if await self._start(child):
            return child.value
        child.handled = child.incarnation
        failure = self._exit_failure(child)
        self._report(
            EventKind.START_FAILED, Level.ERROR, "child failed to start", child, failure=failure
        )
        if child.managed is not None:
            child.managed.supervised_close(self)
        if remove:
            self._remove(child)
        exit_ = child.exit
        if exit_ is not None and exit_.kind is ExitKind.FATAL:
            self.fatal = exit_.error
            self.request_stop()
        error = ChildStartError(
            f"child {child.id!r} of supervisor {self.sup.name!r} failed to start: {failure}",
            child_id=child.id,
            supervisor=self.sup.name,
        )
        error.__cause__ = None if exit_ is None else exit_.error
        raise error

    async def _terminate_child(self, child: Child) -> None:
        await self._stop_child(child, final=True)
        if child.spec.restart is Restart.TEMPORARY and not child.removed:
            self._remove(child)

    async def _restart_child(self, child: Child) -> object:
        if child.state is not ChildState.STOPPED:
            raise ChildRunning(f"child {child.id!r} is {child.state.value}, not stopped")
        return await self._start_or_raise(child, remove=False)

    def _delete_child(self, child: Child) -> None:
        if child.state is not ChildState.STOPPED:
            raise ChildRunning(f"child {child.id!r} is {child.state.value}, not stopped")
        if child.managed is not None:
            child.managed.supervised_close(self)
        self._remove(child)
