"""The connections of one endpoint: O(1) checkout and return, a cap, fair waiting, expiry.

Every operation here costs the same whether the endpoint has one connection open or a
thousand: idle connections sit in a deque used as a stack (the most recently used one is
reused first, so the oldest ones at the other end expire), the cap is a counter of slots,
and requests that find the cap reached wait in FIFO order and are handed a connection or a
free slot directly, one at a time, by whoever gives one back.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Final

import attrs
import httpx
import trio

from ._connection import Connection

__all__ = ["EndpointPool", "TransportStatistics"]

_CLOSED: Final = "the transport is closed"
# Seconds a connection may sit idle and still be reused without a liveness probe, for a
# request that can be replayed if the connection was closed after all. Servers close idle
# keep-alive connections after seconds (nginx 75, S3 about 20); one that closes sooner is
# met by the retry-once rule, at the cost of one wasted write.
_FRESH: Final = 1.0


@attrs.frozen
class TransportStatistics:
    """A snapshot of a :class:`PooledTransport`'s pools, from ``statistics()``.

    Attributes:
        endpoints: Endpoints (scheme, host, port) that currently have a pool.
        open_connections: Established connections, idle or in use.
        idle_connections: Connections waiting in a pool for the next request.
        waiters: Requests waiting for a connection because their endpoint is at its cap.
        connections_created: Connections opened since the transport was created.
        connections_reused: Requests that were sent on a connection that had already
            carried a request.
        requests_retried: Requests sent a second time, on a fresh connection, under the
            retry-once rule.

    .. versionadded:: 0.1.0
    """

    endpoints: int
    open_connections: int
    idle_connections: int
    waiters: int
    connections_created: int
    connections_reused: int
    requests_retried: int


@attrs.define(eq=False)
class _Waiter:
    task: trio.lowlevel.Task
    # What the task was handed: a connection, or None for a free slot to open one in.
    connection: Connection | None = None
    closed: bool = False


@attrs.define(eq=False)
class EndpointPool:
    """The connections to one (scheme, host, port).

    A *slot* is the right to hold one connection, established or being opened; ``slots``
    never exceeds ``max_connections``. Whoever holds a slot must give it back exactly once:
    :meth:`release` with a connection that finished its exchange, :meth:`discard` with one
    that did not, :meth:`free_slot` when no connection was made.
    """

    origin: str
    host: str
    port: int
    tls: bool
    max_connections: int
    keepalive_expiry: float
    idle: deque[Connection] = attrs.field(init=False, factory=deque)
    active: set[Connection] = attrs.field(init=False, factory=set)
    waiters: OrderedDict[_Waiter, None] = attrs.field(init=False, factory=OrderedDict)
    slots: int = attrs.field(init=False, default=0)
    closed: bool = attrs.field(init=False, default=False)

    async def checkout(
        self, pool_timeout: float | None, now: float, *, replayable: bool = False
    ) -> Connection | None:
        """A live idle connection, or None with a slot reserved for a new one.

        Waits, first come first served, while the endpoint is at its cap; raises
        ``httpx.PoolTimeout`` after ``pool_timeout`` seconds of waiting. ``now`` is the
        caller's ``trio.current_time()``. ``replayable``
        says the request may be sent again on a fresh connection if this one turns out
        to be closed (the transport's retry-once rule): then a connection idle for less
        than ``_FRESH`` seconds is taken without the liveness probe, a system call per
        request that would almost never find anything.
        """
        idle = self.idle
        if idle:
            cutoff = now - self.keepalive_expiry
            fresh = now - _FRESH if replayable else math.inf
            while idle:
                connection = idle.pop()
                since = connection.idle_since
                if since > cutoff and (since > fresh or connection.is_alive()):
                    self.active.add(connection)
                    return connection
                # The newest idle connection expired or died: close it and free its slot
                # (in that order, so the pool never looks empty while it is in use).
                await connection.aclose()
                self.slots -= 1
        if self.slots < self.max_connections:
            self.slots += 1
            return None
        return await self._wait(pool_timeout)

    async def _wait(self, pool_timeout: float | None) -> Connection | None:
        if self.closed:
            raise trio.ClosedResourceError(_CLOSED)
        waiter = _Waiter(trio.lowlevel.current_task())
        waiters = self.waiters
        waiters[waiter] = None

        def abort(_: object) -> trio.lowlevel.Abort:
            # Only reached while the waiter is still queued: handing it something
            # reschedules the task, after which Trio no longer calls abort.
            del waiters[waiter]
            return trio.lowlevel.Abort.SUCCEEDED

        with trio.move_on_after(pool_timeout if pool_timeout is not None else float("inf")):
            await trio.lowlevel.wait_task_rescheduled(abort)
            if waiter.closed:
                raise trio.ClosedResourceError(_CLOSED)
            return waiter.connection
        raise httpx.PoolTimeout(
            f"no free connection to {self.origin} within {pool_timeout} s "
            f"({self.max_connections} connections in use)"
        )

    def _hand_over(self, connection: Connection | None) -> bool:
        """Give ``connection`` (or its slot, when None) to the first waiter, if any."""
        if not self.waiters:
            return False
        waiter, _ = self.waiters.popitem(last=False)
        waiter.connection = connection
        trio.lowlevel.reschedule(waiter.task)
        return True

    def adopt(self, connection: Connection) -> None:
        """Count a connection just opened in a reserved slot as in use."""
        self.active.add(connection)

    async def release(self, connection: Connection) -> None:
        """Take back a connection whose response was read to its end."""
        if self.closed or not connection.is_reusable() or self.keepalive_expiry <= 0:
            await self.discard(connection)
            return
        connection.finish_cycle()
        if self._hand_over(connection):
            return
        self.active.discard(connection)
        now = connection.idle_since = trio.current_time()
        idle = self.idle
        idle.append(connection)
        if idle[0].idle_since <= now - self.keepalive_expiry:
            for expired in self.prune(now):
                await expired.aclose()

    async def discard(self, connection: Connection) -> None:
        """Close a connection in use (failed, cancelled, not reusable) and free its slot."""
        self.active.discard(connection)
        await connection.aclose()
        self.free_slot()

    async def forget(self, connection: Connection) -> None:
        """Close a connection in use but keep its slot, to open a fresh one in its place."""
        self.active.discard(connection)
        await connection.aclose()

    def free_slot(self) -> None:
        """Give back a slot that holds no connection."""
        if self.closed or not self._hand_over(None):
            self.slots -= 1

    def prune(self, now: float) -> list[Connection]:
        """Take out the idle connections that expired by ``now``; the caller closes them.

        The deque's left end holds the connections idle the longest, so this stops at the
        first one still fresh: each connection is looked at once, whatever the pool's size.
        """
        idle = self.idle
        cutoff = now - self.keepalive_expiry
        expired: list[Connection] = []
        while idle and idle[0].idle_since <= cutoff:
            expired.append(idle.popleft())
            self.slots -= 1
        return expired

    def is_unused(self) -> bool:
        """Whether the pool holds nothing at all and can be forgotten."""
        return self.slots == 0 and not self.waiters

    def close(self) -> list[Connection]:
        """Refuse new work, wake every waiter with an error; return all connections to close."""
        self.closed = True
        while self.waiters:
            waiter, _ = self.waiters.popitem(last=False)
            waiter.closed = True
            trio.lowlevel.reschedule(waiter.task)
        connections = [*self.idle, *self.active]
        self.slots -= len(self.idle)
        self.idle.clear()
        return connections
