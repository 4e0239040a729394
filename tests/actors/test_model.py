"""A supervisor under random crashes, checked step by step against a model of OTP semantics.

Each example runs one ``trio.run`` in a helper thread with a ``MockClock`` that only moves
when a rule says so; every rule executes inside Trio through ``trio.from_thread.run``, lets
all tasks settle, then compares the supervisor with the model: which children run, their
restart counts, when the supervisor gives up, and when significant children make it shut
down by itself. A second machine does the same for a dynamic supervisor (a pool): members
from one template, removed once they end for good, bounded by ``max_children``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cloudkit_trio.actors import (
    AutoShutdown,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    DynamicSupervisorHandle,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorHandle,
    TooManyChildren,
)
from cloudkit_trio.spi import NoopLogger

T = TypeVar("T")
WITHIN = 5.0


class Crash(Exception):
    pass


@attrs.define
class ModelChild:
    id: str
    restart: Restart
    significant: bool = False
    running: bool = True
    restarts: int = 0


@attrs.define
class Model:
    """OTP semantics as the runtime documents them, with no backoff.

    ``dynamic`` is a dynamic supervisor's: members that end for good are removed.
    """

    strategy: Strategy
    max_restarts: int
    children: list[ModelChild]
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER
    dynamic: bool = False
    now: float = 0.0
    restart_times: list[float] = attrs.field(factory=list)
    gave_up: bool = False
    shut_down: bool = False

    @property
    def over(self) -> bool:
        return self.gave_up or self.shut_down

    def find(self, child_id: str) -> ModelChild:
        return next(c for c in self.children if c.id == child_id)

    def child_ended(self, child_id: str, *, failed: bool) -> None:
        child = self.find(child_id)
        child.running = False
        restart = child.restart is Restart.PERMANENT or (
            child.restart is Restart.TRANSIENT and failed
        )
        if not restart:
            if child.restart is Restart.TEMPORARY or self.dynamic:
                self.children.remove(child)
            self.significant_ended(child)
            return
        self.restart_times.append(self.now)
        self.restart_times = [t for t in self.restart_times if t >= self.now - WITHIN]
        if len(self.restart_times) > self.max_restarts:
            self.gave_up = True
            for c in self.children:
                c.running = False
            return
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        else:
            members = self.children
            if self.strategy is Strategy.REST_FOR_ONE:
                members = members[members.index(child) :]
            group = [c for c in members if c is child or c.running]
        for member in group:
            if member is not child and member.restart is Restart.TEMPORARY:
                self.children.remove(member)
                continue
            member.running = True
            member.restarts += 1

    def significant_ended(self, child: ModelChild) -> None:
        """A child ended on its own for good: OTP's auto_shutdown rule."""
        if not child.significant or self.auto_shutdown is AutoShutdown.NEVER:
            return
        if self.auto_shutdown is AutoShutdown.ALL_SIGNIFICANT and any(
            c.significant and c.running for c in self.children if c is not child
        ):
            return
        self.shut_down = True
        for c in self.children:
            c.running = False

    def terminated(self, child_id: str) -> None:
        child = self.find(child_id)
        child.running = False
        if child.restart is Restart.TEMPORARY or self.dynamic:
            self.children.remove(child)


