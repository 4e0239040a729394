"""The breaker registry: one breaker per endpoint, each with its own supervised actor.

Breakers are created on first use. Their state lives here, outside the actors, so the hot
path reads it synchronously and a restarted actor picks it up where the old one left off.
Each breaker's actor (a dynamic, transient child of the registry's supervisor) owns the
breaker's timers (:meth:`Breaker.timer_due`): open → half-open after the break, and
expiry once the breaker has been closed, or half-open without a probe, for
``idle_eviction`` seconds with no call in flight. Expired breakers are evicted; forced
ones never are, and neither is a breaker whose calls are still running (their outcomes
are what it is waiting for).

Every endpoint gets a breaker while breakers are on. At ``max_endpoints`` a new endpoint
makes room by evicting the least recently used breaker that is safe to drop (no calls in
flight, not forced), closed before half-open before open: a closed breaker knows least,
an open one most. When none is safe the registry goes over the bound for the time being;
the extra breakers all have calls in flight, so they are bounded by the calls running,
and the next new endpoint evicts back down to the bound once those calls are done.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final, assert_never

import attrs
import trio

from ..actors import ChildSpec, Restart, Supervisor
from ._breaker import Breaker, BreakerSnapshot, BreakerState

if TYPE_CHECKING:
    from ..actors import SupervisorHandle
    from ..spi import CircuitBreaker, Logger
    from ._events import RuntimeEvents

__all__ = ["BreakerRegistry"]

# Which breakers to drop first at the bound (lower first). Forced breakers are absent: an
# operator's override must not vanish because other endpoints came along.
_DROP_ORDER: Final = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@attrs.frozen
class _SpawnBreaker:
    """Start the actor of ``endpoint``'s breaker (a no-op if it is gone or has one)."""

    endpoint: str


@attrs.frozen
class _EvictBreaker:
    """Stop the actor of ``endpoint``'s evicted breaker."""

    endpoint: str


_Request = _SpawnBreaker | _EvictBreaker


