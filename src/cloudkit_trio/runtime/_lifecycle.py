"""One context's lifecycle: ``starting → running → closing → closed``, and the scopes it owns.

Every entry point asks this one object whether to accept work, and every operation in
flight runs inside a cancel scope registered here, whatever it is waiting on (capacity,
credentials, a backoff, an attempt). Shutdown therefore reaches all of them with one call,
:meth:`Lifecycle.cancel_operations`, and a scope opened after that call is born cancelled:
nothing can start a refresh, a retry or an attempt once the operations were cancelled.

The states and their moves are a table, like h11's connection states, so a move that
makes no sense (closed → running) is a bug that fails loudly instead of a flag that
quietly disagrees with another one.
"""

from __future__ import annotations

import enum
from typing import Final

import trio

from .._errors import ContextClosed

__all__ = ["ContextState", "Lifecycle", "LifecycleError"]


class ContextState(enum.Enum):
    """Where a running context stands; see :attr:`Cloud.state`.

    ``STARTING`` until the supervision tree has started; ``RUNNING`` while it accepts
    work; ``CLOSING`` from the moment shutdown begins (every entry point answers
    :class:`~cloudkit_trio.ContextClosed` from then on); ``CLOSED`` once the tree has
    stopped and every accepted operation has had its answer.

    .. versionadded:: 0.1.0
    """

    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


_MOVES: Final[dict[ContextState, frozenset[ContextState]]] = {
    # A tree that fails to start goes straight to closing (its host is told why).
    ContextState.STARTING: frozenset({ContextState.RUNNING, ContextState.CLOSING}),
    ContextState.RUNNING: frozenset({ContextState.CLOSING}),
    ContextState.CLOSING: frozenset({ContextState.CLOSED}),
    ContextState.CLOSED: frozenset(),
}


class LifecycleError(RuntimeError):
    """A move the lifecycle table does not allow: a bug in the runtime, never user error."""


class Lifecycle:
    """The state of one run of a context, and the scopes of the operations in it."""

    __slots__ = ("_closed", "_scopes", "cancelled", "provider", "state")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.state = ContextState.STARTING
        #: Whether shutdown has cancelled the operations (set once, never cleared).
        self.cancelled = False
        self._scopes: set[trio.CancelScope] = set()
        self._closed = trio.Event()

    # -- the state machine -----------------------------------------------------------------

    def move(self, new: ContextState) -> None:
        """Move to ``new``; a move the table does not allow raises :class:`LifecycleError`."""
        if new not in _MOVES[self.state]:
            raise LifecycleError(f"a context cannot move from {self.state} to {new}")
        self.state = new
        if new is ContextState.CLOSED:
            self._closed.set()

    def begin_closing(self) -> bool:
        """Stop accepting work; False if shutdown had already begun."""
        if self.state is ContextState.CLOSING or self.state is ContextState.CLOSED:
            return False
        self.move(ContextState.CLOSING)
        return True

    def finish(self) -> None:
        """The tree has stopped and every operation has its answer."""
        self.begin_closing()
        if self.state is not ContextState.CLOSED:
            self.move(ContextState.CLOSED)

    @property
    def accepting(self) -> bool:
        return self.state is ContextState.RUNNING

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def check_open(
        self,
        what: str,
        *,
        service: str | None = None,
        operation: str | None = None,
    ) -> None:
        """Raise :class:`ContextClosed` unless the context accepts work."""
        if self.state is not ContextState.RUNNING:
            raise self.closed_error(what, service=service, operation=operation)

    def closed_error(
        self, what: str, *, service: str | None = None, operation: str | None = None
    ) -> ContextClosed:
        state = "has shut down" if self.state is ContextState.CLOSED else "is shutting down"
        if self.state is ContextState.STARTING:
            state = "has not started"
        return ContextClosed(
            f"the cloud context {state}; {what}",
            provider=self.provider,
            service=service,
            operation=operation,
        )

    # -- the operations' scopes ------------------------------------------------------------

    def open_scope(self, deadline: float) -> trio.CancelScope:
        """A scope for one operation (or one body read), owned by the lifecycle until closed."""
        scope = trio.CancelScope(deadline=deadline)
        if self.cancelled:
            scope.cancel()
        self._scopes.add(scope)
        return scope

    def close_scope(self, scope: trio.CancelScope) -> None:
        self._scopes.discard(scope)

    def cancel_operations(self) -> None:
        """Cancel every operation in flight, and every one that opens a scope later."""
        self.cancelled = True
        for scope in self._scopes:
            scope.cancel()