class TrioThread:
    """One trio.run in a thread; run(fn) executes fn inside it and returns its result."""

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        trio.run(self._root, clock=self.clock)

    async def _root(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self._ready.set()
            await trio.sleep_forever()

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def settled() -> T:
            result = await fn()
            await trio.testing.wait_all_tasks_blocked()
            return result

        return trio.from_thread.run(settled, trio_token=self.token)

    def close(self) -> None:
        trio.from_thread.run_sync(self.nursery.cancel_scope.cancel, trio_token=self.token)
        self._thread.join(timeout=10)


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioThread()
        self.live: dict[str, trio.Event] = {}
        self.actions: dict[str, str] = {}
        self.outcome: BaseException | None = None
        self.returned = False
        self.handle: SupervisorHandle | None = None
        self.next_dynamic = 0
        self.auto_shutdown = AutoShutdown.NEVER

    def teardown(self) -> None:
        self.trio.close()

    def may_be_significant(self, restart: Restart, wanted: bool) -> bool:
        """Significant where OTP allows it: not permanent, not under auto_shutdown=NEVER."""
        return (
            wanted
            and restart is not Restart.PERMANENT
            and self.auto_shutdown is not AutoShutdown.NEVER
        )

    def spec(self, child_id: str, restart: Restart, *, significant: bool = False) -> ChildSpec:
        async def target(*, task_status: trio.TaskStatus[Any]) -> None:
            event = trio.Event()
            self.live[child_id] = event
            try:
                task_status.started()
                await event.wait()
                if self.actions.pop(child_id) == "crash":
                    raise Crash(child_id)
            finally:
                if self.live.get(child_id) is event:
                    del self.live[child_id]

        return ChildSpec(child_id, target, restart=restart, significant=significant)

    @initialize(
        strategy=st.sampled_from(Strategy),
        children=st.lists(
            st.tuples(st.sampled_from(Restart), st.booleans()), min_size=1, max_size=4
        ),
        max_restarts=st.integers(0, 4),
        auto_shutdown=st.sampled_from(AutoShutdown),
    )
    def start(
        self,
        strategy: Strategy,
        children: list[tuple[Restart, bool]],
        max_restarts: int,
        auto_shutdown: AutoShutdown,
    ) -> None:
        self.auto_shutdown = auto_shutdown
        ids = [f"c{i}" for i in range(len(children))]
        kinds = [(r, self.may_be_significant(r, s)) for r, s in children]
        self.model = Model(
            strategy,
            max_restarts,
            [ModelChild(i, r, s) for i, (r, s) in zip(ids, kinds, strict=True)],
            auto_shutdown=auto_shutdown,
        )
        supervisor = Supervisor(
            [self.spec(i, r, significant=s) for i, (r, s) in zip(ids, kinds, strict=True)],
            strategy=strategy,
            max_restarts=max_restarts,
            within=WITHIN,
            auto_shutdown=auto_shutdown,
            logger=NoopLogger(),
        )

        async def runner(*, task_status: trio.TaskStatus[SupervisorHandle]) -> None:
            try:
                await supervisor.run(task_status=task_status)
            except RestartIntensityExceeded as exc:
                self.outcome = exc
            else:
                self.returned = True

        async def start() -> SupervisorHandle:
            handle: SupervisorHandle = await self.trio.nursery.start(runner)
            return handle

        self.handle = self.trio.run(start)

    def running_ids(self) -> list[str]:
        return [c.id for c in self.model.children if c.running]

    def stopped_ids(self) -> list[str]:
        return [c.id for c in self.model.children if not c.running]

    def end_child(self, child_id: str, action: str) -> None:
        async def end() -> None:
            self.actions[child_id] = action
            self.live[child_id].set()

        self.trio.run(end)
        self.model.child_ended(child_id, failed=action == "crash")

    @precondition(lambda self: not self.model.over and self.running_ids())
    @rule(data=st.data(), action=st.sampled_from(["crash", "return"]))
    def end(self, data: st.DataObject, action: str) -> None:
        self.end_child(data.draw(st.sampled_from(self.running_ids())), action)

    @precondition(lambda self: not self.model.over)
    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 6.0]))
    def advance(self, seconds: float) -> None:
        async def jump() -> None:
            self.trio.clock.jump(seconds)

        self.trio.run(jump)
        self.model.now += seconds

    @precondition(lambda self: not self.model.over and self.running_ids())
    @rule(data=st.data())
    def terminate(self, data: st.DataObject) -> None:
        child_id = data.draw(st.sampled_from(self.running_ids()))
        handle = self.handle
        assert handle is not None
        self.trio.run(lambda: handle.terminate_child(child_id))
        self.model.terminated(child_id)

    @precondition(lambda self: not self.model.over and self.stopped_ids())
    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        child_id = data.draw(st.sampled_from(self.stopped_ids()))
        handle = self.handle
        assert handle is not None
        self.trio.run(lambda: handle.restart_child(child_id))
        self.model.find(child_id).running = True

    @precondition(lambda self: not self.model.over and len(self.model.children) < 6)
    @rule(restart=st.sampled_from(Restart), significant=st.booleans())
    def start_dynamic(self, restart: Restart, significant: bool) -> None:
        child_id = f"d{self.next_dynamic}"
        self.next_dynamic += 1
        handle = self.handle
        assert handle is not None
        significant = self.may_be_significant(restart, significant)
        spec = self.spec(child_id, restart, significant=significant)
        self.trio.run(lambda: handle.start_child(spec))
        self.model.children.append(ModelChild(child_id, restart, significant))

    @precondition(lambda self: self.model.over)
    @rule()
    def observe(self) -> None:
        """The only move left once the supervisor ended; the invariant does the work."""

    @invariant()
    def matches_the_model(self) -> None:
        handle = self.handle
        if handle is None:
            return
        if self.model.gave_up:
            assert isinstance(self.outcome, RestartIntensityExceeded)
            assert not handle.running
            assert self.live == {}
            return
        if self.model.shut_down:
            assert self.outcome is None
            assert self.returned
            assert not handle.running
            assert self.live == {}
            return
        assert self.outcome is None
        assert handle.running
        observed = [
            (c.id, c.state is ChildState.RUNNING, c.restarts) for c in handle.which_children()
        ]
        expected = [(c.id, c.running, c.restarts) for c in self.model.children]
        assert observed == expected
        assert sorted(self.live) == sorted(self.running_ids())


SupervisorMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestSupervisorModel(SupervisorMachine.TestCase):  # type: ignore[misc, valid-type]
    """Random crashes, returns, time jumps, commands and significant children agree with
    the OTP model."""