class BreakerRegistry:
    """Owns every endpoint's breaker and the supervisor of their actors."""

    def __init__(
        self, settings: CircuitBreaker | None, events: RuntimeEvents, logger: Logger
    ) -> None:
        self.settings = settings
        self._events = events
        self._logger = logger
        self._breakers: OrderedDict[str, Breaker] = OrderedDict()
        self._wakes: dict[str, trio.Event] = {}
        capacity = 2 * settings.max_endpoints if settings is not None else 1
        self._requests_send, self._requests = trio.open_memory_channel[_Request](capacity)
        self.evictions = 0
        # How often a new endpoint found no breaker safe to drop (logged, rarely).
        self._over_bound = 0
        self._child_ids: dict[str, str] = {}
        self._listeners: list[Callable[[Breaker, BreakerState, BreakerState], None]] = []
        #: The breakers' supervisor: the registry actor first, then one actor per breaker.
        self.supervisor = Supervisor(
            [ChildSpec("registry", self._serve_requests, shutdown=1.0)],
            max_restarts=10,
            within=1.0,
            logger=logger,
            name="breakers",
        )

    @property
    def enabled(self) -> bool:
        return self.settings is not None

    # -- the hot path ----------------------------------------------------------------------

    def get(self, endpoint: str) -> Breaker | None:
        """The endpoint's breaker, created on first use; None only if breakers are off."""
        breaker = self._breakers.get(endpoint)
        if breaker is not None:
            self._breakers.move_to_end(endpoint)
            return breaker
        if self.settings is None:
            return None
        return self._create(endpoint, self.settings)

    def _create(self, endpoint: str, settings: CircuitBreaker) -> Breaker:
        while len(self._breakers) >= settings.max_endpoints:
            victim = self._safest_to_drop()
            if victim is None:
                self._over_bound += 1
                if self._over_bound == 1 or self._over_bound % 1000 == 0:
                    self._logger.warn(
                        "breaker limit reached and every breaker has calls in flight or is "
                        "forced; keeping one more until those calls finish",
                        endpoint=endpoint,
                        max_endpoints=settings.max_endpoints,
                        breakers=len(self._breakers),
                        times=self._over_bound,
                    )
                break
            self.evict(victim)
        breaker = Breaker(endpoint, settings, trio.current_time(), self._changed)
        self._breakers[endpoint] = breaker
        self._wakes[endpoint] = trio.Event()
        self._request(_SpawnBreaker(endpoint))
        return breaker

    def _safest_to_drop(self) -> str | None:
        # Least recently used first; stops at the first closed one, which is the common case.
        best: str | None = None
        best_rank = len(_DROP_ORDER)
        for endpoint, breaker in self._breakers.items():
            rank = _DROP_ORDER.get(breaker.state)
            if rank is None or breaker.inflight or rank >= best_rank:
                continue
            if rank == 0:
                return endpoint
            best, best_rank = endpoint, rank
        return best

    def evict(self, endpoint: str) -> None:
        """Forget ``endpoint``'s breaker and stop its actor."""
        if self._breakers.pop(endpoint, None) is None:
            return
        self.evictions += 1
        wake = self._wakes.pop(endpoint, None)
        if wake is not None:
            wake.set()
        self._request(_EvictBreaker(endpoint))

    def _request(self, request: _Request) -> None:
        try:
            self._requests_send.send_nowait(request)
        except trio.WouldBlock:
            # The breaker still works without its actor: acquire() moves an open breaker
            # to half-open lazily, and the bound evicts it when room is needed. Only its
            # expiry timer is lost.
            self._logger.warn(
                "breaker registry queue full",
                endpoint=request.endpoint,
                request=type(request).__name__,
            )

    def add_listener(self, listener: Callable[[Breaker, BreakerState, BreakerState], None]) -> None:
        """Call ``listener(breaker, old, new)`` after every transition (synchronous: it
        must not block; the shared-state actor queues what it hears)."""
        self._listeners.append(listener)

    def recent(self, since: float) -> list[Breaker]:
        """The breakers used or changed since ``since``, most recent first."""
        found = []
        for breaker in reversed(self._breakers.values()):
            if breaker.idle_since < since:
                break  # kept in order of use: the rest are older
            found.append(breaker)
        return found

    def _changed(self, breaker: Breaker, old: BreakerState, new: BreakerState) -> None:
        for listener in self._listeners:
            listener(breaker, old, new)
        self._events.breaker_transition(breaker.endpoint, old.value, new.value)
        wake = self._wakes.get(breaker.endpoint)
        if wake is not None:
            wake.set()

    # -- manual control and inspection -----------------------------------------------------

    def breaker(self, endpoint: str) -> Breaker:
        """The breaker for ``endpoint`` (created if needed), for manual control."""
        if self.settings is None:
            raise RuntimeError(
                "circuit breakers are disabled for this context; enable them with "
                "CloudContext.builder(...).circuit_breaker(CircuitBreaker())"
            )
        breaker = self._breakers.get(endpoint)
        if breaker is not None:
            self._breakers.move_to_end(endpoint)
            return breaker
        return self._create(endpoint, self.settings)

    def snapshots(self) -> tuple[BreakerSnapshot, ...]:
        now = trio.current_time()
        return tuple(breaker.snapshot(now) for breaker in self._breakers.values())

    def states(self) -> list[tuple[str, BreakerState]]:
        """Each live breaker's endpoint and state; cheaper than :meth:`snapshots`."""
        return [(endpoint, breaker.state) for endpoint, breaker in self._breakers.items()]

    def __len__(self) -> int:
        return len(self._breakers)

    # -- the actors ------------------------------------------------------------------------

    async def _serve_requests(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The registry actor: starts and stops breaker actors as endpoints come and go."""
        handle = self.supervisor.handle
        # After a restart, breakers that survived get their actors back.
        self._child_ids.clear()
        for endpoint in list(self._breakers):
            self._request(_SpawnBreaker(endpoint))
        task_status.started()
        async for request in self._requests:
            match request:
                case _SpawnBreaker(endpoint):
                    await self._spawn(handle, endpoint)
                case _EvictBreaker(endpoint):
                    child_id = self._child_ids.pop(endpoint, None)
                    if child_id is not None:
                        await handle.terminate_child(child_id)
                        await handle.delete_child(child_id)
                case _:
                    assert_never(request)

    async def _spawn(self, handle: SupervisorHandle, endpoint: str) -> None:
        if endpoint not in self._breakers or endpoint in self._child_ids:
            return
        child_id = self._child_ids[endpoint] = f"breaker:{endpoint}"
        if child_id in (child.id for child in handle.which_children()):
            return  # still running from before a registry restart
        await handle.start_child(
            ChildSpec(
                child_id,
                partial(self._breaker_actor, endpoint),
                restart=Restart.TRANSIENT,
                shutdown=1.0,
            )
        )

    async def _breaker_actor(
        self, endpoint: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            breaker = self._breakers.get(endpoint)
            wake = self._wakes.get(endpoint)
            if breaker is None or wake is None:
                return  # evicted: nothing left to time
            with trio.move_on_at(breaker.timer_due(trio.current_time())):
                await wake.wait()
            if wake.is_set():
                # A transition or an eviction: look at the breaker afresh. An evicted
                # breaker's wake is gone, or belongs to its successor: leave it be.
                if self._wakes.get(endpoint) is wake:
                    self._wakes[endpoint] = trio.Event()
                continue
            if breaker.on_timer(trio.current_time()):
                self.evict(endpoint)
                return
