"""How a supervisor finds the supervisor above it, so its events reach every hook up the tree.

A child runs in a task of its own, and that task sets :data:`_PARENT` to a :class:`Link`
naming the child's supervisor and the child's label. A ``Supervisor.run`` reads it when it
starts: run directly as a child, through a wrapper, or inside a worker's own nursery, a
nested supervisor knows where it sits without being told. A context variable is per task
(Trio copies it into the tasks a task spawns), so this is no global state: it is the
position of the running task in the tree, as the tree itself decided it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._control import SupervisorRun

__all__ = ["Link", "current_link", "enter_child"]


class Link:
    """A running child as its descendants see it: its supervisor's run and its label."""

    __slots__ = ("label", "parent")

    def __init__(self, parent: SupervisorRun, label: str) -> None:
        self.parent = parent
        #: The child's id, or the template's id for a member of a dynamic supervisor.
        self.label = label

    def __repr__(self) -> str:
        return f"<Link {self.parent.sup.name!r}/{self.label}>"


_PARENT: ContextVar[Link | None] = ContextVar("cloudkit_trio.actors.parent", default=None)


def current_link() -> Link | None:
    """The child of a supervisor that the calling task runs in, if any."""
    return _PARENT.get()


def enter_child(parent: SupervisorRun, label: str) -> None:
    """Mark the calling task, a child's own task, and what it spawns as that child."""
    _PARENT.set(Link(parent, label))
