"""The breaker registry: one breaker per endpoint, each with its own supervised actor.

Breakers are created on first use. Their state lives here, outside the actors, so the hot
path reads it synchronously and a restarted actor picks it up where the old one left off.
Each breaker's actor (a dynamic, transient child of the registry's supervisor) owns the
breaker's timers: open → half-open after the break, and eviction once the breaker has
been closed and idle for ``idle_eviction`` seconds. Open or half-open breakers are never
evicted. At most ``max_endpoints`` breakers exist; past that the least recently used idle
one is evicted, and when none is idle the new endpoint runs unprotected (logged).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..actors import ChildSpec, Restart, Supervisor
from ._breaker import Breaker, BreakerSnapshot, BreakerState

if TYPE_CHECKING:
    from ..spi import CircuitBreaker, Logger
    from ._events import RuntimeEvents

__all__ = ["BreakerRegistry"]


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
        self._requests_send, self._requests = trio.open_memory_channel[tuple[str, str]](capacity)
        self.unprotected = 0
        self.evictions = 0
        self._child_ids: dict[str, str] = {}
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
        """The endpoint's breaker, created on first use; None if breakers are off or full."""
        breaker = self._breakers.get(endpoint)
        if breaker is not None:
            self._breakers.move_to_end(endpoint)
            return breaker
        if self.settings is None:
            return None
        return self._create(endpoint)

    def _create(self, endpoint: str) -> Breaker | None:
        assert self.settings is not None
        if len(self._breakers) >= self.settings.max_endpoints and not self._evict_one_idle():
            self.unprotected += 1
            if self.unprotected == 1 or self.unprotected % 1000 == 0:
                self._logger.warn(
                    "breaker limit reached; endpoint runs without a circuit breaker",
                    endpoint=endpoint,
                    max_endpoints=self.settings.max_endpoints,
                    unprotected_calls=self.unprotected,
                )
            return None
        breaker = Breaker(endpoint, self.settings, trio.current_time(), self._changed)
        self._breakers[endpoint] = breaker
        self._wakes[endpoint] = trio.Event()
        self._request("spawn", endpoint)
        return breaker

    def _evict_one_idle(self) -> bool:
        for endpoint, breaker in self._breakers.items():
            if breaker.evictable:
                self.evict(endpoint)
                return True
        return False

    def evict(self, endpoint: str) -> None:
        """Forget ``endpoint``'s breaker and stop its actor."""
        if self._breakers.pop(endpoint, None) is None:
            return
        self.evictions += 1
        wake = self._wakes.pop(endpoint, None)
        if wake is not None:
            wake.set()
        self._request("evict", endpoint)

    def _request(self, kind: str, endpoint: str) -> None:
        try:
            self._requests_send.send_nowait((kind, endpoint))
        except trio.WouldBlock:
            # The breaker still works without its actor: acquire() moves an open breaker
            # to half-open lazily. Only its eviction timer is lost.
            self._logger.warn("breaker registry queue full", endpoint=endpoint, request=kind)

    def _changed(self, breaker: Breaker, old: BreakerState, new: BreakerState) -> None:
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
        breaker = self.get(endpoint)
        if breaker is None:
            raise RuntimeError(
                f"no breaker can be created for {endpoint}: all {self.settings.max_endpoints} "
                "breakers are open or half-open"
            )
        return breaker

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
            self._request("spawn", endpoint)
        task_status.started()
        async for kind, endpoint in self._requests:
            if kind == "spawn":
                if endpoint in self._breakers and endpoint not in self._child_ids:
                    child_id = self._child_ids[endpoint] = f"breaker:{endpoint}"
                    if child_id in (child.id for child in handle.which_children()):
                        continue  # still running from before a registry restart
                    await handle.start_child(
                        ChildSpec(
                            child_id,
                            partial(self._breaker_actor, endpoint),
                            restart=Restart.TRANSIENT,
                            shutdown=1.0,
                        )
                    )
            else:
                child_id_or_none = self._child_ids.pop(endpoint, None)
                if child_id_or_none is not None:
                    await handle.terminate_child(child_id_or_none)
                    await handle.delete_child(child_id_or_none)

    async def _breaker_actor(
        self, endpoint: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        settings = self.settings
        assert settings is not None
        while True:
            breaker = self._breakers.get(endpoint)
            wake = self._wakes.get(endpoint)
            if breaker is None or wake is None:
                return  # evicted: nothing left to time
            if breaker.state is BreakerState.OPEN and breaker.half_open_at is not None:
                due = breaker.half_open_at
            elif breaker.evictable:
                due = breaker.last_used + settings.idle_eviction
            else:
                due = math.inf
            with trio.move_on_at(due):
                await wake.wait()
            if wake.is_set():
                self._wakes[endpoint] = trio.Event()
                continue
            now = trio.current_time()
            if breaker.state is BreakerState.OPEN:
                breaker.half_open_if_due(now)
            elif breaker.evictable and now >= breaker.last_used + settings.idle_eviction:
                self.evict(endpoint)
                return
