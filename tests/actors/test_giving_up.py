"""RestartIntensityExceeded carries the child's last exception as __cause__, on every path."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    Actor,
    ChildSpec,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    actor_child,
)


class Boom(Exception):
    """The crash these tests inject."""


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


class TestCause:
    async def test_nested_supervisor_gives_the_real_failure_as_cause(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """outer gives up because inner did: its cause is the grandchild's crash, not inner's."""
        crash = Boom("x")
        inner = Supervisor([puppets.spec("x")], max_restarts=0, name="inner")
        outer = Supervisor([inner.child_spec("inner"), puppets.spec("y")], max_restarts=0)

        async def scenario() -> None:
            async with outer:
                puppets.crash("x", crash)
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.supervisor == "supervisor"
        assert info.value.child_id == "inner"
        assert info.value.child_path == ("inner", "x")
        assert info.value.__cause__ is crash
        assert "because of inner/x" in str(info.value)

    async def test_three_levels_deep_the_root_chains_to_the_worker(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Through every supervisor that gives up in turn, the cause stays the worker's."""
        crash = Boom("deep")
        a = Supervisor([puppets.spec("w")], max_restarts=0, name="a")
        b = Supervisor([a.child_spec()], max_restarts=0, name="b")
        c = Supervisor([b.child_spec()], max_restarts=0, name="c")

        async def scenario() -> None:
            async with c:
                puppets.crash("w", crash)
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.supervisor == "c"
        assert info.value.child_path == ("b", "a", "w")
        assert info.value.__cause__ is crash

    async def test_a_supervisor_run_inside_a_worker_escalates_the_same_way(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A supervisor a worker runs itself is unwrapped too: the cause is the real crash."""
        crash = Boom("inside")
        inner = Supervisor([puppets.spec("x")], max_restarts=0, name="inner")

        async def wrapper(*, task_status: trio.TaskStatus[None]) -> None:
            async with inner:
                task_status.started()
                await trio.sleep_forever()

        async def scenario() -> None:
            async with Supervisor([ChildSpec("host", wrapper)], max_restarts=0):
                puppets.crash("x", crash)
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.child_path == ("host", "x")
        assert info.value.__cause__ is crash

    async def test_a_nested_supervisor_failing_to_start_again_is_unwrapped(
        self, autojump_clock: Any
    ) -> None:
        """Restarting a nested supervisor whose child then fails to start: the cause is that
        child's error, not the nested ChildStartError."""
        refusal = OSError("port in use")
        attempts = 0

        async def child(*, task_status: trio.TaskStatus[None]) -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                raise refusal
            task_status.started()
            raise Boom("first")

        inner = Supervisor([ChildSpec("x", child)], max_restarts=0, name="inner")

        async def scenario() -> None:
            async with Supervisor([inner.child_spec()], max_restarts=1):
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.child_path == ("inner", "x")
        assert info.value.__cause__ is refusal

    def test_an_error_built_by_hand_has_no_path(self) -> None:
        """Every error can be built from a message alone; child_path is then empty."""
        error = RestartIntensityExceeded("gave up")
        assert error.child_path == ()
        assert error.supervisor is None

    async def test_through_nursery_start(self, autojump_clock: Any, puppets: Any) -> None:
        """Started with nursery.start, the error in the parent's group keeps its cause."""
        crash = Boom("a")
        supervisor = Supervisor([puppets.spec("a")], max_restarts=0)
        with pytest.RaisesGroup(RestartIntensityExceeded) as info:
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                puppets.crash("a", crash)
        (error,) = info.value.exceptions
        assert error.__cause__ is crash

    async def test_sibling_restarts_keep_the_failing_childs_cause(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Under ONE_FOR_ALL the cause is the exception of the child that failed."""
        crash = KeyError("b")

        async def scenario() -> None:
            specs = [puppets.spec("a"), puppets.spec("b")]
            async with Supervisor(specs, strategy=Strategy.ONE_FOR_ALL, max_restarts=1):
                puppets.crash("a")
                await settle()
                puppets.crash("b", crash)
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.child_id == "b"
        assert info.value.__cause__ is crash

    async def test_a_restart_that_fails_to_start_is_the_cause(self, autojump_clock: Any) -> None:
        """When the restarted incarnation fails before started(), that error is the cause."""
        starts = 0
        refusal = OSError("port in use")

        async def child(*, task_status: trio.TaskStatus[None]) -> None:
            nonlocal starts
            starts += 1
            if starts > 1:
                raise refusal
            task_status.started()
            raise Boom("first")

        with pytest.raises(RestartIntensityExceeded) as info:
            async with Supervisor([ChildSpec("c", child)], max_restarts=1):
                await trio.sleep_forever()
        assert starts == 2
        assert info.value.__cause__ is refusal

    async def test_a_crashing_actor_is_the_cause(self, autojump_clock: Any) -> None:
        """An actor's handler exception is the cause, not a wrapper around it."""
        crash = ZeroDivisionError("division by zero")

        class Fragile(Actor[str, None]):
            async def handle_cast(self, msg: str) -> None:
                raise crash

        spec, ref = actor_child("fragile", Fragile)

        async def scenario() -> None:
            async with Supervisor([spec], max_restarts=0):
                await ref.cast("boom")
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.__cause__ is crash

    async def test_a_normal_exit_has_no_cause(self, autojump_clock: Any, puppets: Any) -> None:
        """A permanent child that returned once too often leaves __cause__ None."""

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a")], max_restarts=0):
                puppets.finish("a")
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.__cause__ is None
