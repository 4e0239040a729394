"""Dynamic children, introspection, events and logging of a supervisor."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    ChildInfo,
    ChildNotFound,
    ChildRunning,
    ChildSpec,
    ChildStartError,
    ChildState,
    DuplicateChild,
    EventKind,
    Restart,
    Supervisor,
    SupervisorEvent,
    SupervisorNotRunning,
    TooManyChildren,
    actor_child,
)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


class TestDynamicChildren:
    async def test_start_child_returns_the_started_value_and_is_supervised(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """start_child appends the child, returns its started value, restarts it on crash."""
        async with Supervisor([puppets.spec("a")]) as sup:
            value = await sup.start_child(puppets.spec("dyn"))
            assert value is puppets.live["dyn"]
            assert [c.id for c in sup.which_children()] == ["a", "dyn"]
            puppets.crash("dyn")
            await settle()
            assert sup.which_children().by_id("dyn").restarts == 1
        assert puppets.events("stop")[-2:] == ["dyn", "a"]

    async def test_duplicate_id_is_a_value_error(self, autojump_clock: Any, puppets: Any) -> None:
        """Adding a child whose id is taken raises DuplicateChild, a ValueError."""
        async with Supervisor([puppets.spec("a")]) as sup:
            with pytest.raises(DuplicateChild) as info:
                await sup.start_child(puppets.spec("a"))
            assert isinstance(info.value, ValueError)
        with pytest.raises(DuplicateChild):
            Supervisor([puppets.spec("x"), puppets.spec("x")])

    async def test_max_children_caps_the_supervisor(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """start_child beyond max_children raises TooManyChildren; stopped specs count."""
        async with Supervisor([puppets.spec("a")], max_children=2) as sup:
            await sup.start_child(puppets.spec("b"))
            with pytest.raises(TooManyChildren):
                await sup.start_child(puppets.spec("c"))
            await sup.terminate_child("b")
            with pytest.raises(TooManyChildren):
                await sup.start_child(puppets.spec("c"))
            await sup.delete_child("b")
            await sup.start_child(puppets.spec("c"))

    async def test_terminate_restart_delete(self, autojump_clock: Any, puppets: Any) -> None:
        """terminate keeps the spec stopped; restart_child revives it; delete_child removes it."""
        async with Supervisor([puppets.spec("a"), puppets.spec("b")]) as sup:
            await sup.terminate_child("a")
            assert "a" not in puppets.live
            assert sup.which_children().by_id("a").state is ChildState.STOPPED
            with pytest.raises(ChildRunning):
                await sup.delete_child("b")
            with pytest.raises(ChildRunning):
                await sup.restart_child("b")
            await sup.restart_child("a")
            assert "a" in puppets.live
            await sup.terminate_child("a")
            await sup.delete_child("a")
            assert [c.id for c in sup.which_children()] == ["b"]
            with pytest.raises(ChildNotFound):
                await sup.terminate_child("a")

    async def test_terminated_child_is_not_restarted_by_its_siblings(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child stopped with terminate_child stays stopped when ONE_FOR_ALL restarts."""
        from cloudkit_trio.actors import Strategy

        specs = [puppets.spec("a"), puppets.spec("b")]
        async with Supervisor(specs, strategy=Strategy.ONE_FOR_ALL) as sup:
            await sup.terminate_child("a")
            puppets.crash("b")
            await settle()
            assert sorted(puppets.live) == ["b"]
            assert sup.which_children().by_id("a").state is ChildState.STOPPED

    async def test_terminating_a_temporary_child_removes_it(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A temporary child's spec goes away with it."""
        async with Supervisor([puppets.spec("t", restart=Restart.TEMPORARY)]) as sup:
            await sup.terminate_child("t")
            assert sup.which_children() == ()

    async def test_failed_dynamic_start_raises_and_is_not_added(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A dynamic child failing at start raises ChildStartError and leaves no spec."""
        cause = OSError("no port")
        async with Supervisor([puppets.spec("a")]) as sup:
            with pytest.raises(ChildStartError) as info:
                await sup.start_child(puppets.spec("bad", fail_start=cause))
            assert info.value.__cause__ is cause
            assert [c.id for c in sup.which_children()] == ["a"]
            assert sup.running

    async def test_commands_fail_when_not_running(self, autojump_clock: Any, puppets: Any) -> None:
        """After the supervisor stopped, commands raise SupervisorNotRunning; stop() is a no-op."""
        supervisor = Supervisor([puppets.spec("a")])
        async with supervisor as sup:
            pass
        with pytest.raises(SupervisorNotRunning):
            await sup.start_child(puppets.spec("b"))
        await sup.stop()
        sup.stop()  # not awaiting is fine: the request itself is synchronous
        assert [c.state for c in sup.which_children()] == [ChildState.STOPPED]

    async def test_dynamic_actor_can_evict_itself_as_temporary(self, autojump_clock: Any) -> None:
        """Dynamic temporary actors are removed when they stop themselves (idle eviction)."""
        from cloudkit_trio.actors import Actor, ActorContext

        class Idle(Actor[str, str]):
            async def on_start(self, ctx: ActorContext[str, str]) -> None:
                self.ctx = ctx

            async def handle_call(self, msg: str) -> str:
                self.ctx.stop()
                return "bye"

        async with Supervisor() as sup:
            spec, ref = actor_child("breaker:a", Idle, restart=Restart.TEMPORARY)
            assert await sup.start_child(spec) == ref
            assert await ref.call("x") == "bye"
            await settle()
            assert sup.which_children() == ()


class TestIntrospection:
    async def test_which_children_records_and_await_form(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """which_children gives frozen records with id and restarts; awaiting it works too."""
        async with Supervisor([puppets.spec("a"), puppets.spec("b")]) as sup:
            puppets.crash("b", ValueError("x" * 500))
            await settle()
            children = await sup.which_children()
            assert children == sup.which_children()
            b = children.by_id("b")
            assert isinstance(b, ChildInfo)
            assert (b.id, b.restarts, b.state) == ("b", 1, ChildState.RUNNING)
            assert b.last_failure is not None
            assert b.last_failure.type_name == "ValueError"
            assert len(b.last_failure.message) == 200
            assert str(b.last_failure).startswith("ValueError: xxx")
            with pytest.raises(AttributeError):
                b.restarts = 5  # type: ignore[misc]

    async def test_snapshot_covers_nested_trees(self, autojump_clock: Any, puppets: Any) -> None:
        """snapshot() includes nested supervisors and actor mailboxes; walk() yields paths."""
        from cloudkit_trio.actors import Actor

        counter = actor_child("counter", Actor[int, int])
        inner = Supervisor([puppets.spec("x"), counter.spec], name="inner")
        async with Supervisor([puppets.spec("a"), inner.child_spec("inner")], name="root") as sup:
            snap = sup.snapshot()
            assert snap.name == "root"
            assert snap.running
            paths = [path for path, _ in snap.walk()]
            assert paths == [("a",), ("inner",), ("inner", "x"), ("inner", "counter")]
            inner_info = snap.children[1]
            assert inner_info.subtree is not None
            assert inner_info.subtree.name == "inner"
            mailbox = inner_info.subtree.children[1].mailbox
            assert mailbox is not None
            assert mailbox.open
            assert sup.which_children()[1].subtree is None

    async def test_events_reach_the_hook_as_frozen_records(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """The on_event hook sees failures and restarts per child, e.g. for metrics."""
        events: list[SupervisorEvent] = []
        async with Supervisor([puppets.spec("a"), puppets.spec("b")], on_event=events.append):
            puppets.crash("b", KeyError("k"))
            await settle()
        kinds = [(e.kind, e.child_id) for e in events]
        assert (EventKind.CHILD_FAILED, "b") in kinds
        assert (EventKind.CHILD_RESTARTING, "b") in kinds
        assert kinds[-1] == (EventKind.SUPERVISOR_STOPPED, None)
        failed = next(e for e in events if e.kind is EventKind.CHILD_FAILED)
        assert failed.failure is not None
        assert failed.failure.type_name == "KeyError"
        restarts_by_child: dict[str, int] = {}
        for e in events:
            if e.kind is EventKind.CHILD_RESTARTING and e.child_id is not None:
                restarts_by_child[e.child_id] = restarts_by_child.get(e.child_id, 0) + 1
        assert restarts_by_child == {"b": 1}

    async def test_broken_hook_is_logged_not_fatal(
        self, autojump_clock: Any, puppets: Any, capture: Any
    ) -> None:
        """A hook that raises is logged; supervision carries on."""

        def hook(event: SupervisorEvent) -> None:
            raise RuntimeError("metrics down")

        async with Supervisor([puppets.spec("a")], on_event=hook, logger=capture) as sup:
            puppets.crash("a")
            await settle()
            assert sup.which_children().by_id("a").restarts == 1
        assert "supervisor event hook failed" in capture.messages()

    async def test_log_entries_carry_structured_fields(
        self, autojump_clock: Any, puppets: Any, capture: Any
    ) -> None:
        """Failures and restarts are logged with supervisor, child and error fields."""
        async with Supervisor([puppets.spec("a")], name="root", logger=capture):
            puppets.crash("a", ValueError("bad"))
            await settle()
        failed = next(e for e in capture.entries if e.message == "child failed")
        assert failed.fields["supervisor"] == "root"
        assert failed.fields["child"] == "a"
        assert failed.fields["error_type"] == "ValueError"
        assert failed.fields["error"] == "bad"
        restarting = next(e for e in capture.entries if e.message == "child restarting")
        assert restarting.fields["delay"] == 0.0

    def test_spec_validation(self) -> None:
        """ChildSpec and Supervisor reject bad arguments with the matching builtin errors."""

        async def target(*, task_status: trio.TaskStatus[Any]) -> None:
            task_status.started()

        with pytest.raises(TypeError):
            ChildSpec(1, target)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ChildSpec("a", "not callable")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="shutdown"):
            ChildSpec("a", target, shutdown=-1)
        with pytest.raises(ValueError, match="max_restarts"):
            Supervisor(max_restarts=-1)
        with pytest.raises(ValueError, match="within"):
            Supervisor(within=0)
        with pytest.raises(TypeError):
            Supervisor(["a"])  # type: ignore[list-item]


@attrs.define
class _Waker:
    event: trio.Event

    def request_stop(self) -> None:
        self.event.set()


class Job:
    """A pool member's body: ``job(name)`` runs until told to crash or return, or stopped."""

    def __init__(self) -> None:
        self.live: dict[str, trio.Event] = {}
        self.outcome: dict[str, str] = {}
        self.started: list[str] = []

    async def __call__(
        self, name: str, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        wake = trio.Event()
        self.live[name] = wake
        self.started.append(name)
        task_status.started(_Waker(wake))  # the supervisor's stop request wakes it too
        try:
            await wake.wait()
            if self.outcome.pop(name, "") == "crash":
                raise ValueError(name)
        finally:
            self.live.pop(name, None)

    def end(self, name: str, how: str) -> None:
        self.outcome[name] = how
        self.live[name].set()


class TestDynamicSupervisor:
    async def test_members_come_from_the_template_with_their_arguments(
        self, autojump_clock: Any
    ) -> None:
        """start_member(*args) runs target(*args); members are named <template id>-<n>."""
        from cloudkit_trio.actors import DynamicSupervisor, DynamicSupervisorHandle

        job = Job()
        pool = DynamicSupervisor(ChildSpec("job", job), name="pool")
        async with pool as handle:
            assert isinstance(handle, DynamicSupervisorHandle)
            assert handle is pool.handle
            await handle.start_member("a")
            await handle.start_member("b")
            await handle.start_member("c", id="custom")
            assert [c.id for c in handle.which_children()] == ["job-1", "job-2", "custom"]
            assert job.started == ["a", "b", "c"]
            spec = handle.get_childspec("job-2")
            assert spec.id == "job-2"
            assert spec.restart is Restart.PERMANENT
            with pytest.raises(DuplicateChild):
                await handle.start_member("d", id="custom")

    async def test_a_failed_member_is_restarted_alone_with_its_arguments(
        self, autojump_clock: Any
    ) -> None:
        """ONE_FOR_ONE: the crashed member restarts with the same arguments and id."""
        from cloudkit_trio.actors import DynamicSupervisor

        job = Job()
        async with DynamicSupervisor(ChildSpec("job", job)) as handle:
            await handle.start_member("a")
            await handle.start_member("b")
            job.end("a", "crash")
            await settle()
            assert job.started == ["a", "b", "a"]
            children = handle.which_children()
            assert [(c.id, c.restarts) for c in children] == [("job-1", 1), ("job-2", 0)]

    @pytest.mark.parametrize(
        ("restart", "how"),
        [
            (Restart.TRANSIENT, "return"),
            (Restart.TEMPORARY, "return"),
            (Restart.TEMPORARY, "crash"),
        ],
    )
    async def test_a_member_that_ends_for_good_is_removed(
        self, autojump_clock: Any, restart: Restart, how: str
    ) -> None:
        """Unlike a plain supervisor's transient child, an ended member leaves no spec."""
        from cloudkit_trio.actors import DynamicSupervisor

        job = Job()
        async with DynamicSupervisor(ChildSpec("job", job, restart=restart)) as handle:
            await handle.start_member("a")
            job.end("a", how)
            await settle()
            assert handle.which_children() == ()
            assert handle.count_children().specs == 0

    async def test_terminate_child_removes_the_member(self, autojump_clock: Any) -> None:
        """terminate_child stops a member for good; restart_child has nothing to act on."""
        from cloudkit_trio.actors import DynamicSupervisor

        job = Job()
        async with DynamicSupervisor(ChildSpec("job", job)) as handle:
            await handle.start_member("a")
            await handle.terminate_child("job-1")
            assert handle.which_children() == ()
            with pytest.raises(ChildNotFound):
                await handle.restart_child("job-1")

    async def test_max_children_bounds_the_members_at_once(self, autojump_clock: Any) -> None:
        """Past max_children start_member raises TooManyChildren; ended members free room."""
        from cloudkit_trio.actors import DynamicSupervisor

        job = Job()
        pool = DynamicSupervisor(
            ChildSpec("job", job, restart=Restart.TRANSIENT), max_children=2, name="pool"
        )
        async with pool as handle:
            await handle.start_member("a")
            await handle.start_member("b")
            with pytest.raises(TooManyChildren) as info:
                await handle.start_member("c")
            assert info.value.max_children == 2
            assert info.value.supervisor == "pool"
            assert job.started == ["a", "b"]
            job.end("a", "return")
            await settle()
            await handle.start_member("c")
            assert [c.id for c in handle.which_children()] == ["job-2", "job-3"]

    async def test_initial_members_start_in_order_and_again_after_a_restart(
        self, autojump_clock: Any
    ) -> None:
        """initial= members start with the pool, each started before the next, and come back
        when the parent restarts the pool; members added later do not."""
        from cloudkit_trio.actors import DynamicSupervisor

        job = Job()
        pool = DynamicSupervisor(
            ChildSpec("job", job), initial=[("a",), ("b",)], max_restarts=0, name="pool"
        )
        async with Supervisor([pool.child_spec()]):
            assert job.started == ["a", "b"]
            await pool.handle.start_member("later")
            job.end("a", "crash")  # the pool gives up; its parent restarts it
            await settle()
            assert [c.id for c in pool.handle.which_children()] == ["job-1", "job-2"]
            assert job.started == ["a", "b", "later", "a", "b"]

    async def test_shutdown_stops_all_members_at_once(self, autojump_clock: Any) -> None:
        """Members are asked together: the pool drains in the slowest member's time."""
        from cloudkit_trio.actors import DynamicSupervisor, StopSignal

        stopped: list[tuple[int, float]] = []

        async def slow(seconds: int, *, task_status: trio.TaskStatus[StopSignal]) -> None:
            stop = StopSignal()
            task_status.started(stop)
            await stop.wait()
            await trio.sleep(seconds)  # finishing the item in hand
            stopped.append((seconds, trio.current_time()))

        pool = DynamicSupervisor(ChildSpec("slow", slow, shutdown=10.0))
        async with pool as handle:
            for seconds in (1, 3, 2):
                await handle.start_member(seconds)
        assert sorted(stopped) == [(1, 1.0), (2, 2.0), (3, 3.0)]
        assert trio.current_time() == 3.0

    async def test_a_member_over_budget_is_cancelled_with_the_others_in_time(
        self, autojump_clock: Any, capture: Any
    ) -> None:
        """One hung member: cancelled at its budget, reported; the rest were not held up."""
        from cloudkit_trio.actors import DynamicSupervisor, StopSignal

        ended: dict[str, float] = {}

        async def member(kind: str, *, task_status: trio.TaskStatus[StopSignal]) -> None:
            stop = StopSignal()
            task_status.started(stop)
            try:
                await stop.wait()
                if kind == "hung":
                    await trio.sleep_forever()
            finally:
                ended[kind] = trio.current_time()

        pool = DynamicSupervisor(ChildSpec("m", member, shutdown=2.0), logger=capture)
        async with pool as handle:
            await handle.start_member("hung")
            await handle.start_member("quick")
        assert ended == {"quick": 0.0, "hung": 2.0}
        assert "child did not stop within its shutdown budget; cancelling it" in (
            capture.messages()
        )

    async def test_start_child_is_refused_with_a_pointer_to_start_member(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A dynamic supervisor's children come from its template only."""
        from cloudkit_trio.actors import DynamicSupervisor

        async with DynamicSupervisor(puppets.spec("t")) as handle:
            with pytest.raises(TypeError, match="start_member"):
                await handle.start_child(puppets.spec("x"))

    def test_construction_is_validated(self, puppets: Any) -> None:
        """Templates must be plain ChildSpecs, not actors; initial members fit max_children."""
        from cloudkit_trio.actors import Actor, DynamicSupervisor

        with pytest.raises(TypeError, match="ChildSpec"):
            DynamicSupervisor("job")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="actor"):
            DynamicSupervisor(actor_child("a", Actor[int, int]).spec)
        with pytest.raises(ValueError, match="max_children"):
            DynamicSupervisor(puppets.spec("t"), initial=[(), ()], max_children=1)
        assert "template='t'" in repr(DynamicSupervisor(puppets.spec("t")))

    async def test_a_member_failing_to_start_is_not_added(self, autojump_clock: Any) -> None:
        """start_member raises ChildStartError with the member's exception as cause."""
        from cloudkit_trio.actors import DynamicSupervisor

        refusal = OSError("no")

        async def picky(ok: bool, *, task_status: trio.TaskStatus[None]) -> None:
            if not ok:
                raise refusal
            task_status.started()
            await trio.sleep_forever()

        async with DynamicSupervisor(ChildSpec("p", picky)) as handle:
            with pytest.raises(ChildStartError) as info:
                await handle.start_member(False)
            assert info.value.__cause__ is refusal
            await handle.start_member(True)
            assert [c.id for c in handle.which_children()] == ["p-2"]

    async def test_generated_ids_skip_ids_taken_by_hand(self, autojump_clock: Any) -> None:
        """A member named "job-1" by hand makes the next generated id "job-2"."""
        from cloudkit_trio.actors import DynamicSupervisor

        job = Job()
        async with DynamicSupervisor(ChildSpec("job", job)) as handle:
            await handle.start_member("a", id="job-1")
            await handle.start_member("b")
            assert [c.id for c in handle.which_children()] == ["job-1", "job-2"]
            with pytest.raises(TypeError, match="id"):
                await handle.start_member("c", id=3)  # type: ignore[arg-type]

    def test_a_significant_template_needs_an_auto_shutdown(self, puppets: Any) -> None:
        """As for a plain supervisor's children: InvalidChildSpec under NEVER."""
        from cloudkit_trio.actors import AutoShutdown, DynamicSupervisor, InvalidChildSpec

        spec = puppets.spec("t")
        template = ChildSpec("t", spec.target, restart=Restart.TRANSIENT, significant=True)
        with pytest.raises(InvalidChildSpec, match="auto_shutdown"):
            DynamicSupervisor(template)
        DynamicSupervisor(template, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
