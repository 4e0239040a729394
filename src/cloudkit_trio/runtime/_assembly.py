"""The runtime of one run of a context: its supervision tree, and how it shuts down.

This module builds the tree (metrics aggregator, credential refresher, breakers, router,
and ``workers``: the users' own subtree, with its own restart intensity) and owns the
shutdown choreography; the facade (``Cloud``) only delegates to it.

Users' workers crash on their own budget: the ``workers`` subtree restarts them within its
intensity and never counts against the runtime's. When it gives up, the context closes
gracefully (every accepted operation still gets its reply) and its
``RestartIntensityExceeded``, whose cause is the worker's own exception, is raised from
:meth:`Runtime.serve` afterwards.

Shutdown, graceful (:meth:`Runtime.aclose`) or hard (the host's nursery is cancelled, or
the tree gives up with ``RestartIntensityExceeded``), is the same sequence; the graceful
one first lets queued and running work finish within ``CloudConfig.shutdown_grace``:

1. the lifecycle moves to *closing*: every entry point answers ``ContextClosed``;
2. the queue is closed and emptied in one synchronous step, the operations in flight are
   cancelled (they answer ``ContextClosed``) and the credential refresher is closed;
3. what was taken from the queue is answered ``ContextClosed``, and the operations in
   flight land (bounded), so every one of them is in the metrics;
4. the tree stops in reverse start order (the aggregator last, draining), the transport
   the runtime owns is closed, and the lifecycle is *closed*.

The tree runs in a shielded scope of its own, so a host's cancellation reaches this
choreography first and the actors are still there to answer for their operations; they
are cancelled at step 4, within a bounded time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import httpx
import trio

from .._config import CloudConfig
from .._masking import mask_url
from .._provider import ProviderType
from .._submission import TRACE_CAPTURE
from ..actors import (
    ChildKind,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorHandle,
)
from ..actors import EventKind as SupervisorEventKind
from ..spi import AuthProvider, CircuitBreaker, Logger, MetricsCollector, NoopMetrics, RetryPolicy
from ..transport._h11_transport import PooledTransport
from ..transport._signing import PerServiceSigner, RequestSigner
from ._admission import Admission, AdmissionSettings
from ._aggregator import MetricsAggregator
from ._attempt import Attempts
from ._containment import ContainedLogger, Containment
from ._credentials import CredentialRefresher
from ._events import Gauge, RuntimeEvents, RuntimeMetric
from ._lifecycle import ContextState, Lifecycle
from ._queue import SubmissionQueue
from ._registry import BreakerRegistry
from ._router import Router
from ._runner import OperationRunner
from ._shared import SharedSettings, SharedSync
from ._signers import Signers
from ._targets import Targets
from ._tracing import Tracing, contained_capture, open_tracer

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._queue import Queued

__all__ = ["Runtime", "RuntimeSettings"]

# How long a hard stop waits for replies and for cancelled operations to land.
_STOP_BUDGET: Final = 2.0
# How long closing a transport the runtime owns may take.
_TRANSPORT_CLOSE_BUDGET: Final = 1.0
# How often the graceful drain looks again while queued work waits for a free worker.
_DRAIN_POLL: Final = 0.005


@attrs.frozen(kw_only=True)
class RuntimeSettings:
    """Everything a context was built with (validated by the builder)."""

    provider: ProviderType
    config: CloudConfig
    auth_provider: AuthProvider
    retry_policy: RetryPolicy
    breaker: CircuitBreaker | None
    collectors: tuple[MetricsCollector, ...]
    logger: Logger
    transport: httpx.AsyncBaseTransport | None
    plain_httpx: bool
    signer: RequestSigner | PerServiceSigner
    advisory_window: float
    mandatory_window: float
    metrics_flush_interval: float
    workers: WorkerSupervision = attrs.field(factory=lambda: WorkerSupervision())
    admission: AdmissionSettings = attrs.field(factory=AdmissionSettings)
    #: Endpoint state shared with other processes, or None (the default: local only).
    shared: SharedSettings | None = None
    #: Makes each run's tracer (builder ``.tracing()``), or None: operations untraced.
    tracing: Tracing | None = None


@attrs.frozen(kw_only=True)
class WorkerSupervision:
    """How the users' ``workers`` subtree restarts their children (builder-validated)."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: float = 5.0


