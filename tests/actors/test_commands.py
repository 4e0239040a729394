"""The handle's commands are frozen records, matched by type in the control task."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from cloudkit_trio.actors import ChildNotFound, Supervisor, SupervisorNotRunning
from cloudkit_trio.actors._commands import (
    DeleteChild,
    PendingCommand,
    RestartChild,
    StartChild,
    TerminateChild,
)


class TestCommandRecords:
    def test_records_are_frozen_values(self, puppets: Any) -> None:
        """Each command is a frozen, comparable record; its envelope carries the answer."""
        spec = puppets.spec("a")
        assert StartChild(spec) == StartChild(spec)
        assert RestartChild("a") != RestartChild("b")
        assert hash(DeleteChild("a")) == hash(DeleteChild("a"))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            TerminateChild("a").child_id = "b"  # type: ignore[misc]
        pending = PendingCommand(TerminateChild("a"))
        pending.finish(error=ChildNotFound("a"))
        assert pending.done.is_set()
        assert isinstance(pending.error, ChildNotFound)

    async def test_every_command_reaches_the_control_task(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """start, terminate, restart and delete each do their job; unknown ids raise."""
        async with Supervisor([puppets.spec("a")]) as sup:
            assert await sup.start_child(puppets.spec("b")) is puppets.live["b"]
            await sup.terminate_child("b")
            assert "b" not in puppets.live
            await sup.restart_child("b")
            assert "b" in puppets.live
            await sup.terminate_child("b")
            await sup.delete_child("b")
            assert [c.id for c in sup.which_children()] == ["a"]
            for command in (sup.terminate_child, sup.restart_child, sup.delete_child):
                with pytest.raises(ChildNotFound):
                    await command("zz")
        with pytest.raises(SupervisorNotRunning):
            await sup.terminate_child("a")
        await trio.lowlevel.checkpoint()
