"""Supervisor semantics: start order, strategies, restart types, intensity, backoff, shutdown."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    ChildSpec,
    ChildStartError,
    ChildState,
    EventKind,
    Restart,
    RestartBackoff,
    RestartIntensityExceeded,
    StopSignal,
    Strategy,
    Supervisor,
    SupervisorEvent,
)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def group_of(strategy: Strategy) -> list[str]:
    """Who restarts with "b" among children a, b, c."""
    return {
        Strategy.ONE_FOR_ONE: ["b"],
        Strategy.ONE_FOR_ALL: ["a", "b", "c"],
        Strategy.REST_FOR_ONE: ["b", "c"],
    }[strategy]


class TestStart:
    async def test_children_start_in_list_order_each_after_the_previous_started(
        self, autojump_clock: Any
    ) -> None:
        """Each child starts only once the previous one called started()."""
        seen: list[tuple[str, list[str]]] = []
        ready: list[str] = []

        def make(child_id: str) -> ChildSpec:
            async def target(*, task_status: trio.TaskStatus[Any]) -> None:
                seen.append((child_id, list(ready)))
                await trio.sleep(1)  # a slow init: the next child must wait for it
                ready.append(child_id)
                task_status.started()
                await trio.sleep_forever()

            return ChildSpec(child_id, target)

        async with Supervisor([make("a"), make("b"), make("c")]) as sup:
            assert seen == [("a", []), ("b", ["a"]), ("c", ["a", "b"])]
            assert [c.state for c in sup.which_children()] == [ChildState.RUNNING] * 3

    async def test_start_failure_stops_started_children_in_reverse_and_names_the_child(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child failing at start stops the started ones in reverse order; the error names it."""
        cause = ValueError("bad config")
        specs = [puppets.spec("a"), puppets.spec("b"), puppets.spec("c", fail_start=cause)]
        specs.append(puppets.spec("d"))
        async with trio.open_nursery() as nursery:
            with pytest.raises(ChildStartError, match="'c'") as info:
                await nursery.start(Supervisor(specs).run)
        assert info.value.child_id == "c"
        assert info.value.__cause__ is cause
        assert [(e, c) for e, c, _ in puppets.log] == [
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
            ("stop", "c"),
            ("stop", "b"),
            ("stop", "a"),
        ]

    async def test_returning_without_started_is_a_start_failure(self, autojump_clock: Any) -> None:
        """A target that returns before started() fails the start with a RuntimeError cause."""

        async def lazy(*, task_status: trio.TaskStatus[Any]) -> None:
            return None

        with pytest.raises(ChildStartError) as info:
            async with Supervisor([ChildSpec("lazy", lazy)]):
                pass  # pragma: no cover - never entered
        assert isinstance(info.value.__cause__, RuntimeError)

    async def test_async_with_stops_children_in_reverse_order_on_exit(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Leaving the async-with block stops the children in reverse start order."""
        async with Supervisor([puppets.spec("a"), puppets.spec("b"), puppets.spec("c")]):
            await settle()
        assert puppets.events("stop") == ["c", "b", "a"]

    async def test_body_exception_passes_through_unwrapped(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """An exception in the async-with body comes out as itself, after an ordered stop."""
        with pytest.raises(KeyError):
            async with Supervisor([puppets.spec("a"), puppets.spec("b")]):
                raise KeyError("body")
        assert puppets.events("stop") == ["b", "a"]

    async def test_a_supervisor_cannot_run_twice_at_once(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Running the same Supervisor concurrently is refused."""
        supervisor = Supervisor([puppets.spec("a")])
        async with supervisor:
            with pytest.raises(RuntimeError, match="already running"):
                await supervisor.run()


class TestStrategies:
    @pytest.mark.parametrize("strategy", list(Strategy))
    @pytest.mark.parametrize("restart", list(Restart))
    @pytest.mark.parametrize("how", ["crash", "return"])
    async def test_middle_child_ending(
        self, autojump_clock: Any, puppets: Any, strategy: Strategy, restart: Restart, how: str
    ) -> None:
        """Child b of a, b, c ends: who is stopped and restarted follows OTP for each case."""
        specs = [puppets.spec("a"), puppets.spec("b", restart=restart), puppets.spec("c")]
        async with Supervisor(specs, strategy=strategy) as sup:
            puppets.clear()
            if how == "crash":
                puppets.crash("b")
            else:
                puppets.finish("b")
            await settle()
            restarted = restart is Restart.PERMANENT or (
                restart is Restart.TRANSIENT and how == "crash"
            )
            group = group_of(strategy) if restarted else []
            siblings = [c for c in group if c != "b"]
            assert puppets.events("stop") == ["b", *reversed(siblings)]
            assert puppets.events("start") == group
            children = sup.which_children()
            ids = [c.id for c in children]
            if restart is Restart.TEMPORARY:
                assert ids == ["a", "c"]
            else:
                assert ids == ["a", "b", "c"]
                expected = ChildState.RUNNING if restarted else ChildState.STOPPED
                assert children.by_id("b").state is expected
            for info in children:
                assert info.restarts == (1 if info.id in group else 0)
            assert sorted(puppets.live) == sorted(ids if restarted else ["a", "c"])

    @pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
    async def test_temporary_sibling_taken_down_is_not_restarted(
        self, autojump_clock: Any, puppets: Any, strategy: Strategy
    ) -> None:
        """A temporary child stopped because a sibling died is removed, not restarted."""
        specs = [puppets.spec("a"), puppets.spec("t", restart=Restart.TEMPORARY)]
        async with Supervisor(specs, strategy=strategy) as sup:
            puppets.clear()
            puppets.crash("a")
            await settle()
            assert puppets.events("start") == ["a"]
            assert [c.id for c in sup.which_children()] == ["a"]

    async def test_one_for_all_stops_in_reverse_then_restarts_in_order(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """ONE_FOR_ALL: the others stop in reverse start order, all start again in order."""
        specs = [puppets.spec(x) for x in "abcd"]
        async with Supervisor(specs, strategy=Strategy.ONE_FOR_ALL):
            puppets.clear()
            puppets.crash("b")
            await settle()
            assert [(e, c) for e, c, _ in puppets.log] == [
                ("stop", "b"),
                ("stop", "d"),
                ("stop", "c"),
                ("stop", "a"),
                ("start", "a"),
                ("start", "b"),
                ("start", "c"),
                ("start", "d"),
            ]

    async def test_stopped_children_stay_stopped_in_a_group_restart(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child already stopped (transient that returned) is not revived by ONE_FOR_ALL."""
        specs = [puppets.spec("a"), puppets.spec("b", restart=Restart.TRANSIENT)]
        async with Supervisor(specs, strategy=Strategy.ONE_FOR_ALL) as sup:
            puppets.finish("b")
            await settle()
            puppets.clear()
            puppets.crash("a")
            await settle()
            assert puppets.events("start") == ["a"]
            assert sup.which_children().by_id("b").state is ChildState.STOPPED

    async def test_failure_while_restarting_counts_and_reapplies_the_strategy(
        self, autojump_clock: Any
    ) -> None:
        """A child failing during its restart is another failure: the group restarts again."""
        starts: list[str] = []
        b_attempts = 0
        crash_a = trio.Event()

        def make(child_id: str) -> ChildSpec:
            async def target(*, task_status: trio.TaskStatus[Any]) -> None:
                nonlocal b_attempts
                starts.append(child_id)
                if child_id == "b":
                    b_attempts += 1
                    if b_attempts == 2:  # its first restart fails before started()
                        raise OSError("port busy")
                task_status.started()
                if child_id == "a" and not crash_a.is_set():
                    await crash_a.wait()
                    raise ValueError("a")
                await trio.sleep_forever()

            return ChildSpec(child_id, target)

        specs = [make("a"), make("b"), make("c")]
        async with Supervisor(specs, strategy=Strategy.ONE_FOR_ALL, max_restarts=5) as sup:
            starts.clear()
            crash_a.set()
            await settle()
            # a crashed: all restart; b fails to start: counted, and all restart once more.
            assert starts == ["a", "b", "a", "b", "c"]
            children = sup.which_children()
            assert [c.state for c in children] == [ChildState.RUNNING] * 3
            assert [c.restarts for c in children] == [2, 2, 1]
            b_failure = children.by_id("b").last_failure
            assert b_failure is not None
            assert b_failure.type_name == "OSError"
            assert sup.snapshot().recent_restarts == 2

    async def test_terminating_a_child_waiting_in_backoff(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """terminate_child on a RESTARTING child cancels its pending restart."""
        backoff = RestartBackoff(initial=10.0, jitter=0.0)
        async with Supervisor([puppets.spec("a")], backoff=backoff) as sup:
            puppets.crash("a")
            await settle()
            assert sup.which_children().by_id("a").state is ChildState.RESTARTING
            await sup.terminate_child("a")
            await trio.sleep(20)
            assert sup.which_children().by_id("a").state is ChildState.STOPPED
            assert puppets.starts == {"a": 1}


class TestIntensity:
    async def test_exactly_max_restarts_is_fine_one_more_gives_up(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """3 restarts in the window are fine; the 4th stops all children and raises."""
        last = ValueError("fourth")
        specs = [puppets.spec("a"), puppets.spec("b"), puppets.spec("c")]

        async def scenario() -> None:
            async with Supervisor(specs, max_restarts=3, within=5.0) as sup:
                for _ in range(3):
                    puppets.crash("b")
                    await settle()
                    await trio.sleep(1)
                assert sup.running
                assert sup.which_children().by_id("b").restarts == 3
                puppets.clear()
                puppets.crash("b", last)
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.__cause__ is last
        assert info.value.child_id == "b"
        assert puppets.events("stop") == ["b", "c", "a"]
        assert puppets.events("start") == []

    async def test_restarts_outside_the_window_do_not_count(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Failures spread wider than the window never exceed the intensity."""
        async with Supervisor([puppets.spec("a")], max_restarts=1, within=5.0) as sup:
            for _ in range(5):
                puppets.crash("a")
                await settle()
                await trio.sleep(5.5)
            assert sup.running
            assert sup.which_children().by_id("a").restarts == 5

    async def test_zero_restarts_gives_up_on_first_failure(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """max_restarts=0 escalates the first restart."""

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a")], max_restarts=0):
                puppets.crash("a")
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded):
            await scenario()

    async def test_permanent_child_returning_too_often_escalates(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Normal returns of a permanent child count too; the error has no cause then."""

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a")], max_restarts=2):
                for _ in range(3):
                    puppets.finish("a")
                    await settle()
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.__cause__ is None

    async def test_error_raised_into_parent_nursery_is_not_a_group_member_only(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """nursery.start(sup.run) raises RestartIntensityExceeded itself out of run()."""
        supervisor = Supervisor([puppets.spec("a")], max_restarts=0)
        raised: list[BaseException] = []

        async def runner(*, task_status: trio.TaskStatus[Any]) -> None:
            try:
                await supervisor.run(task_status=task_status)
            except BaseException as exc:
                raised.append(exc)
                raise

        with pytest.RaisesGroup(RestartIntensityExceeded):
            async with trio.open_nursery() as nursery:
                await nursery.start(runner)
                puppets.crash("a")
        assert [type(e) for e in raised] == [RestartIntensityExceeded]

    async def test_nested_supervisor_giving_up_is_a_failure_of_the_parent_child(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """An inner supervisor that gives up is restarted by its parent, from its specs."""
        inner = Supervisor([puppets.spec("x")], max_restarts=0, name="inner")
        async with Supervisor([inner.child_spec("inner"), puppets.spec("y")]) as outer:
            puppets.clear()
            puppets.crash("x")
            await settle()
            assert puppets.events("start") == ["x"]
            info = outer.which_children().by_id("inner")
            assert info.restarts == 1
            assert info.last_failure is not None
            assert info.last_failure.type_name == "RestartIntensityExceeded"


class TestBackoff:
    async def test_restart_delays_grow_and_reset(self, autojump_clock: Any, puppets: Any) -> None:
        """Consecutive restarts wait 1, 2, 4 s; a long run resets the count."""
        backoff = RestartBackoff(
            initial=1.0, multiplier=2.0, max_delay=4.0, jitter=0.0, reset_after=10.0
        )

        async def restart_gap() -> float:
            puppets.crash("a")
            await settle()
            crashed_at = trio.current_time()
            assert sup.which_children().by_id("a").state is ChildState.RESTARTING
            await trio.sleep(4.5)  # longer than any delay, shorter than reset_after
            starts: list[float] = [t for e, _, t in puppets.log if e == "start" and t > crashed_at]
            assert len(starts) == 1
            return starts[0] - crashed_at

        async with Supervisor([puppets.spec("a")], backoff=backoff, max_restarts=100) as sup:
            assert [await restart_gap() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
            await trio.sleep(10.0)  # up for reset_after seconds: back to the initial delay
            assert await restart_gap() == 1.0

    async def test_jitter_comes_from_the_injected_source(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """The delay is base * (1 + uniform(0, jitter)) from the given random source."""

        class Highest:
            def uniform(self, a: float, b: float) -> float:
                return b

        backoff = RestartBackoff(initial=2.0, jitter=0.5, random=Highest())
        events: list[SupervisorEvent] = []
        async with Supervisor([puppets.spec("a")], backoff=backoff, on_event=events.append):
            puppets.crash("a")
            await settle()
        delays = [e.delay for e in events if e.kind is EventKind.CHILD_RESTARTING]
        assert delays == [3.0]

    def test_delay_table_and_validation(self) -> None:
        """delay(n) follows initial * multiplier**n up to max_delay; bad settings are refused."""
        backoff = RestartBackoff(initial=0.5, multiplier=3.0, max_delay=10.0, jitter=0.0)
        assert [backoff.delay(n) for n in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]
        assert backoff.delay(10_000) == 10.0
        seeded = RestartBackoff(jitter=0.2, random=random.Random(7))
        assert 0.1 <= seeded.delay(0) <= 0.12
        with pytest.raises(ValueError, match="multiplier"):
            RestartBackoff(multiplier=0.5)
        with pytest.raises(ValueError, match="jitter"):
            RestartBackoff(jitter=2.0)
        with pytest.raises(ValueError, match="initial"):
            RestartBackoff(initial=20.0, max_delay=1.0)


class TestShutdown:
    async def test_stop_is_ordered_and_graceful(self, autojump_clock: Any, puppets: Any) -> None:
        """stop() asks each child in reverse order; graceful children take no budget time."""
        async with trio.open_nursery() as nursery:
            sup = await nursery.start(
                Supervisor([puppets.spec("a"), puppets.spec("b"), puppets.spec("c")]).run
            )
            start = trio.current_time()
            await sup.stop()
            assert trio.current_time() == start
        assert puppets.events("stop") == ["c", "b", "a"]
        assert not sup.running

    async def test_child_ignoring_the_request_is_cancelled_after_its_budget(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child that ignores request_stop is cancelled at its budget; the next one follows."""
        events: list[SupervisorEvent] = []
        specs = [puppets.spec("a"), puppets.spec("b", shutdown=3.0, ignore_stop=True)]
        async with Supervisor(specs, on_event=events.append):
            pass
        stops = [(c, t) for e, c, t in puppets.log if e == "stop"]
        assert stops == [("b", 3.0), ("a", 3.0)]
        assert [e.child_id for e in events if e.kind is EventKind.SHUTDOWN_TIMEOUT] == ["b"]

    async def test_unresponsive_child_is_reported_and_shutdown_moves_on(
        self, autojump_clock: Any, puppets: Any, capture: Any
    ) -> None:
        """A child that ignores stop and cancel is logged with its id; the rest still stop."""
        specs = [
            puppets.spec("a"),
            puppets.spec("stuck", shutdown=2.0, ignore_stop=True, hang_after_cancel=100.0),
            puppets.spec("c"),
        ]
        async with Supervisor(specs, cancel_grace=1.0, logger=capture):
            pass
        stops = {c: t for e, c, t in puppets.log if e == "stop"}
        assert stops["c"] == 0.0
        assert stops["a"] == 3.0  # 2 s budget + 1 s cancel grace, not the 100 s hang
        assert stops["stuck"] == 102.0  # Trio cannot abandon a task: run() waits for it
        unresponsive = [e for e in capture.entries if "still running" in e.message]
        assert [e.fields["child"] for e in unresponsive] == ["stuck"]

    async def test_zero_budget_cancels_at_once(self, autojump_clock: Any, puppets: Any) -> None:
        """shutdown=0 skips the wait: the child is cancelled immediately."""
        async with Supervisor([puppets.spec("a", shutdown=0.0, ignore_stop=True)]):
            pass
        assert [t for e, _, t in puppets.log if e == "stop"] == [0.0]

    async def test_child_without_stop_protocol_is_cancelled(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child whose started value has no request_stop is cancelled right away."""
        async with Supervisor([puppets.spec("a", graceful=False)]):
            pass
        assert [t for e, _, t in puppets.log if e == "stop"] == [0.0]

    def test_nested_supervisor_defaults_to_unlimited_shutdown(self, puppets: Any) -> None:
        """A supervisor's run as a child target gets shutdown=None unless told otherwise."""
        inner = Supervisor([puppets.spec("x")])
        assert ChildSpec("inner", inner.run).shutdown is None
        assert ChildSpec("inner", inner.run, shutdown=7.0).shutdown == 7.0
        assert puppets.spec("worker").shutdown == 5.0

    async def test_nested_tree_stops_depth_first_in_reverse_order(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Stopping a tree stops each subtree completely, in reverse order, before moving on."""
        inner = Supervisor([puppets.spec("x1"), puppets.spec("x2")], name="inner")
        async with Supervisor([puppets.spec("a"), inner.child_spec(), puppets.spec("c")]):
            await settle()
            assert puppets.events("start") == ["a", "x1", "x2", "c"]
        assert puppets.events("stop") == ["c", "x2", "x1", "a"]

    async def test_cancellation_from_outside_stops_in_order_without_restarts(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Cancelling the parent scope stops children in reverse order; nothing restarts."""
        with trio.move_on_after(10) as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    Supervisor([puppets.spec("a"), puppets.spec("b", ignore_stop=True)]).run
                )
        assert scope.cancelled_caught
        assert [(c, t) for e, c, t in puppets.log if e == "stop"] == [("b", 15.0), ("a", 15.0)]
        assert puppets.starts == {"a": 1, "b": 1}

    @pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
    async def test_keyboard_interrupt_is_not_restarted_and_propagates(
        self, autojump_clock: Any, puppets: Any, fatal: type[BaseException]
    ) -> None:
        """KeyboardInterrupt/SystemExit in a child: no restart, ordered stop, then it propagates."""

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a"), puppets.spec("b"), puppets.spec("c")]):
                puppets.crash("b", fatal())
                await trio.sleep_forever()

        with pytest.raises(fatal):
            await scenario()
        assert puppets.events("stop") == ["b", "c", "a"]
        assert puppets.starts == {"a": 1, "b": 1, "c": 1}

    async def test_group_with_keyboard_interrupt_is_fatal_not_a_crash(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child's exception group holding KeyboardInterrupt is fatal, never restarted."""
        group = BaseExceptionGroup("mixed", [ValueError("x"), KeyboardInterrupt()])

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a")]):
                puppets.crash("a", group)
                await trio.sleep_forever()

        with pytest.raises(KeyboardInterrupt):
            await scenario()
        assert puppets.starts == {"a": 1}

    async def test_group_of_exceptions_is_a_crash(self, autojump_clock: Any, puppets: Any) -> None:
        """A child's ExceptionGroup of plain exceptions counts as one crash."""
        async with Supervisor([puppets.spec("a")]) as sup:
            puppets.crash("a", ExceptionGroup("two", [ValueError("1"), KeyError("2")]))
            await settle()
            info = sup.which_children().by_id("a")
            assert info.restarts == 1
            assert info.last_failure is not None
            assert info.last_failure.type_name == "ExceptionGroup"

    async def test_request_stop_that_raises_falls_back_to_cancel(
        self, autojump_clock: Any, capture: Any
    ) -> None:
        """A broken request_stop is logged and the child is cancelled instead."""

        class Broken:
            def request_stop(self) -> None:
                raise RuntimeError("cannot stop")

        async def child(*, task_status: trio.TaskStatus[Broken]) -> None:
            task_status.started(Broken())
            await trio.sleep_forever()

        async with Supervisor([ChildSpec("c", child)], logger=capture):
            pass
        assert "request_stop raised; cancelling the child" in capture.messages()
        assert trio.current_time() == 0.0

    async def test_failure_during_shutdown_is_recorded_not_restarted(
        self, autojump_clock: Any, capture: Any
    ) -> None:
        """A child raising while it is being stopped is logged; nothing restarts."""
        started = 0

        async def child(*, task_status: trio.TaskStatus[None]) -> None:
            nonlocal started
            started += 1
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError("cleanup failed")

        async with Supervisor([ChildSpec("c", child)], logger=capture) as sup:
            pass
        assert started == 1
        entry = next(e for e in capture.entries if e.message == "child failed while stopping")
        assert entry.fields["error_type"] == "ValueError"
        last = sup.which_children().by_id("c").last_failure
        assert last is not None
        assert last.message == "cleanup failed"

    async def test_keyboard_interrupt_during_startup_propagates(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """KeyboardInterrupt before started() stops the started children and propagates."""
        specs = [puppets.spec("a"), puppets.spec("b", fail_start=KeyboardInterrupt())]
        with pytest.raises(KeyboardInterrupt):
            await Supervisor(specs).run()
        assert puppets.events("stop") == ["b", "a"]

    async def test_stop_signal_helper(self, autojump_clock: Any) -> None:
        """StopSignal lets a plain worker return when the supervisor asks."""
        iterations = 0

        async def worker(*, task_status: trio.TaskStatus[StopSignal]) -> None:
            nonlocal iterations
            stop = StopSignal()
            task_status.started(stop)
            while not stop.requested:
                iterations += 1
                await trio.sleep(1)

        async with Supervisor([ChildSpec("w", worker, shutdown=60.0)]):
            await trio.sleep(3.5)
        assert iterations == 4