class Runtime:
    """Everything one run of a context owns, and its lifecycle."""

    def __init__(self, settings: RuntimeSettings) -> None:
        config = settings.config
        self.settings = settings
        provider = str(settings.provider)
        self.lifecycle = Lifecycle(provider)
        self.containment = Containment()
        self.logger = ContainedLogger(settings.logger, self.containment)
        self.queue = SubmissionQueue(config.queue_size, self.lifecycle)
        self.aggregator = MetricsAggregator(
            settings.collectors,
            self.containment,
            capacity=config.metrics_queue_size,
            flush_interval=settings.metrics_flush_interval,
        )
        # Exactly NoopMetrics: a subclass may record something after all.
        wanted = any(type(collector) is not NoopMetrics for collector in settings.collectors)
        self.events = RuntimeEvents(
            settings.provider,
            self.logger,
            self.aggregator.emit if wanted else _discard,
            metrics_wanted=wanted,
        )
        self.refresher = CredentialRefresher(
            settings.auth_provider,
            self.events,
            self.containment,
            advisory_window=settings.advisory_window,
            mandatory_window=settings.mandatory_window,
        )
        self.breakers = BreakerRegistry(settings.breaker, self.events, self.logger)
        self.owns_transport = settings.transport is None
        self.transport = _transport(settings)
        self.admission = Admission(
            max_concurrency=config.max_concurrency,
            max_per_endpoint=config.max_concurrency_per_endpoint,
            settings=settings.admission,
        )
        self.shared = (
            None
            if settings.shared is None
            else SharedSync(
                settings.shared, self.breakers, self.events, self.logger, self.admission
            )
        )
        #: This run's tracer, or None (the default): see ``_tracing``.
        self.tracer = open_tracer(settings.tracing, self.containment)
        self.runner = OperationRunner(
            provider=settings.provider,
            lifecycle=self.lifecycle,
            targets=Targets(
                config.endpoint,
                {
                    "connect": config.connect_timeout,
                    "read": config.timeout,
                    "write": config.timeout,
                    "pool": config.timeout,
                },
            ),
            admission=self.admission,
            attempts=Attempts(
                transport=self.transport,
                breakers=self.breakers,
                events=self.events,
                containment=self.containment,
                lifecycle=self.lifecycle,
                attempt_timeout=config.timeout,
                max_response_size=config.max_response_size,
            ),
            policy=settings.retry_policy,
            refresher=self.refresher,
            signers=Signers(settings.signer, region=config.region, containment=self.containment),
            events=self.events,
            containment=self.containment,
            stream_timeout=config.stream_timeout,
            max_response_size=config.max_response_size,
            tracer=self.tracer,
            region=config.region,
        )
        self.router = Router(
            self.queue, self.runner, self.lifecycle, workers=config.max_concurrency
        )
        self.aggregator.add_sampler(self._sample)
        workers = settings.workers
        self.workers = Supervisor(
            [],
            strategy=workers.strategy,
            max_restarts=workers.max_restarts,
            within=workers.within,
            logger=self.logger,
            name="workers",
        )
        #: Why the workers subtree gave up, once it has: raised by serve() at the end.
        self.workers_failure: RestartIntensityExceeded | None = None
        self.supervisor = Supervisor(
            [
                ChildSpec("metrics-aggregator", self.aggregator.run, shutdown=10.0),
                ChildSpec("credential-refresher", self.refresher.run, shutdown=1.0),
                ChildSpec("breakers", self.breakers.supervisor.run),
                *(
                    []
                    if self.shared is None
                    else [ChildSpec("shared-state", self.shared.run, shutdown=1.0)]
                ),
                ChildSpec("router", self.router.run, shutdown=1.0),
                # Last, so it stops first: workers may still use the context while stopping.
                ChildSpec(
                    "workers",
                    self._run_workers,
                    restart=Restart.TEMPORARY,
                    kind=ChildKind.SUPERVISOR,
                    shutdown=None,
                ),
            ],
            max_restarts=3,
            within=5.0,
            logger=self.logger,
            name="cloudkit",
            on_event=self._supervisor_event,
        )
        self._handle: SupervisorHandle | None = None
        self._nursery: trio.Nursery | None = None
        self._tree_scope = trio.CancelScope(shield=True)
        self._stopped_gracefully = False
        self._tree_stopped = trio.Event()

    @property
    def handle(self) -> SupervisorHandle:
        assert self._handle is not None, "the runtime has not started"
        return self._handle

    # -- running ---------------------------------------------------------------------------

    async def serve(self, *, started: Callable[[], None]) -> None:
        """Run until :meth:`aclose` finishes, the host cancels, or the tree gives up.

        ``started`` is called once the tree runs and the context accepts work (the facade
        hands its ``Cloud`` to its own ``task_status`` there).
        """
        if self.tracer is not None:
            # Submissions made from now on keep their caller's trace context.
            TRACE_CAPTURE.start(contained_capture(self.tracer, self.containment))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._handle = await nursery.start(self._run_tree)
                self.lifecycle.move(ContextState.RUNNING)
                started()
                try:
                    await self._tree_stopped.wait()
                finally:
                    if not self._stopped_gracefully:
                        await self._stop_hard()
        finally:
            self.lifecycle.begin_closing()
            self._stop_accepting()
            if self.owns_transport:
                # Also on the cancelled path: pooled connections must not be left to the
                # garbage collector. Closing twice is harmless.
                with trio.move_on_after(_TRANSPORT_CLOSE_BUDGET, shield=True):
                    await self.transport.aclose()
            if self.tracer is not None:
                TRACE_CAPTURE.stop()
            self.lifecycle.finish()
        if self.workers_failure is not None:
            raise self.workers_failure

    async def _run_tree(self, *, task_status: trio.TaskStatus[SupervisorHandle]) -> None:
        try:
            with self._tree_scope:
                await self.supervisor.run(task_status=task_status)
        finally:
            self._tree_stopped.set()

    async def _run_workers(self, *, task_status: trio.TaskStatus[SupervisorHandle]) -> None:
        """The users' subtree; when it gives up, the context closes in order."""
        try:
            await self.workers.run(task_status=task_status)
        except RestartIntensityExceeded as exc:
            self.workers_failure = exc
            assert self._nursery is not None
            # Not from inside the tree: closing stops the tree, this task included; and
            # not waiting for "closed", which serve() reaches only after this task ends.
            self._nursery.start_soon(self._close_gracefully)

    async def aclose(self) -> None:
        """Graceful shutdown (DESIGN.md §6.3); see the module docstring. Idempotent."""
        await self._close_gracefully()
        await self.lifecycle.wait_closed()

    async def _close_gracefully(self) -> None:
        """Steps 1 to 4 after a drain; returns once the tree is told to stop."""
        if not self.lifecycle.begin_closing():
            return
        try:
            with trio.move_on_after(self.settings.config.shutdown_grace):
                await self._drain()
            await self._answer(self._stop_accepting())
            self._stopped_gracefully = True
            await self.handle.stop()
        finally:
            if not self._stopped_gracefully:
                # Cancelled itself: finish as a hard stop instead of leaving a context
                # that refuses everything but never ends.
                self._tree_scope.cancel()

    async def _drain(self) -> None:
        """Let queued and running operations finish."""
        runner, queue, router = self.runner, self.queue, self.router
        while True:
            if runner.inflight:
                await runner.wait_idle()
            elif queue.depth or not router.idle:
                # A worker holds a submission it has not started yet, or queued work
                # waits for a worker that is still delivering a reply.
                await trio.sleep(_DRAIN_POLL)
            else:
                return

    def _stop_accepting(self) -> list[Queued]:
        """Steps 1 and 2, synchronous: refuse, close and empty the queue, cancel what runs."""
        self.lifecycle.begin_closing()
        taken = self.queue.close_and_take_all()
        self.lifecycle.cancel_operations()
        self.refresher.close()
        return taken

    async def _answer(self, taken: list[Queued]) -> None:
        """Step 3: answer what was queued; let the cancelled operations land."""
        # The cancelled operations first: they land at their next checkpoint, and each is
        # reported before the aggregator stops. Then the replies nobody ran.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _STOP_BUDGET):
            await self.runner.wait_idle()
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _STOP_BUDGET):
            await self.router.refuse(taken)

    async def _stop_hard(self) -> None:
        await self._answer(self._stop_accepting())
        # Step 4 at once: stop the tree (the aggregator still drains, within its budget).
        self._tree_scope.cancel()

    # -- reporting -------------------------------------------------------------------------

    def _supervisor_event(self, event: SupervisorEvent) -> None:
        if event.kind is SupervisorEventKind.CHILD_RESTARTING and event.child_label is not None:
            self.events.supervisor_restart(_restart_label(event))

    def _sample(self) -> list[Gauge]:
        gauges = [
            Gauge(RuntimeMetric.QUEUE_DEPTH, self.queue.depth, {}),
            Gauge(RuntimeMetric.INFLIGHT, self.runner.inflight, {}),
        ]
        age = self.refresher.age()
        if age is not None:
            gauges.append(
                Gauge(RuntimeMetric.CREDENTIAL_AGE, age, {"provider": str(self.settings.provider)})
            )
        # Sampled rather than derived from transitions alone, so a breaker that never left
        # CLOSED is visible too; bounded by CircuitBreaker.max_endpoints.
        gauges.extend(
            Gauge(RuntimeMetric.BREAKER_STATE, 1.0, {"endpoint": endpoint, "state": str(state)})
            for endpoint, state in self.breakers.states()
        )
        # Only the endpoints whose limits adapt; bounded like the gates themselves.
        for endpoint, limit, rate in self.admission.gauges():
            tags = {"endpoint": mask_url(endpoint)}
            gauges.append(Gauge(RuntimeMetric.CONCURRENCY_LIMIT, float(limit), tags))
            if rate is not None:
                gauges.append(Gauge(RuntimeMetric.RATE_LIMIT, rate, tags))
        return gauges


def _discard(_event: object) -> None:
    """Where metric events go when no collector wants them."""


def _restart_label(event: SupervisorEvent) -> str:
    """The ``child`` label of a restart: its path in the tree, with a bounded set of values.

    Users' children keep their path (``workers/poller``; a pool's members share the
    pool's); the breakers' actors, one per endpoint, share one label.
    """
    path = event.child_path
    if path[:1] == ("breakers",) and len(path) > 1:
        return "breakers/breaker"
    return "/".join(path)


def _transport(settings: RuntimeSettings) -> httpx.AsyncBaseTransport:
    config = settings.config
    if settings.transport is not None:
        return settings.transport
    if settings.plain_httpx:
        return httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            )
        )
    return PooledTransport(max_connections_per_endpoint=config.max_concurrency_per_endpoint)
