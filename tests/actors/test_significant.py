"""Significant children and auto_shutdown, as OTP's supervisor defines them."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    AutoShutdown,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    EventKind,
    InvalidChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEvent,
)

ANY = AutoShutdown.ANY_SIGNIFICANT
ALL = AutoShutdown.ALL_SIGNIFICANT


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


class TestConfiguration:
    def test_a_permanent_significant_child_is_refused(self, puppets: Any) -> None:
        """significant=True needs TRANSIENT or TEMPORARY: InvalidChildSpec, a ValueError."""

        async def target(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()

        with pytest.raises(InvalidChildSpec, match="PERMANENT") as info:
            ChildSpec("a", target, significant=True)
        assert isinstance(info.value, ValueError)
        for restart in (Restart.TRANSIENT, Restart.TEMPORARY):
            assert ChildSpec("a", target, restart=restart, significant=True).significant

    def test_significant_children_need_an_auto_shutdown(self, puppets: Any) -> None:
        """Under auto_shutdown=NEVER (the default) a significant child is refused, as in OTP."""
        spec = puppets.spec("a", restart=Restart.TRANSIENT)
        significant = ChildSpec(spec.id, spec.target, restart=spec.restart, significant=True)
        with pytest.raises(InvalidChildSpec, match="auto_shutdown"):
            Supervisor([significant])
        Supervisor([significant], auto_shutdown=ANY)
        with pytest.raises(TypeError, match="AutoShutdown"):
            Supervisor(auto_shutdown="any")  # type: ignore[arg-type]

    async def test_start_child_refuses_a_significant_child_under_never(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A dynamic child is checked the same way; the supervisor carries on."""
        spec = puppets.spec("a", restart=Restart.TEMPORARY)
        significant = ChildSpec("a", spec.target, restart=Restart.TEMPORARY, significant=True)
        async with Supervisor() as sup:
            with pytest.raises(InvalidChildSpec):
                await sup.start_child(significant)
            assert sup.which_children() == ()
            assert sup.running


def significant(puppets: Any, child_id: str, restart: Restart) -> ChildSpec:
    spec = puppets.spec(child_id, restart=restart)
    assert isinstance(spec, ChildSpec)
    return ChildSpec(child_id, spec.target, restart=restart, significant=True)


