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

Each child's task marks itself as that child (:mod:`._tree`), so a supervisor started
anywhere below it knows its parent: its events reach every hook up the tree, and when it
gives up, the parent's :class:`RestartIntensityExceeded` names the real failure, not the
nested supervisor's error.

A dynamic supervisor (one with a template) differs in three ways, as OTP's
``simple_one_for_one``: its members are removed once they end for good, ``start_member``
builds them from the template, and its shutdown stops them all at once, not one by one.
"""

from __future__ import annotations

import enum
import functools
import math
from collections import deque
from typing import TYPE_CHECKING, Final, assert_never

import attrs
import trio

from ._calls import DeadlineTimer
from ._child import Child, ChildStatus, Exit, ExitKind, ManagedTarget
from ._commands import (
    DeleteChild,
    PendingCommand,
    RestartChild,
    StartChild,
    StartMember,
    TerminateChild,
)
from ._contain import Failure, UserCode
from ._errors import (
    ChildNotFound,
    ChildRunning,
    ChildStartError,
    DuplicateChild,
    InvalidChildSpec,
    RestartIntensityExceeded,
    SupervisorNotRunning,
    TooManyChildren,
)
from ._groups import first_fatal
from ._handle import SupervisorHandle
from ._logging import Level, log_at
from ._snapshot import (
    ChildCounts,
    ChildInfo,
    ChildState,
    EventKind,
    FailureInfo,
    SupervisorEvent,
    describe_failure,
)
from ._spec import IGNORE, AutoShutdown, ChildKind, ChildSpec, Restart, Stoppable, Strategy
from ._tree import current_link, enter_child

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
    InvalidChildSpec,
    TooManyChildren,
)


#: The states in which restart_child and delete_child take a child.
_RESTARTABLE: Final = frozenset({ChildState.STOPPED, ChildState.IGNORED})


class _Start(enum.Enum):
    """How an attempt to start one incarnation ended."""

    STARTED = "started"
    #: The target returned IGNORE: the child is IGNORED (or removed), nothing runs.
    IGNORED = "ignored"
    FAILED = "failed"


def _escalation(
    child_id: str, error: BaseException | None
) -> tuple[BaseException | None, tuple[str, ...]]:
    """The real failure behind a child's error, and the path down to the child that had it.

    A nested supervisor that gave up (or failed to start again) is not the failure: its
    error already names the failure as ``__cause__`` and the path to it.
    """
    path = [child_id]
    while True:
        if isinstance(error, RestartIntensityExceeded) and error.child_path:
            path.extend(error.child_path)
            return error.__cause__, tuple(path)
        if (
            isinstance(error, ChildStartError)
            and error.supervisor is not None
            and error.child_id is not None
        ):
            path.append(error.child_id)
            error = error.__cause__
            continue
        return error, tuple(path)


class SupervisorRun:
    """The state of one ``Supervisor.run``; only its control task mutates it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        #: Where this run sits in a tree: read in the task that called ``run``.
        self.link = current_link()
        self.template = supervisor._template
        self.children: list[Child] = []
        self.index: dict[str, Child] = {}
        #: Children waiting in RESTARTING: the loop only looks at these for due restarts.
        self.restarting: set[Child] = set()
        self.next_member = 1
        if self.template is None:
            for spec in supervisor.specs:
                self._add(self._new_child(spec, spec.id))
        else:
            for args in supervisor._initial:
                self._add(self._new_member(args, None))
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
    def _new_child(spec: ChildSpec, label: str) -> Child:
        target = spec.target
        managed = target if isinstance(target, ManagedTarget) else None
        return Child(spec, managed, label)

    def _new_member(self, args: tuple[object, ...], child_id: str | None) -> Child:
        """A member of a dynamic supervisor: the template, with ``args`` and its own id."""
        template = self.template
        assert template is not None
        if child_id is None:
            while True:
                child_id = f"{template.id}-{self.next_member}"
                self.next_member += 1
                if child_id not in self.index:
                    break
        elif child_id in self.index:
            raise DuplicateChild(f"supervisor {self.sup.name!r} already has a child {child_id!r}")
        target = functools.partial(template.target, *args) if args else template.target
        spec = attrs.evolve(template, id=child_id, target=target)
        return self._new_child(spec, template.id)

    def _add(self, child: Child) -> None:
        self.children.append(child)
        self.index[child.id] = child

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
            kind=child.spec.kind,
            significant=child.spec.significant,
        )

    def counts(self) -> ChildCounts:
        children = self.children
        supervisors = sum(1 for c in children if c.spec.kind is ChildKind.SUPERVISOR)
        return ChildCounts(
            specs=len(children),
            active=sum(1 for c in children if c.alive),
            supervisors=supervisors,
            workers=len(children) - supervisors,
        )

    def find(self, child_id: object) -> Child:
        child = self.index.get(child_id) if isinstance(child_id, str) else None
        if child is None:
            raise ChildNotFound(f"supervisor {self.sup.name!r} has no child {child_id!r}")
        return child

    def _remove(self, child: Child) -> None:
        child.removed = True
        self.children.remove(child)
        del self.index[child.id]
        self.restarting.discard(child)

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
        link = self.link
        if sup.on_event is None and link is None:
            return
        event = SupervisorEvent(
            kind=kind,
            supervisor=sup.name,
            child_id=None if child is None else child.id,
            at=now,
            restarts=0 if child is None else child.restarts,
            failure=failure,
            delay=delay,
            child_label=None if child is None else child.label,
        )
        self._deliver(event)
        # Up the tree: each hook gets the path relative to its own supervisor.
        path: tuple[str, ...] = ()
        while link is not None:
            path = (link.label, *path)
            owner = link.parent
            if owner.sup.on_event is not None:
                owner._deliver(attrs.evolve(event, path=path))
            link = owner.link

    def _deliver(self, event: SupervisorEvent) -> None:
        """Hand ``event`` to this supervisor's hook, containing what the hook does."""
        sup = self.sup
        hook = sup.on_event
        if hook is None:
            return
        outcome = sup._containment.call(UserCode.ON_EVENT, hook, event)
        if isinstance(outcome, Failure):
            # The type only: the message is the hook's text and may hold a secret.
            self._log(
                Level.ERROR,
                "supervisor event hook failed",
                supervisor=sup.name,
                event=event.kind.value,
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
            if await self._start(child) is not _Start.FAILED:
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
                due = min((c.restart_due for c in self.restarting), default=math.inf)
                with trio.move_on_at(due):
                    await self.wake.wait()
                continue
            item = self.inbox.popleft()
            if isinstance(item, PendingCommand):
                await self._execute(item)
            else:
                await self._on_exit(*item)

    # -- starting ------------------------------------------------------------------------

    async def _start(self, child: Child) -> _Start:
        """Start one incarnation and wait until it reports started, declines or ends."""
        assert self._nursery is not None
        child.incarnation += 1
        child.scope = trio.CancelScope(shield=True)
        child.done = trio.Event()
        child.exit = None
        child.value = None
        child.state = ChildState.STARTING
        self.restarting.discard(child)
        if child.managed is not None:
            try:
                child.managed.supervised_open(self, self.timer)
            except ValueError as exc:
                child.exit = Exit(ExitKind.FAILED, exc, child.incarnation)
                child.done.set()
                child.state = ChildState.STOPPED
                return _Start.FAILED
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
            exit_ = child.exit
            if exit_ is not None and exit_.kind is ExitKind.IGNORED:
                self._ignored(child)
                return _Start.IGNORED
            child.state = ChildState.STOPPED
            return _Start.FAILED
        child.value = status.value
        child.state = ChildState.RUNNING
        child.started_at = trio.current_time()
        self._report(EventKind.CHILD_STARTED, Level.DEBUG, "child started", child)
        return _Start.STARTED

    def _ignored(self, child: Child) -> None:
        """The target declined to start: keep the spec, run nothing (OTP's ``ignore``)."""
        child.handled = child.incarnation
        child.state = ChildState.IGNORED
        if child.managed is not None:
            child.managed.supervised_close(self)
        self._report(EventKind.CHILD_IGNORED, Level.INFO, "child declined to start", child)
        # As OTP: a temporary child, or a member of a dynamic supervisor, is not kept.
        if child.spec.restart is Restart.TEMPORARY or self.template is not None:
            self._remove(child)

    async def _child_task(
        self,
        child: Child,
        incarnation: int,
        scope: trio.CancelScope,
        done: trio.Event,
        started: trio.Event,
        status: ChildStatus,
    ) -> None:
        enter_child(self, child.label)
        kind = ExitKind.RETURNED
        error: BaseException | None = None
        result: object = None
        try:
            with scope:
                result = await child.spec.target(task_status=status)
            if scope.cancelled_caught:
                kind = ExitKind.CANCELLED
            elif not status.called:
                if result is IGNORE:
                    kind = ExitKind.IGNORED
                else:
                    kind = ExitKind.FAILED
                    error = RuntimeError(
                        f"child {child.id!r} returned without calling started() "
                        "(return IGNORE to decline the start)"
                    )
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
            if restart is Restart.TEMPORARY or self.template is not None:
                self._remove(child)
            self._check_auto_shutdown(child)
            return
        await self._restart(child, exit_.error if failed else None)

    def _check_auto_shutdown(self, child: Child) -> None:
        """``child`` ended on its own for good: stop the supervisor if it was significant."""
        mode = self.sup.auto_shutdown
        if not child.spec.significant or mode is AutoShutdown.NEVER or self.stop_requested:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c is not child and c.spec.significant and (c.alive or c.state is ChildState.RESTARTING)
            for c in self.children
        ):
            return
        self._report(
            EventKind.AUTO_SHUTDOWN,
            Level.INFO,
            "significant children ended; stopping the supervisor",
            child,
        )
        self.request_stop()

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
            self.restarting.add(member)
            self._report(
                EventKind.CHILD_RESTARTING,
                Level.WARN,
                "child restarting",
                member,
                delay=delay,
            )

    def _give_up(self, child: Child, error: BaseException | None) -> None:
        sup = self.sup
        cause, path = _escalation(child.id, error)
        how = "failed" if error is not None else "exited"
        if len(path) > 1:
            how += f" because of {'/'.join(path)}"
        outcome = RestartIntensityExceeded(
            f"supervisor {sup.name!r} gave up: child {child.id!r} {how} and more than "
            f"{sup.max_restarts} restarts were needed within {sup.within:g} s",
            supervisor=sup.name,
            child_id=child.id,
            max_restarts=sup.max_restarts,
            within=sup.within,
            child_path=path,
        )
        outcome.__cause__ = cause
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
        if not self.restarting:
            return
        now = trio.current_time()
        restarting = self.restarting
        # In start order, so that a group restart starts its members in order; a single
        # one (the common case) needs no scan of a big pool.
        due = (
            list(restarting)
            if len(restarting) == 1
            else [c for c in self.children if c in restarting]
        )
        for child in due:
            if self.stop_requested:
                return
            if child.removed or child.state is not ChildState.RESTARTING:
                continue
            if child.restart_due > now:
                continue
            child.restart_due = math.inf
            child.restarts += 1
            if await self._start(child) is _Start.FAILED:
                exit_ = child.exit
                assert exit_ is not None
                await self._on_exit(child, exit_)
                return

    # -- stopping ------------------------------------------------------------------------

    async def _stop_child(self, child: Child, *, final: bool) -> None:
        """Stop one child: graceful request, wait its budget, cancel, wait, move on."""
        await self._stop_children([child], final=final)

    async def _stop_children(self, children: list[Child], *, final: bool) -> None:
        """Stop ``children`` together; each within its own budget, then cancelled.

        All are asked at once, then waited for in turn: deadlines are absolute, so the
        waits overlap and the whole takes the longest budget, not their sum. Those still
        running are cancelled together and get ``cancel_grace`` more seconds.
        """
        sup = self.sup
        stopping: list[tuple[Child, float, bool]] = []
        for child in children:
            if child.alive:
                deadline, graceful = self._ask_to_stop(child, final=final)
                stopping.append((child, deadline, graceful))
                continue
            if child.state is ChildState.RESTARTING:
                child.state = ChildState.STOPPED
                child.restart_due = math.inf
                self.restarting.discard(child)
            if final and child.managed is not None:
                child.managed.supervised_close(self)
        for child, deadline, graceful in stopping:
            done = child.done
            assert done is not None
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
        cancelled_at = trio.current_time()
        for child, _, _ in stopping:
            assert child.done is not None
            assert child.scope is not None
            if not child.done.is_set():
                child.scope.cancel()
        for child, deadline, _ in stopping:
            done = child.done
            assert done is not None
            if not done.is_set():
                with trio.move_on_at(max(deadline, cancelled_at + sup.cancel_grace)):
                    await done.wait()
                if not done.is_set():
                    self._report(
                        EventKind.CHILD_UNRESPONSIVE,
                        Level.ERROR,
                        "child is still running after cancellation; shutdown continues without it",
                        child,
                    )
        for child, _, _ in stopping:
            self._stopped(child, final=final)

    def _ask_to_stop(self, child: Child, *, final: bool) -> tuple[float, bool]:
        """Send the graceful stop request; the budget's deadline, and whether one was sent.

        ``shutdown=0`` is OTP's brutal kill: no request, the child is cancelled at once.
        """
        child.state = ChildState.STOPPING
        budget = child.spec.shutdown
        deadline = math.inf if budget is None else trio.current_time() + budget
        if budget == 0:
            return deadline, False
        if child.managed is not None:
            return deadline, child.managed.supervised_stop(final=final)
        if isinstance(child.value, Stoppable):
            try:
                child.value.request_stop()
            except Exception as exc:
                self._log(
                    Level.WARN,
                    "request_stop raised; cancelling the child",
                    supervisor=self.sup.name,
                    child=child.id,
                    error_type=type(exc).__name__,
                    error=describe_failure(exc, trio.current_time()).message,
                )
                return deadline, False
            return deadline, True
        return deadline, False

    def _stopped(self, child: Child, *, final: bool) -> None:
        """Bookkeeping once a child the supervisor stopped has ended (or was given up on)."""
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
        live = [c for c in reversed(self.children) if c.alive or c.state is ChildState.RESTARTING]
        if self.template is not None:
            # OTP's simple_one_for_one: members have no order; stop them all at once, so
            # a pool drains in the time of its slowest member, not of all of them.
            await self._stop_children(live, final=True)
        else:
            for child in live:
                await self._stop_children([child], final=True)
        stopped = set(live)
        for child in self.children:
            if child.managed is not None and child not in stopped:
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
            case StartMember(args, child_id):
                return await self._start_member(args, child_id)
            case TerminateChild(child_id):
                await self._terminate_child(self.find(child_id))
                return None
            case RestartChild(child_id):
                return await self._restart_child(self.find(child_id))
            case DeleteChild(child_id):
                self._delete_child(self.find(child_id))
                return None
            case unknown:  # pragma: no cover - mypy proves the match exhaustive
                assert_never(unknown)

    async def _start_child(self, spec: ChildSpec) -> object:
        sup = self.sup
        if spec.id in self.index:
            raise DuplicateChild(f"supervisor {sup.name!r} already has a child {spec.id!r}")
        if spec.significant and sup.auto_shutdown is AutoShutdown.NEVER:
            raise InvalidChildSpec(
                f"child {spec.id!r} is significant but supervisor {sup.name!r} has "
                "auto_shutdown=NEVER; give the supervisor an auto_shutdown or drop significant"
            )
        self._check_room()
        child = self._new_child(spec, spec.id)
        self._add(child)
        return await self._start_or_raise(child, remove=True)

    async def _start_member(self, args: tuple[object, ...], child_id: str | None) -> object:
        self._check_room()
        child = self._new_member(args, child_id)
        self._add(child)
        return await self._start_or_raise(child, remove=True)

    def _check_room(self) -> None:
        sup = self.sup
        if sup.max_children is not None and len(self.children) >= sup.max_children:
            raise TooManyChildren(
                f"supervisor {sup.name!r} already holds max_children={sup.max_children}",
                supervisor=sup.name,
                max_children=sup.max_children,
            )

    async def _start_or_raise(self, child: Child, *, remove: bool) -> object:
        outcome = await self._start(child)
        if outcome is _Start.STARTED:
            return child.value
        if outcome is _Start.IGNORED:
            return IGNORE
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
        temporary = child.spec.restart is Restart.TEMPORARY
        if (temporary or self.template is not None) and not child.removed:
            self._remove(child)

    async def _restart_child(self, child: Child) -> object:
        if child.state not in _RESTARTABLE:
            raise ChildRunning(f"child {child.id!r} is {child.state.value}, not stopped")
        return await self._start_or_raise(child, remove=False)

    def _delete_child(self, child: Child) -> None:
        if child.state not in _RESTARTABLE:
            raise ChildRunning(f"child {child.id!r} is {child.state.value}, not stopped")
        if child.managed is not None:
            child.managed.supervised_close(self)
        self._remove(child)
