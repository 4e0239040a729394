"""The shared-state actor: what this process tells other processes, and what it hears.

Operations never wait for the shared store. Breaker transitions are heard synchronously
(a registry listener) and queued; the actor, a child of the runtime's supervisor, sends
them and reads the other processes' view whenever a change is pushed to it (the store's
publish/subscribe), at the end of a deferred break, and at least every ``poll_interval``:

- **Own openings are published.** A breaker that opens on its own failures reports the
  endpoint open for two breaks; one whose probe succeeds withdraws every report (the
  endpoint recovered, for everyone).
- **Recovery is probed once.** An open breaker probes only while this process holds the
  endpoint's probe lease; the others stay open until the holder's probe succeeds (every
  report withdrawn: they close without a probe of their own) or fails (it reports again).
  A lease whose holder died expires after one break.
- **Enough reports open the local breaker.** When ``quorum`` processes report an endpoint
  open and this process's breaker is closed or probing, it opens for a full break
  (:attr:`~cloudkit_trio.runtime.BreakerEvent.QUORUM_REACHED`), so one process's outage
  costs the others no failures of their own.
- **Manual overrides are cluster-wide.** An override set through
  :meth:`~cloudkit_trio.Cloud.force_everywhere` (or by any process) forces the local
  breaker open or closed; lifting it resets the local breaker.

A call that fails or runs past the backend's bound is a normal fault: it is counted
(``shared_state_unavailable``, ``snapshot().shared``), the process goes on deciding from
its own breakers, and the next poll tries again, so it resynchronises by itself when the
store comes back. Reports queued while the store was away are sent then, if still current.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections import deque
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._errors import CloudError
from ..spi._shared_state import ForcedState, SharedState, SharedStateUnavailable, SharedView
from ._breaker import Breaker, BreakerEvent, BreakerState

if TYPE_CHECKING:
    from ..spi import Logger
    from ._admission import Admission
    from ._events import RuntimeEvents
    from ._registry import BreakerRegistry

__all__ = ["SharedSettings", "SharedSnapshot", "SharedSync", "default_process_id"]

# At most this many endpoints are looked at per poll: the most recently used ones.
_MAX_VIEWED: Final = 256
# Endpoints not used for this long are not looked at any more.
_VIEW_HORIZON: Final = 300.0
# Seconds each lease of a shared bucket's tokens lasts.
_LEASE_PERIOD: Final = 0.1
# Seconds between two looks at a deferred breaker nobody has asked for since its break.
_DEMAND_CHECK: Final = 0.1
# Seconds before subscribing again after the subscription failed.
_RESUBSCRIBE_AFTER: Final = 0.5
# Every how many polls the overrides of all endpoints are read.
_OVERRIDES_EVERY: Final = 10
# A report lasts this many breaks (see _heard).
_REPORT_BREAKS: Final = 2.0
# Transitions heard but not yet sent, at most (the oldest are dropped past it).
_MAX_PENDING: Final = 1024


def default_process_id() -> str:
    """``host:pid:random``: unique per process, and says nothing secret."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@attrs.frozen(kw_only=True)
class SharedSettings:
    """What the builder configured (validated there)."""

    backend: SharedState
    #: Processes that must report an endpoint open before this one opens too.
    quorum: int = 2
    #: Seconds between two reads of the shared view when nothing was pushed.
    poll_interval: float = 1.0
    #: This process's name in the shared state.
    process: str = attrs.field(factory=default_process_id)


@attrs.frozen
class SharedSnapshot:
    """The shared state as this process sees it (``snapshot().shared``).

    .. versionadded:: 0.2.0
    """

    #: ``repr`` of the backend (never its URL).
    backend: str
    process: str
    quorum: int
    #: Whether the last call to the store succeeded.
    available: bool
    #: Calls that failed or ran past the bound since the start, and the last one's reason.
    failures: int
    last_error: str | None
    #: Breakers this process opened because of the other processes' reports.
    opened_by_quorum: int
    #: Endpoints under a cluster-wide override, as last seen.
    forced: dict[str, ForcedState]
    #: Half-open probes this process sent holding the endpoint's lease; open breakers
    #: now waiting for another process's probe.
    probes_led: int = 0
    waiting_for_probe: int = 0
    #: Whether other processes' changes are pushed here now (else it only polls).
    subscribed: bool = False
    #: Leases of shared rate-limit tokens taken since the start.
    leases: int = 0


@attrs.define
class _Deferred:
    """An open breaker kept from probing: when its break ended, when to look again."""

    due: float
    next_try: float


