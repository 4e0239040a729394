"""The commands a supervisor's handle sends its control task: one frozen record each.

The control task matches them in one place (``SupervisorRun._execute``), in order with its
own restart decisions, as OTP's supervisor matches its tagged calls.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs
import trio

from ._spec import ChildSpec

__all__ = [
    "Command",
    "DeleteChild",
    "PendingCommand",
    "RestartChild",
    "StartChild",
    "StartMember",
    "TerminateChild",
]


@attrs.frozen
class StartChild:
    """Add ``spec`` as the last child and start it; the reply is its started value."""

    spec: ChildSpec


@attrs.frozen
class StartMember:
    """Start a member of a dynamic supervisor from its template with extra ``args``."""

    args: tuple[object, ...]
    #: The member's id; ``None`` for a generated one.
    child_id: str | None


@attrs.frozen
class TerminateChild:
    """Stop a child and keep its spec (a temporary child's is removed)."""

    child_id: str


@attrs.frozen
class RestartChild:
    """Start a stopped child again; the reply is its started value."""

    child_id: str


@attrs.frozen
class DeleteChild:
    """Remove a stopped child's spec."""

    child_id: str


Command: TypeAlias = StartChild | StartMember | TerminateChild | RestartChild | DeleteChild


@attrs.define(eq=False)
class PendingCommand:
    """A command on its way: the caller waits on ``done`` for ``result`` or ``error``."""

    command: Command
    done: trio.Event = attrs.field(factory=trio.Event)
    result: object = None
    error: BaseException | None = None

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.done.set()
