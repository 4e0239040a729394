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
    async def test_nested_supervisor_chains_the_causes(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """outer's error is caused by inner's, which is caused by the grandchild's crash."""
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
        inner_error = info.value.__cause__
        assert isinstance(inner_error, RestartIntensityExceeded)
        assert inner_error.supervisor == "inner"
        assert inner_error.__cause__ is crash

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