class PoolMachine(RuleBasedStateMachine):
    """A DynamicSupervisor: start_member, crashes, returns, terminate_child, max_children."""

    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioThread()
        self.live: dict[str, trio.Event] = {}
        self.actions: dict[str, str] = {}
        self.outcome: BaseException | None = None
        self.returned = False
        self.handle: DynamicSupervisorHandle | None = None
        self.next_member = 1

    def teardown(self) -> None:
        self.trio.close()

    @initialize(
        restart=st.sampled_from(Restart),
        significant=st.booleans(),
        auto_shutdown=st.sampled_from(AutoShutdown),
        max_restarts=st.integers(0, 4),
        max_children=st.integers(1, 4),
    )
    def start(
        self,
        restart: Restart,
        significant: bool,
        auto_shutdown: AutoShutdown,
        max_restarts: int,
        max_children: int,
    ) -> None:
        significant = (
            significant
            and restart is not Restart.PERMANENT
            and auto_shutdown is not AutoShutdown.NEVER
        )
        self.significant = significant
        self.restart_type = restart
        self.max_children = max_children
        self.model = Model(
            Strategy.ONE_FOR_ONE, max_restarts, [], auto_shutdown=auto_shutdown, dynamic=True
        )

        async def member(tag: str, *, task_status: trio.TaskStatus[Any]) -> None:
            # ``tag`` is the argument start_member passed: the member's own id here.
            event = trio.Event()
            self.live[tag] = event
            try:
                task_status.started()
                await event.wait()
                if self.actions.pop(tag) == "crash":
                    raise Crash(tag)
            finally:
                if self.live.get(tag) is event:
                    del self.live[tag]

        pool = DynamicSupervisor(
            ChildSpec("m", member, restart=restart, significant=significant),
            max_children=max_children,
            max_restarts=max_restarts,
            within=WITHIN,
            auto_shutdown=auto_shutdown,
            logger=NoopLogger(),
        )

        async def runner(*, task_status: trio.TaskStatus[DynamicSupervisorHandle]) -> None:
            try:
                await pool.run(task_status=task_status)
            except RestartIntensityExceeded as exc:
                self.outcome = exc
            else:
                self.returned = True

        async def start() -> DynamicSupervisorHandle:
            handle: DynamicSupervisorHandle = await self.trio.nursery.start(runner)
            return handle

        self.handle = self.trio.run(start)

    def running_ids(self) -> list[str]:
        return [c.id for c in self.model.children if c.running]

    @precondition(lambda self: not self.model.over)
    @rule()
    def start_member(self) -> None:
        handle = self.handle
        assert handle is not None
        member_id = f"m-{self.next_member}"
        full = len(self.model.children) >= self.max_children

        async def start() -> str:
            try:
                await handle.start_member(member_id)
            except TooManyChildren:
                return "refused"
            return "started"

        assert self.trio.run(start) == ("refused" if full else "started")
        if not full:
            self.next_member += 1
            self.model.children.append(ModelChild(member_id, self.restart_type, self.significant))

    @precondition(lambda self: not self.model.over and self.running_ids())
    @rule(data=st.data(), action=st.sampled_from(["crash", "return"]))
    def end(self, data: st.DataObject, action: str) -> None:
        member_id = data.draw(st.sampled_from(self.running_ids()))

        async def end() -> None:
            self.actions[member_id] = action
            self.live[member_id].set()

        self.trio.run(end)
        self.model.child_ended(member_id, failed=action == "crash")

    @precondition(lambda self: not self.model.over and self.running_ids())
    @rule(data=st.data())
    def terminate(self, data: st.DataObject) -> None:
        member_id = data.draw(st.sampled_from(self.running_ids()))
        handle = self.handle
        assert handle is not None
        self.trio.run(lambda: handle.terminate_child(member_id))
        self.model.terminated(member_id)

    @precondition(lambda self: not self.model.over)
    @rule(seconds=st.sampled_from([0.5, 2.5, 6.0]))
    def advance(self, seconds: float) -> None:
        async def jump() -> None:
            self.trio.clock.jump(seconds)

        self.trio.run(jump)
        self.model.now += seconds

    @precondition(lambda self: self.model.over)
    @rule()
    def observe(self) -> None:
        """The only move left once the pool ended; the invariant does the work."""

    @invariant()
    def matches_the_model(self) -> None:
        handle = self.handle
        if handle is None:
            return
        if self.model.over:
            assert not handle.running
            assert self.live == {}
            if self.model.gave_up:
                assert isinstance(self.outcome, RestartIntensityExceeded)
            else:
                assert self.outcome is None
                assert self.returned
            return
        assert self.outcome is None
        assert handle.running
        observed = [
            (c.id, c.state is ChildState.RUNNING, c.restarts) for c in handle.which_children()
        ]
        expected = [(c.id, c.running, c.restarts) for c in self.model.children]
        assert observed == expected
        assert all(c.running for c in self.model.children)  # nothing stopped is kept
        assert sorted(self.live) == sorted(self.running_ids())
        counts = handle.count_children()
        assert (counts.specs, counts.active) == (len(expected), len(expected))


PoolMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestPoolModel(PoolMachine.TestCase):  # type: ignore[misc, valid-type]
    """Members of a dynamic supervisor under random crashes, returns, terminations and time
    jumps agree with the OTP model of simple_one_for_one."""
