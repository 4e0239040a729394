"""OTP child administration: count_children, get_childspec, a start that declines, brutal kill."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    IGNORE,
    ChildCounts,
    ChildKind,
    ChildNotFound,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    EventKind,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorHandle,
    actor_child,
)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


class Switch:
    """A child that declines to start while ``off``, as OTP's init returning ``ignore``."""

    def __init__(self) -> None:
        self.on = False
        self.starts = 0

    async def target(self, *, task_status: trio.TaskStatus[None]) -> object:
        self.starts += 1
        if not self.on:
            return IGNORE
        task_status.started()
        await trio.sleep_forever()
        return None  # pragma: no cover - cancelled before


class TestCountChildren:
    async def test_counts_specs_active_supervisors_and_workers(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A record with OTP's four counts; stopped children count as specs, not active."""
        inner = Supervisor([puppets.spec("x")], name="inner")
        specs = [puppets.spec("a"), inner.child_spec(), puppets.spec("b")]
        async with Supervisor(specs) as sup:
            assert sup.count_children() == ChildCounts(specs=3, active=3, supervisors=1, workers=2)
            await sup.terminate_child("b")
            assert sup.count_children() == ChildCounts(specs=3, active=2, supervisors=1, workers=2)
        assert sup.count_children().active == 0

    def test_before_the_first_run_it_counts_the_initial_specs(self, puppets: Any) -> None:
        """A supervisor that never ran reports its specs, none active."""
        sup = Supervisor([puppets.spec("a"), Supervisor().child_spec("s")])
        assert sup.handle.count_children() == ChildCounts(
            specs=2, active=0, supervisors=1, workers=1
        )

    def test_kind_is_inferred_from_the_target_or_given(self, puppets: Any) -> None:
        """A supervisor's run is a SUPERVISOR; a wrapper can say so, and then gets no budget."""
        inner = Supervisor()
        assert ChildSpec("s", inner.run).kind is ChildKind.SUPERVISOR
        assert DynamicSupervisor(puppets.spec("t")).child_spec().kind is ChildKind.SUPERVISOR
        assert puppets.spec("w").kind is ChildKind.WORKER

        async def wrapper(*, task_status: trio.TaskStatus[SupervisorHandle]) -> None:
            await inner.run(task_status=task_status)  # pragma: no cover - never run

        wrapped = ChildSpec("s", wrapper, kind=ChildKind.SUPERVISOR)
        assert wrapped.shutdown is None
        assert ChildSpec("w", wrapper).shutdown == 5.0


class TestGetChildspec:
    async def test_returns_the_spec_or_raises(self, autojump_clock: Any, puppets: Any) -> None:
        """get_childspec(id) is the ChildSpec itself; an unknown id raises ChildNotFound."""
        a = puppets.spec("a")
        async with Supervisor([a]) as sup:
            assert sup.get_childspec("a") is a
            with pytest.raises(ChildNotFound):
                sup.get_childspec("nope")
            b = puppets.spec("b")
            await sup.start_child(b)
            assert sup.get_childspec("b") is b
        assert sup.get_childspec("a") is a
        assert Supervisor([a]).handle.get_childspec("a") is a
        with pytest.raises(ChildNotFound):
            Supervisor([a]).handle.get_childspec("b")


class TestIgnore:
    async def test_a_declined_child_is_kept_but_not_run(self, autojump_clock: Any) -> None:
        """IGNORE at the initial start: the spec is kept as IGNORED, the rest starts."""
        switch = Switch()
        events: list[SupervisorEvent] = []
        async with Supervisor([ChildSpec("mirror", switch.target)], on_event=events.append) as sup:
            info = sup.which_children().by_id("mirror")
            assert info.state is ChildState.IGNORED
            assert sup.count_children().active == 0
            assert sup.snapshot().children[0].state is ChildState.IGNORED
            assert [e.child_id for e in events if e.kind is EventKind.CHILD_IGNORED] == ["mirror"]
            switch.on = True
            assert await sup.restart_child("mirror") is None
            assert sup.which_children().by_id("mirror").state is ChildState.RUNNING
            assert switch.starts == 2

    async def test_start_child_returns_ignore_and_restart_child_retries(
        self, autojump_clock: Any
    ) -> None:
        """A dynamic child that declines: start_child returns IGNORE; it can be deleted."""
        switch = Switch()
        async with Supervisor() as sup:
            assert await sup.start_child(ChildSpec("m", switch.target)) is IGNORE
            assert await sup.restart_child("m") is IGNORE
            assert sup.which_children().by_id("m").state is ChildState.IGNORED
            await sup.delete_child("m")
            assert sup.which_children() == ()

    async def test_a_declined_child_is_never_restarted_by_the_strategy(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Under ONE_FOR_ALL a sibling's crash does not start the ignored child."""
        switch = Switch()
        specs = [puppets.spec("a"), ChildSpec("m", switch.target)]
        async with Supervisor(specs, strategy=Strategy.ONE_FOR_ALL) as sup:
            switch.on = True
            puppets.crash("a")
            await settle()
            assert sup.which_children().by_id("m").state is ChildState.IGNORED
            assert switch.starts == 1

    async def test_a_temporary_child_that_declines_is_not_kept(self, autojump_clock: Any) -> None:
        """As in OTP, a temporary child's spec goes away when it declines."""
        switch = Switch()
        async with Supervisor() as sup:
            spec = ChildSpec("t", switch.target, restart=Restart.TEMPORARY)
            assert await sup.start_child(spec) is IGNORE
            assert sup.which_children() == ()

    async def test_a_restart_that_declines_leaves_the_child_ignored(
        self, autojump_clock: Any
    ) -> None:
        """A child whose next incarnation declines stays IGNORED; nothing loops."""
        incarnations = 0

        async def flaky(*, task_status: trio.TaskStatus[None]) -> object:
            nonlocal incarnations
            incarnations += 1
            if incarnations > 1:
                return IGNORE
            task_status.started()
            raise ValueError("first")

        async with Supervisor([ChildSpec("f", flaky)]) as sup:
            await settle()
            info = sup.which_children().by_id("f")
            assert info.state is ChildState.IGNORED
            assert info.restarts == 1
            assert incarnations == 2

    async def test_returning_anything_else_before_started_is_still_a_failure(
        self, autojump_clock: Any
    ) -> None:
        """Only IGNORE declines: returning None before started() fails the start."""
        from cloudkit_trio.actors import ChildStartError

        async def lazy(*, task_status: trio.TaskStatus[None]) -> object:
            return "ignore"

        with pytest.raises(ChildStartError) as info:
            async with Supervisor([ChildSpec("lazy", lazy)]):
                pass  # pragma: no cover - never entered
        assert "IGNORE" in str(info.value.__cause__)
        assert repr(IGNORE) == "IGNORE"


class TestBrutalKill:
    async def test_shutdown_zero_sends_no_stop_request_and_warns_nothing(
        self, autojump_clock: Any, puppets: Any, capture: Any
    ) -> None:
        """shutdown=0: cancelled at once, no request_stop, no shutdown-budget warning."""
        requests: list[str] = []

        class Watched:
            def request_stop(self) -> None:
                requests.append("asked")

        async def child(*, task_status: trio.TaskStatus[Watched]) -> None:
            task_status.started(Watched())
            await trio.sleep_forever()

        events: list[SupervisorEvent] = []
        async with Supervisor(
            [ChildSpec("k", child, shutdown=0)], logger=capture, on_event=events.append
        ):
            pass
        assert requests == []
        assert trio.current_time() == 0.0
        assert EventKind.SHUTDOWN_TIMEOUT not in {e.kind for e in events}
        assert not any("shutdown budget" in m for m in capture.messages())
        assert EventKind.CHILD_STOPPED in {e.kind for e in events}

    async def test_a_positive_budget_still_asks_first(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """For comparison: a budget sends the request, and a child ignoring it is warned of."""
        events: list[SupervisorEvent] = []
        async with Supervisor(
            [puppets.spec("a", shutdown=1.0, ignore_stop=True)], on_event=events.append
        ):
            pass
        assert [e.kind for e in events if e.kind is EventKind.SHUTDOWN_TIMEOUT] == [
            EventKind.SHUTDOWN_TIMEOUT
        ]

    async def test_an_actor_with_shutdown_zero_is_killed_not_drained(
        self, autojump_clock: Any
    ) -> None:
        """A brutally killed actor does not drain its queue: queued calls fail at once."""
        from cloudkit_trio.actors import Actor, ActorStopped

        class Slow(Actor[float, None]):
            async def handle_call(self, msg: float) -> None:
                await trio.sleep(msg)

        slow = actor_child("slow", Slow, shutdown=0)
        outcomes: list[str] = []

        async def call(seconds: float) -> None:
            try:
                await slow.ref.call(seconds, timeout=None)
                outcomes.append("done")
            except ActorStopped:
                outcomes.append("stopped")

        async with trio.open_nursery() as nursery:
            sup = await nursery.start(Supervisor([slow.spec]).run)
            nursery.start_soon(call, 10.0)
            nursery.start_soon(call, 10.0)
            await settle()
            await sup.stop()
        assert outcomes == ["stopped", "stopped"]
        assert trio.current_time() == 0.0
