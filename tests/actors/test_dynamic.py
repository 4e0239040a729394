"""Dynamic children, introspection, events and logging of a supervisor."""

from __future__ import annotations

from typing import Any

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
