"""Admission: the context's concurrency limit and each endpoint's bulkhead.

An operation takes a slot of the global limit first, then one of its endpoint's bulkhead,
and gives both back when it ends. Waiting for either is a wait like any other: it happens
inside the operation's scope, so its deadline and shutdown bound it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from ._flight import Flight

__all__ = ["Admission"]

# Bulkheads of endpoints nobody uses are dropped once more than this many exist.
_MAX_IDLE_BULKHEADS: Final = 1024


class Admission:
    """Concurrency slots: one global limiter, one bulkhead per endpoint."""

    __slots__ = ("_bulkheads", "_limiter", "_per_endpoint", "max_concurrency")

    def __init__(self, *, max_concurrency: int, max_per_endpoint: int) -> None:
        self.max_concurrency = max_concurrency
        self._per_endpoint = max_per_endpoint
        self._limiter = trio.CapacityLimiter(max_concurrency)
        self._bulkheads: OrderedDict[str, trio.CapacityLimiter] = OrderedDict()

    @property
    def endpoints(self) -> int:
        return len(self._bulkheads)

    def bulkhead(self, endpoint: str) -> trio.CapacityLimiter:
        bulkhead = self._bulkheads.get(endpoint)
        if bulkhead is None:
            bulkhead = self._bulkheads[endpoint] = trio.CapacityLimiter(self._per_endpoint)
        return bulkhead

    def try_admit(self, flight: Flight) -> bool:
        """Take both slots if both are free now (the common case: no wait, no scope)."""
        limiter, bulkhead = self._limiter, flight.bulkhead
        try:
            limiter.acquire_on_behalf_of_nowait(flight)
        except trio.WouldBlock:
            return False
        try:
            bulkhead.acquire_on_behalf_of_nowait(flight)
        except trio.WouldBlock:
            limiter.release_on_behalf_of(flight)
            return False
        return True

    async def admit(self, flight: Flight) -> None:
        """Wait for a slot of the global limit, then one of the endpoint's bulkhead."""
        limiter = self._limiter
        await limiter.acquire_on_behalf_of(flight)
        try:
            await flight.bulkhead.acquire_on_behalf_of(flight)
        except BaseException:
            limiter.release_on_behalf_of(flight)
            raise

    def release(self, flight: Flight) -> None:
        flight.bulkhead.release_on_behalf_of(flight)
        self._limiter.release_on_behalf_of(flight)

    def forget_if_idle(self, flight: Flight) -> None:
        """Drop the endpoint's bulkhead once too many exist and nobody holds or awaits it."""
        bulkhead = flight.bulkhead
        if (
            len(self._bulkheads) > _MAX_IDLE_BULKHEADS
            and bulkhead.borrowed_tokens == 0
            and bulkhead.statistics().tasks_waiting == 0
        ):
            self._bulkheads.pop(flight.endpoint, None)

    def slots_in_use(self) -> int:
        return int(self._limiter.borrowed_tokens)
