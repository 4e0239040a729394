"""A tree as one thing: nested events reach the hooks above, with bounded paths."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    ChildSpec,
    DynamicSupervisor,
    EventKind,
    Restart,
    Supervisor,
    SupervisorEvent,
    SupervisorNotRunning,
)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def restarts_by_path(events: list[SupervisorEvent]) -> dict[str, int]:
    """What a metrics layer does: count restarts by the bounded child path."""
    counts: dict[str, int] = {}
    for event in events:
        if event.kind is EventKind.CHILD_RESTARTING:
            label = "/".join(event.child_path)
            counts[label] = counts.get(label, 0) + 1
    return counts


class TestNestedEvents:
    async def test_a_nested_restart_reaches_the_roots_hook_with_its_path(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A restart two levels down is seen by the root's hook, path and child included."""
        events: list[SupervisorEvent] = []
        jobs = Supervisor([puppets.spec("job")], name="jobs")
        users = Supervisor([jobs.child_spec("jobs"), puppets.spec("w")], name="users")
        root = Supervisor([users.child_spec("users")], name="root", on_event=events.append)
        async with root:
            puppets.crash("job")
            puppets.crash("w")
            await settle()
        restarting = [e for e in events if e.kind is EventKind.CHILD_RESTARTING]
        assert {(e.path, e.child_id, e.supervisor) for e in restarting} == {
            (("users", "jobs"), "job", "jobs"),
            (("users",), "w", "users"),
        }
        assert restarts_by_path(events) == {"users/jobs/job": 1, "users/w": 1}
        root_own = [e for e in events if e.path == ()]
        assert {e.kind for e in root_own} >= {EventKind.SUPERVISOR_STARTED}

    async def test_each_hook_sees_paths_relative_to_itself(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """The nested supervisor's own hook gets () for its events; the root gets its id."""
        inner_events: list[SupervisorEvent] = []
        root_events: list[SupervisorEvent] = []
        inner = Supervisor([puppets.spec("x")], name="inner", on_event=inner_events.append)
        async with Supervisor([inner.child_spec("in")], on_event=root_events.append):
            puppets.crash("x")
            await settle()
        (mine,) = [e for e in inner_events if e.kind is EventKind.CHILD_RESTARTING]
        (seen_above,) = [e for e in root_events if e.kind is EventKind.CHILD_RESTARTING]
        assert mine.path == ()
        assert mine.child_path == ("x",)
        assert seen_above.path == ("in",)
        assert seen_above.child_path == ("in", "x")
        assert (mine.kind, mine.child_id, mine.at) == (
            seen_above.kind,
            seen_above.child_id,
            seen_above.at,
        )

    async def test_a_supervisor_inside_a_worker_is_placed_under_that_worker(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A supervisor a worker runs itself (not as the child's target) still reports up."""
        events: list[SupervisorEvent] = []
        inner = Supervisor([puppets.spec("x")], name="inner")

        async def host(*, task_status: trio.TaskStatus[None]) -> None:
            async with inner:
                task_status.started()
                await trio.sleep_forever()

        async with Supervisor([ChildSpec("host", host)], on_event=events.append):
            puppets.crash("x")
            await settle()
        assert restarts_by_path(events) == {"host/x": 1}

    async def test_a_pool_reports_its_members_under_the_templates_id(
        self, autojump_clock: Any
    ) -> None:
        """However many members come and go, a pool's restarts have one bounded label."""
        events: list[SupervisorEvent] = []
        crash = trio.Event()
        crashed: set[int] = set()

        async def job(n: int, *, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            if n in crashed:
                await trio.sleep_forever()
            await crash.wait()
            crashed.add(n)
            raise ValueError(n)

        pool = DynamicSupervisor(ChildSpec("job", job), name="pool", max_restarts=100)
        async with Supervisor([pool.child_spec("jobs")], on_event=events.append):
            for n in range(20):
                await pool.handle.start_member(n)
            crash.set()
            await settle()
        restarting = [e for e in events if e.kind is EventKind.CHILD_RESTARTING]
        assert len(restarting) == 20
        assert len({e.child_id for e in restarting}) == 20  # the ids stay exact
        assert restarts_by_path(events) == {"jobs/job": 20}

    async def test_a_supervisor_nested_in_a_pool_member_uses_the_templates_id(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """The path of a supervisor inside a member names the template, not the member."""
        events: list[SupervisorEvent] = []

        async def team(name: str, *, task_status: trio.TaskStatus[None]) -> None:
            async with Supervisor([puppets.spec(name)], name=f"team-{name}"):
                task_status.started()
                await trio.sleep_forever()

        teams = DynamicSupervisor(ChildSpec("team", team), on_event=events.append)
        async with teams as handle:
            await handle.start_member("red")
            await handle.start_member("blue")
            puppets.crash("red")
            puppets.crash("blue")
            await settle()
        assert restarts_by_path(events) == {"team/red": 1, "team/blue": 1}
        assert {e.path for e in events if e.kind is EventKind.CHILD_RESTARTING} == {("team",)}

    async def test_a_broken_hook_above_is_counted_there(
        self, autojump_clock: Any, puppets: Any, capture: Any
    ) -> None:
        """A raising hook of an ancestor is contained and counted by that ancestor."""

        def broken(event: SupervisorEvent) -> None:
            raise RuntimeError("metrics down")

        inner = Supervisor([puppets.spec("x")], name="inner")
        async with Supervisor([inner.child_spec()], on_event=broken, logger=capture) as root:
            before = root.snapshot().hook_failures
            puppets.crash("x")
            await settle()
            assert inner.handle.which_children().by_id("x").restarts == 1
            assert root.snapshot().hook_failures > before
            subtree = root.snapshot().children[0].subtree
            assert subtree is not None
            assert subtree.hook_failures == 0

    async def test_a_standalone_supervisor_is_its_own_root(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Run on its own, a supervisor's events have the empty path."""
        events: list[SupervisorEvent] = []
        async with Supervisor([puppets.spec("a")], on_event=events.append):
            puppets.crash("a")
            await settle()
        assert {e.path for e in events} == {()}
        assert restarts_by_path(events) == {"a": 1}
        stopped = events[-1]
        assert stopped.kind is EventKind.SUPERVISOR_STOPPED
        assert (stopped.child_label, stopped.child_path) == (None, ())


class TestSupervisorIntrospection:
    async def test_snapshot_on_the_supervisor_while_running(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Supervisor.snapshot() works while running: the handle's snapshot."""
        supervisor = Supervisor([puppets.spec("a")], name="root")
        async with supervisor as handle:
            assert supervisor.snapshot() == handle.snapshot()
            assert supervisor.snapshot().children[0].id == "a"

    async def test_snapshot_on_a_stopped_supervisor_names_the_handle(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Not running, it raises SupervisorNotRunning saying where the snapshot lives."""
        supervisor = Supervisor([puppets.spec("a")], name="root")
        with pytest.raises(SupervisorNotRunning, match=r"nursery\.start\(supervisor\.run\)"):
            supervisor.snapshot()
        async with supervisor:
            pass
        with pytest.raises(SupervisorNotRunning):
            supervisor.snapshot()
        assert supervisor.handle.snapshot().children[0].id == "a"

    @pytest.mark.parametrize("name", ["which_children", "start_child", "count_children"])
    def test_handle_methods_asked_of_the_supervisor_say_where_they_are(
        self, name: str, puppets: Any
    ) -> None:
        """The AttributeError for a handle method names the handle and how to get it."""
        supervisor = Supervisor([puppets.spec("a")])
        with pytest.raises(AttributeError, match="handle") as info:
            getattr(supervisor, name)
        assert "nursery.start(supervisor.run)" in str(info.value)

    def test_other_missing_attributes_are_plain(self) -> None:
        """Anything else is an ordinary AttributeError."""
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            _ = Supervisor().nope  # type: ignore[attr-defined]
        assert not hasattr(Supervisor(), "__deepcopy_me__")

    async def test_walk_paths_are_tuples_of_ids(self, autojump_clock: Any, puppets: Any) -> None:
        """walk() yields (tuple of ids, child); a temporary child gone is gone from it."""
        jobs = Supervisor([puppets.spec("job-1"), puppets.spec("job-2")], name="jobs")
        specs = [puppets.spec("t", restart=Restart.TEMPORARY), jobs.child_spec()]
        async with Supervisor(specs) as sup:
            assert [p for p, _ in sup.snapshot().walk()] == [
                ("t",),
                ("jobs",),
                ("jobs", "job-1"),
                ("jobs", "job-2"),
            ]
            puppets.finish("t")
            await settle()
            assert next(p for p, _ in sup.snapshot().walk()) == ("jobs",)