class TestAnySignificant:
    @pytest.mark.parametrize(
        ("restart", "how", "shuts_down"),
        [
            (Restart.TRANSIENT, "return", True),
            (Restart.TRANSIENT, "crash", False),  # restarted: it did not end for good
            (Restart.TEMPORARY, "return", True),
            (Restart.TEMPORARY, "crash", True),
        ],
    )
    async def test_a_significant_child_ending_for_good_stops_the_supervisor(
        self, autojump_clock: Any, puppets: Any, restart: Restart, how: str, shuts_down: bool
    ) -> None:
        """Transient returning, temporary returning or crashing: the others stop in reverse
        order and run() returns normally; a restarted transient child changes nothing."""
        events: list[SupervisorEvent] = []
        specs = [puppets.spec("a"), significant(puppets, "s", restart), puppets.spec("c")]
        supervisor = Supervisor(specs, auto_shutdown=ANY, on_event=events.append)
        async with trio.open_nursery() as nursery:
            sup = await nursery.start(supervisor.run)
            puppets.clear()
            if how == "crash":
                puppets.crash("s")
            else:
                puppets.finish("s")
            await settle()
            assert sup.running is not shuts_down
            if shuts_down:
                assert puppets.events("stop") == ["s", "c", "a"]
                triggered = [e for e in events if e.kind is EventKind.AUTO_SHUTDOWN]
                assert [e.child_id for e in triggered] == ["s"]
            else:
                assert puppets.events("start") == ["s"]
                sup.stop()

    async def test_a_non_significant_child_ending_changes_nothing(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Only significant children count."""
        specs = [
            puppets.spec("t", restart=Restart.TRANSIENT),
            significant(puppets, "s", Restart.TRANSIENT),
        ]
        async with Supervisor(specs, auto_shutdown=ANY) as sup:
            puppets.finish("t")
            await settle()
            assert sup.running

    async def test_terminating_a_significant_child_does_not_trigger(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child the supervisor stopped (terminate_child) did not end by itself."""
        async with Supervisor(
            [puppets.spec("a"), significant(puppets, "s", Restart.TRANSIENT)], auto_shutdown=ANY
        ) as sup:
            await sup.terminate_child("s")
            await settle()
            assert sup.running
            assert sup.which_children().by_id("s").state is ChildState.STOPPED

    @pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
    async def test_a_significant_sibling_taken_down_by_a_restart_does_not_trigger(
        self, autojump_clock: Any, puppets: Any, strategy: Strategy
    ) -> None:
        """Stopped because a sibling died: not an end of its own (it is restarted, or removed)."""
        specs = [puppets.spec("a"), significant(puppets, "s", Restart.TEMPORARY)]
        async with Supervisor(specs, strategy=strategy, auto_shutdown=ANY) as sup:
            puppets.crash("a")
            await settle()
            assert sup.running
            assert [c.id for c in sup.which_children()] == ["a"]

    async def test_a_supervisor_that_shut_down_is_not_restarted_as_a_transient_child(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """The auto shutdown is a normal return: a transient parent spec leaves it stopped."""
        inner = Supervisor(
            [significant(puppets, "s", Restart.TRANSIENT)], name="inner", auto_shutdown=ANY
        )
        async with Supervisor(
            [puppets.spec("a"), inner.child_spec(restart=Restart.TRANSIENT)], name="outer"
        ) as outer:
            puppets.finish("s")
            await settle()
            info = outer.which_children().by_id("inner")
            assert info.state is ChildState.STOPPED
            assert info.restarts == 0
            assert info.last_failure is None

    async def test_a_significant_nested_supervisor_escalates_the_shutdown(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A chain of significant supervisors stops the whole tree, from the leaf up."""
        inner = Supervisor(
            [significant(puppets, "s", Restart.TRANSIENT)], name="inner", auto_shutdown=ANY
        )
        outer = Supervisor(
            [puppets.spec("a"), inner.child_spec(restart=Restart.TRANSIENT, significant=True)],
            name="outer",
            auto_shutdown=ANY,
        )
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(outer.run)
            puppets.finish("s")
        assert not handle.running
        assert puppets.events("stop") == ["s", "a"]


class TestAllSignificant:
    async def test_the_supervisor_stops_when_the_last_significant_child_ended(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """With two significant children, the first one ending is not enough."""
        specs = [
            puppets.spec("a"),
            significant(puppets, "s1", Restart.TRANSIENT),
            significant(puppets, "s2", Restart.TEMPORARY),
        ]
        async with trio.open_nursery() as nursery:
            sup = await nursery.start(Supervisor(specs, auto_shutdown=ALL).run)
            puppets.finish("s2")
            await settle()
            assert sup.running
            puppets.crash("s1")  # restarted: still running
            await settle()
            assert sup.running
            puppets.finish("s1")
            await settle()
            assert not sup.running

    async def test_a_terminated_significant_child_no_longer_holds_it_up(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A significant child stopped by terminate_child is not active: the other decides."""
        specs = [
            significant(puppets, "s1", Restart.TRANSIENT),
            significant(puppets, "s2", Restart.TRANSIENT),
        ]
        async with trio.open_nursery() as nursery:
            sup = await nursery.start(Supervisor(specs, auto_shutdown=ALL).run)
            await sup.terminate_child("s1")
            await settle()
            assert sup.running
            puppets.finish("s2")
            await settle()
            assert not sup.running

    async def test_a_pool_of_significant_members_returns_when_all_are_done(
        self, autojump_clock: Any
    ) -> None:
        """A dynamic supervisor with a significant template ends when its members have."""
        done: list[int] = []

        async def job(n: int, *, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            await trio.sleep(n)
            done.append(n)

        template = ChildSpec("job", job, restart=Restart.TRANSIENT, significant=True)
        pool = DynamicSupervisor(template, initial=[(3,), (1,), (2,)], auto_shutdown=ALL)
        await pool.run()
        assert done == [1, 2, 3]
        assert trio.current_time() == 3.0