@attrs.frozen
class _Report:
    endpoint: str
    #: Seconds the report lasts; 0.0 withdraws every report of the endpoint (recovered).
    seconds: float
    #: When it was heard (``trio.current_time()``).
    at: float


class SharedSync:
    """The actor, and the synchronous hook the breaker registry calls."""

    def __init__(
        self,
        settings: SharedSettings,
        breakers: BreakerRegistry,
        events: RuntimeEvents,
        logger: Logger,
        admission: Admission | None = None,
    ) -> None:
        self.settings = settings
        self._breakers = breakers
        self._admission = admission
        self._lease_now = trio.Event()
        if admission is not None:
            admission.on_shared_bucket = self._lease_soon
        #: Per shared bucket (by endpoint): its demand counter at the last lease.
        self._asked: dict[str, int] = {}
        self.leases = 0
        self._events = events
        self._logger = logger
        self._pending: deque[_Report] = deque(maxlen=_MAX_PENDING)
        self._wake = trio.Event()
        self.available = False
        self.failures = 0
        self.last_error: str | None = None
        self.opened_by_quorum = 0
        self._forced: dict[str, ForcedState] = {}
        #: Open breakers kept from probing until this process holds the lease: when
        #: their break ends.
        self._deferred: dict[str, _Deferred] = {}
        #: Endpoints whose probe lease this process holds, and leases to give back.
        self._probing: set[str] = set()
        self._releases: deque[str] = deque(maxlen=_MAX_PENDING)
        self.probes_led = 0
        self._polls = 0
        #: Whether changes are pushed to this process now (else it polls only).
        self.subscribed = False
        self._resync = True
        #: Endpoints another process changed since the last view: read at once.
        self._dirty: set[str] = set()
        breakers.add_listener(self._heard)

    # -- heard from the breakers (synchronous) ---------------------------------------------

    def _heard(self, breaker: Breaker, old: BreakerState, new: BreakerState) -> None:
        event, endpoint = breaker.last_event, breaker.endpoint
        if old is BreakerState.HALF_OPEN and endpoint in self._probing:
            # This process's probe has ended, whichever way: the lease goes back.
            self._probing.discard(endpoint)
            self._releases.append(endpoint)
        if new is BreakerState.OPEN:
            if event in (BreakerEvent.FAILURE_THRESHOLD_REACHED, BreakerEvent.PROBE_FAILED):
                # For two breaks: past the end of this one, while the lease holder probes,
                # the report still says the endpoint is down; a probe that succeeds
                # withdraws it sooner, one that fails renews it.
                seconds = _REPORT_BREAKS * breaker.settings.break_duration
                self._queue(_Report(endpoint, seconds, breaker.since))
            # Whoever opened it, only the holder of the endpoint's probe lease probes.
            due = breaker.defer_half_open()
            if due is not None:
                self._deferred[endpoint] = _Deferred(due, due)
            return
        self._deferred.pop(endpoint, None)
        if new is BreakerState.CLOSED and event is BreakerEvent.PROBE_SUCCEEDED:
            self._queue(_Report(endpoint, 0.0, breaker.since))

    def _queue(self, report: _Report) -> None:
        self._pending.append(report)
        self._wake.set()  # published now, not at the next poll

    # -- the actor -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backend = self.settings.backend
        async with AsyncExitStack() as stack:
            # A backend that is an async context manager is opened and closed here, with
            # whatever it opens (a client's task group) nested inside this task's scopes:
            # closing it in a scope of our own (to shield or bound it) would exit its task
            # group from inside a scope opened after it, which Trio refuses.
            if isinstance(backend, AbstractAsyncContextManager):
                await stack.enter_async_context(backend)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen)
                nursery.start_soon(self._lease_loop)
                task_status.started()
                while True:
                    await self.sync_once()
                    # Until a push, the next poll, or the end of a deferred break.
                    wake_at = trio.current_time() + self.settings.poll_interval
                    for deferred in self._deferred.values():
                        wake_at = min(wake_at, deferred.next_try)
                    with trio.move_on_at(wake_at):
                        await self._wake.wait()
                    self._wake = trio.Event()

    async def _listen(self) -> None:
        """Wake the loop whenever another process publishes a change: it is read at once,
        not at the next poll. Without a subscription (the store is away, or the backend
        has none) the polls alone keep this process in step."""
        backend = self.settings.backend
        while True:
            try:
                async with backend.changes() as changes:
                    self.subscribed = True
                    self._succeeded()
                    # Whatever changed before the subscription took hold was pushed to
                    # nobody here: read everything at once.
                    self._resync = True
                    self._wake.set()
                    async for endpoint in changes:
                        if len(self._dirty) < _MAX_VIEWED:
                            self._dirty.add(endpoint)
                        self._wake.set()
            except NotImplementedError:
                return  # a backend without push: polling it is
            except Exception as error:
                self._failed("subscribe", error)
            finally:
                self.subscribed = False
            await trio.sleep(_RESUBSCRIBE_AFTER)

    async def _lease_loop(self) -> None:
        """Every _LEASE_PERIOD, lease each shared bucket's tokens for the next period; and
        at once when a shared bucket is made."""
        while True:
            await self.lease_once()
            with trio.move_on_after(_LEASE_PERIOD):
                await self._lease_now.wait()
            if self._lease_now.is_set():
                self._lease_now = trio.Event()

    def _lease_soon(self) -> None:
        self._lease_now.set()

    async def lease_once(self) -> None:
        """Lease as many tokens as each shared bucket was asked for in the last period,
        and set its rate so it spends them over the next."""
        if self._admission is None:
            return
        backend = self.settings.backend
        live = set()
        for endpoint, bucket in self._admission.shared_buckets():
            live.add(endpoint)
            asked = bucket.asked - self._asked.get(endpoint, 0)
            self._asked[endpoint] = bucket.asked
            if asked <= 0:
                continue  # idle: its share stays as it was
            limit = bucket.settings
            # Its demand counts the attempts the bucket refused too, so asking for exactly
            # that grows with demand; asking for more would strand tokens here that other
            # processes could have spent.
            want = asked
            # The shared bucket must hold two periods of the rate, or tokens would spill
            # while a lease is late; more is burst that every process may take at once.
            capacity = max(limit.burst, want, math.ceil(limit.rate * _LEASE_PERIOD * 2))
            try:
                lease = await backend.lease_tokens(
                    limit.key or endpoint,
                    rate=limit.rate,
                    burst=capacity,
                    count=want,
                    process=self.settings.process,
                    period=_LEASE_PERIOD,
                )
            except Exception as error:
                self._failed("lease", error)
                # Decided locally: every shared bucket paces itself at its last share.
                now = trio.current_time()
                for _endpoint, local in self._admission.shared_buckets():
                    local.unlease(now)
                return
            self._succeeded()
            self.leases += 1
            bucket.lease(trio.current_time(), lease.granted, _LEASE_PERIOD)
        for endpoint in [e for e in self._asked if e not in live]:
            del self._asked[endpoint]

    async def sync_once(self) -> None:
        """Send what was heard, read and apply the other processes' view, then settle
        which deferred breakers may probe."""
        await self._send_reports()
        views = await self._apply_views()
        await self._lead_probes(views)

    async def force_everywhere(self, endpoint: str, state: ForcedState | None) -> None:
        """Set or lift a cluster-wide override; applied here at once, elsewhere at their
        next poll. Raises :class:`~cloudkit_trio.SharedStateUnavailable` when the store
        does not take it (then nothing changed anywhere)."""
        try:
            await self.settings.backend.force(endpoint, state)
        except Exception as error:
            self._failed("force", error)
            if isinstance(error, CloudError):
                raise
            raise SharedStateUnavailable(
                f"the shared state backend failed: {type(error).__name__}"
            ) from error
        self._succeeded()
        self._apply_forced(self._breakers.breaker(endpoint), state, trio.current_time())

    # -- internals -------------------------------------------------------------------------

    async def _send_reports(self) -> None:
        backend, process = self.settings.backend, self.settings.process
        while self._pending:
            report = self._pending[0]
            # A report held back while the store was away says only what is left of it.
            left = report.seconds - (trio.current_time() - report.at)
            try:
                if report.seconds > 0.0:
                    if left > 0.0:
                        await backend.report_open(report.endpoint, process, left)
                else:
                    await backend.recovered(report.endpoint)
            except Exception as error:  # every failure of the store is a fault like any
                self._failed("report", error)
                return  # kept: sent when the store answers again
            self._succeeded()
            self._pending.popleft()

    async def _apply_views(self) -> dict[str, SharedView] | None:
        """The view of each watched endpoint, applied; None when the store is away."""
        backend = self.settings.backend
        overrides: dict[str, ForcedState] = {}
        self._polls += 1
        dirty, self._dirty = self._dirty, set()
        resync, self._resync = self._resync, False
        if (
            dirty
            or resync
            or not self.subscribed
            or not self.available
            or self._polls % _OVERRIDES_EVERY == 0
        ):
            # Overrides of endpoints this process does not use yet come by push; without
            # one (not subscribed yet, or the subscription lost) every poll reads them,
            # and with one every few polls do, for a push that was lost. Those of the
            # endpoints it uses come with every view.
            try:
                overrides = await backend.overrides()
            except Exception as error:
                self._failed("sync", error)
                return None
            self._succeeded()
        now = trio.current_time()
        recent = self._breakers.recent(now - _VIEW_HORIZON)[:_MAX_VIEWED]
        seen = {breaker.endpoint for breaker in recent}
        # Overridden endpoints (now, or until now) are watched whether used here or not.
        extra = [e for e in (*overrides, *self._forced, *self._deferred, *dirty) if e not in seen]
        watched = recent + [self._breakers.breaker(e) for e in dict.fromkeys(extra)]
        if not watched:
            return {}
        try:
            views = await backend.views([b.endpoint for b in watched])
        except Exception as error:
            self._failed("sync", error)
            return None
        self._succeeded()
        now = trio.current_time()
        quorum = self.settings.quorum
        for breaker, view in zip(watched, views, strict=True):
            self._apply_forced(breaker, view.forced, now)
            if view.forced is None and view.open_reports >= quorum and breaker.open_by_quorum(now):
                self.opened_by_quorum += 1
                self._events.shared_open(breaker.endpoint)
        return {b.endpoint: view for b, view in zip(watched, views, strict=True)}

    async def _lead_probes(self, views: dict[str, SharedView] | None) -> None:
        """Give back finished probes' leases; let due deferred breakers probe if this
        process takes the lease, close them if the endpoint recovered elsewhere."""
        backend, process = self.settings.backend, self.settings.process
        while self._releases and views is not None:
            try:
                await backend.release_probe(self._releases[0], process)
            except Exception as error:
                self._failed("probe", error)
                break  # the lease expires by itself meanwhile
            self._releases.popleft()
        now = trio.current_time()
        for endpoint, deferred in list(self._deferred.items()):
            view = None if views is None else views.get(endpoint)
            if view is not None and view.open_reports == 0:
                # Every report withdrawn (a probe elsewhere succeeded) or run out: closed
                # at once, even before this process's own break is over.
                del self._deferred[endpoint]
                self._breakers.breaker(endpoint).recovered_elsewhere(now)
                continue
            if now < deferred.next_try:
                continue
            breaker = self._breakers.breaker(endpoint)
            if views is None:
                # The store is away: nobody can be asked, so probe as a lone process would.
                del self._deferred[endpoint]
                breaker.allow_half_open(deferred.due)
                continue
            if breaker.last_used < deferred.due:
                # Nobody here has asked for the endpoint since the break ended: the lease
                # is for a process that will send the probe at once. Look again soon.
                deferred.next_try = now + min(self.settings.poll_interval, _DEMAND_CHECK)
                continue
            try:
                held = await backend.acquire_probe(
                    endpoint, process, breaker.settings.break_duration
                )
            except Exception as error:
                self._failed("probe", error)
                del self._deferred[endpoint]
                breaker.allow_half_open(deferred.due)
                continue
            if held:
                del self._deferred[endpoint]
                self._probing.add(endpoint)
                self.probes_led += 1
                breaker.allow_half_open(now)
            else:
                # Another process probes. Its outcome is pushed here; if it never comes
                # (the holder died), the lease runs out: ask again at the next poll.
                deferred.next_try = now + self.settings.poll_interval

    def _apply_forced(self, breaker: Breaker, forced: ForcedState | None, now: float) -> None:
        endpoint = breaker.endpoint
        known = self._forced.get(endpoint)
        if forced is known:
            return
        if forced is ForcedState.OPEN:
            breaker.force_open(now)
            self._forced[endpoint] = forced
        elif forced is ForcedState.CLOSED:
            breaker.force_closed(now)
            self._forced[endpoint] = forced
        else:
            breaker.reset(now)
            del self._forced[endpoint]

    def _failed(self, operation: str, error: BaseException) -> None:
        if self.available or self.failures == 0:
            # Once per outage, not once per poll.
            self._logger.warn(
                "shared state unavailable; deciding locally",
                operation=operation,
                error=type(error).__name__,
            )
        self.available = False
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}"
        self._events.shared_state_unavailable(operation)

    def _succeeded(self) -> None:
        if not self.available and self.failures:
            self._logger.info("shared state available again", failures=self.failures)
        self.available = True

    def snapshot(self) -> SharedSnapshot:
        return SharedSnapshot(
            backend=repr(self.settings.backend),
            process=self.settings.process,
            quorum=self.settings.quorum,
            available=self.available,
            failures=self.failures,
            last_error=self.last_error,
            opened_by_quorum=self.opened_by_quorum,
            forced=dict(self._forced),
            probes_led=self.probes_led,
            waiting_for_probe=len(self._deferred),
            subscribed=self.subscribed,
            leases=self.leases,
        )
