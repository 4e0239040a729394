"""One demo run: start the target, build the context, drive, watch, and sum up.

The target prepares the running context before the header is shown (an S3 bucket is
created then) and looks at what the run left behind once every operation is answered (the
bucket is listed then). Ctrl-C once stops releasing operations and closes the context, whose
shutdown answers everything still running (``ContextClosed``); the summary follows, without
the target's findings. Ctrl-C twice cancels at once.
"""

from __future__ import annotations

import random
import signal
import threading
from functools import partial
from typing import TYPE_CHECKING, Final

import trio
from prometheus_client import CollectorRegistry

from .._config import CloudConfig
from .._context import Cloud, CloudContext, CloudSnapshot
from .._exposition import serve_metrics
from .._provider import ProviderType
from ..spi import (
    CircuitBreaker,
    ExponentialBackoff,
    Jitter,
    MetricsCollector,
    NoopLogger,
    PrometheusMetrics,
)
from ..transport import NoAuthSigner, PooledTransport
from ._collector import DemoMetrics
from ._driver import Driver, Tally
from ._embedded import EmbeddedMode
from ._problems import DemoError, sole
from ._progress import EndpointStatus, Header, Progress
from ._remote import RemoteMode
from ._s3_mode import EmbeddedS3Mode, RemoteS3Mode
from ._summary import EndpointSummary, Summary
from ._target import RunOutcome

if TYPE_CHECKING:
    from ._settings import DemoSettings
    from ._target import Mode, Target, TargetReport
    from ._view import View

__all__ = ["build_context", "run_demo", "select_mode"]

#: How often the view is given fresh figures.
TICK: Final = 0.25


def select_mode(settings: DemoSettings) -> Mode:
    """The mode the settings ask for."""
    if settings.s3:
        if settings.endpoint is not None:
            return RemoteS3Mode(settings, settings.endpoint)
        return EmbeddedS3Mode(settings)
    if settings.endpoint is not None:
        return RemoteMode(settings.endpoint)
    return EmbeddedMode(settings)


def build_context(
    settings: DemoSettings,
    target: Target,
    collectors: list[MetricsCollector],
    transport: PooledTransport,
) -> CloudContext:
    """The context the demo runs: the library's public builder, with timings for a short run."""
    timing = settings.timing
    backoff = ExponentialBackoff(
        initial_delay=0.05,
        max_delay=1.0,
        max_attempts=4,
        jitter=Jitter.EQUAL,
        random=random.Random(settings.seed),
    )
    policy = CircuitBreaker(
        backoff,
        failure_ratio=0.5,
        minimum_throughput=5,
        sampling_window=timing.sampling_window,
        break_duration=timing.break_duration,
    )
    config = CloudConfig(
        timeout=timing.attempt_timeout,
        connect_timeout=timing.attempt_timeout,
        max_concurrency=settings.concurrency,
        max_concurrency_per_endpoint=settings.concurrency,
        queue_size=max(settings.concurrency, 64),
        shutdown_grace=timing.shutdown_grace,
    )
    builder = (
        CloudContext.builder(ProviderType.AWS)
        .config(config)
        .retry_policy(policy)
        .metrics_collector(*collectors)
        # The terminal belongs to the view; what the runtime would log, it also counts.
        .logger(NoopLogger())
        .metrics_flush_interval(0.05)
        .transport(transport)
        # A target without a signer is sent as it is, not signed by the AWS default.
        .signer(target.signer if target.signer is not None else NoAuthSigner())
    )
    if target.auth_provider is not None:
        builder = builder.auth_provider(target.auth_provider).credential_refresh(
            advisory=timing.advisory, mandatory=timing.mandatory
        )
    return builder.build()


class _Run:
    """One run's state: what the views are shown comes from here, the summary too."""

    def __init__(self, settings: DemoSettings, view: View, mode: Mode) -> None:
        self.settings = settings
        self.view = view
        self.mode = mode
        self.stop = trio.Event()
        self.interrupts = 0
        self.cancelled = False
        self.tally = Tally()
        self.metrics = DemoMetrics(self.elapsed)
        self.target: Target | None = None
        self.cloud: Cloud | None = None
        self.driver: Driver | None = None
        self.snapshot: CloudSnapshot | None = None
        self.metrics_url: str | None = None
        self.finished_at: float | None = None
        self.report: TargetReport | None = None

    def elapsed(self) -> float:
        """Seconds since the first operation was released (0 before)."""
        started = None if self.driver is None else self.driver.started_at
        if started is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else trio.current_time()
        return end - started

    async def run(self, task_status: trio.TaskStatus[Header]) -> Summary:
        with trio.CancelScope() as everything:
            async with trio.open_nursery() as nursery:
                if threading.current_thread() is threading.main_thread():
                    nursery.start_soon(self._watch_interrupts, everything)
                self.target = target = await self.mode.start(nursery)
                collectors: list[MetricsCollector] = [self.metrics]
                if self.settings.metrics_port is not None:
                    registry = CollectorRegistry(auto_describe=True)
                    collectors.append(PrometheusMetrics(registry))
                    port = await self._serve_metrics(nursery, registry)
                    self.metrics_url = f"http://127.0.0.1:{port}/metrics"
                # The demo owns its transport, so that its connections are closed even when
                # a second Ctrl-C cancels the context instead of closing it.
                transport = PooledTransport(max_connections_per_endpoint=self.settings.concurrency)
                try:
                    context = build_context(self.settings, target, collectors, transport)
                    async with context as cloud:
                        self.cloud = cloud
                        # Before the header: a target that cannot be prepared is one line
                        # on stderr, not a view left half drawn.
                        await target.prepare(cloud)
                        header = Header(
                            mode=self.mode.name,
                            title=target.title,
                            settings=self.settings,
                            endpoints=tuple((e.name, e.url, e.role) for e in target.endpoints),
                            notes=target.notes,
                            metrics_url=self.metrics_url,
                        )
                        self.view.start(header)
                        task_status.started(header)
                        await self._drive(cloud, target)
                        if not self.stop.is_set():
                            self.report = await target.finish(cloud, self._outcome())
                        self.snapshot = cloud.snapshot()
                finally:
                    with trio.move_on_after(1.0, shield=True):
                        await transport.aclose()
                nursery.cancel_scope.cancel()
        self.cancelled = everything.cancelled_caught
        if self.finished_at is None:
            self.finished_at = trio.current_time()
        return self.summary()

    async def _serve_metrics(self, nursery: trio.Nursery, registry: CollectorRegistry) -> int:
        port = self.settings.metrics_port
        try:
            bound: int = await nursery.start(
                partial(serve_metrics, port=port or 0, registry=registry)
            )
        except (OSError, BaseExceptionGroup) as error:
            failure = sole(error, OSError)
            if failure is None:
                raise
            raise DemoError(
                f"cannot serve metrics on 127.0.0.1:{port}: {failure.strerror or failure}; "
                "choose another --metrics-port (0 picks a free one)"
            ) from None
        return bound

    async def _drive(self, cloud: Cloud, target: Target) -> None:
        driver = self.driver = Driver(cloud, target, self.settings, self.tally, self.stop)
        async with trio.open_nursery() as watching:
            watching.start_soon(self._tick)
            async with trio.open_nursery() as driving:
                driving.start_soon(driver.run)
                await driver.released.wait()
                if self.stop.is_set():
                    # The runtime's own shutdown answers what is still running or queued.
                    await cloud.aclose()
            self.finished_at = trio.current_time()
            watching.cancel_scope.cancel()
        self.view.update(self.progress())

    async def _tick(self) -> None:
        while True:
            self.view.update(self.progress())
            await trio.sleep(TICK)

    async def _watch_interrupts(self, everything: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                self.interrupts += 1
                if self.interrupts == 1:
                    self.stop.set()
                else:
                    everything.cancel()

    # -- figures -------------------------------------------------------------------------

    def _outcome(self) -> RunOutcome:
        tally = self.tally
        return RunOutcome(
            submitted=tally.submitted,
            replied=tally.replied,
            succeeded=tally.succeeded,
            failed=tally.failed,
        )

    def _endpoints(self, snapshot: CloudSnapshot | None) -> tuple[EndpointStatus, ...]:
        if self.target is None:
            return ()
        breakers = {} if snapshot is None else {b.endpoint: b for b in snapshot.breakers}
        requests = self.target.requests()
        statuses = []
        for endpoint in self.target.endpoints:
            breaker = breakers.get(endpoint.key)
            statuses.append(
                EndpointStatus(
                    name=endpoint.name,
                    url=endpoint.url,
                    role=endpoint.role,
                    key=endpoint.key,
                    state="closed" if breaker is None else str(breaker.state),
                    failure_ratio=0.0 if breaker is None else breaker.failure_ratio,
                    time_until_half_open=None if breaker is None else breaker.time_until_half_open,
                    rejected=self.metrics.rejections[endpoint.key],
                    requests=requests.get(endpoint.name),
                )
            )
        return tuple(statuses)

    def _current_snapshot(self) -> CloudSnapshot | None:
        if self.snapshot is not None:
            return self.snapshot
        return self.cloud.snapshot() if self.cloud is not None else None

    def progress(self) -> Progress:
        tally, metrics = self.tally, self.metrics
        snapshot = self._current_snapshot()
        return Progress(
            elapsed=self.elapsed(),
            planned=self.settings.operations,
            planned_duration=self.settings.planned_duration,
            submitted=tally.submitted,
            replied=tally.replied,
            succeeded=tally.succeeded,
            failed=tally.failed,
            retries=metrics.retries,
            rejected_by_breaker=metrics.rejected_by_breaker,
            credential_refreshes=max(metrics.refreshes - 1, 0),
            credentials_expire_in=None if snapshot is None else snapshot.credentials.expires_in,
            inflight=0 if snapshot is None else snapshot.inflight,
            queued=0 if snapshot is None else snapshot.queued,
            endpoints=self._endpoints(snapshot),
            transitions=tuple(metrics.transitions),
            stopping=self.stop.is_set(),
        )

    def summary(self) -> Summary:
        tally, metrics, settings = self.tally, self.metrics, self.settings
        target = self.target
        endpoints: list[EndpointSummary] = []
        for status, endpoint in zip(
            self._endpoints(self._current_snapshot()),
            target.endpoints if target is not None else (),
            strict=True,
        ):
            endpoints.append(
                EndpointSummary(
                    name=status.name,
                    url=status.url,
                    role=status.role,
                    requests=status.requests,
                    breaker_state=status.state,
                    rejected_by_breaker=status.rejected,
                    transitions=tuple(metrics.transitions_of(endpoint.key)),
                )
            )
        return Summary(
            mode=self.mode.name,
            target="" if target is None else target.title,
            seed=settings.seed,
            operations=settings.operations,
            concurrency=settings.concurrency,
            rate=settings.rate,
            fault_rate=settings.fault_rate,
            planned_duration=settings.planned_duration,
            elapsed=self.elapsed(),
            submitted=tally.submitted,
            replied=tally.replied,
            succeeded=tally.succeeded,
            failed=tally.failed,
            via_execute=tally.via_execute,
            via_channel=tally.via_channel,
            retried_operations=tally.retried_operations,
            failures=dict(tally.failures),
            retries=metrics.retries,
            retries_by_error=dict(metrics.retries_by_error),
            rejected_by_breaker=metrics.rejected_by_breaker,
            credential_fetches=metrics.refreshes,
            credential_refresh_failures=metrics.refresh_failures,
            injected=dict(target.injected()) if target is not None else {},
            endpoints=tuple(endpoints),
            interrupted=self.interrupts > 0,
            cancelled=self.cancelled,
            metrics_url=self.metrics_url,
            report=self.report,
        )


async def run_demo(
    settings: DemoSettings,
    view: View,
    *,
    mode: Mode | None = None,
    task_status: trio.TaskStatus[Header] = trio.TASK_STATUS_IGNORED,
) -> Summary:
    """Run the demo and return its summary; ``task_status`` gets the header once the target
    (and the metrics server) are up, just before the first operation."""
    run = _Run(settings, view, mode if mode is not None else select_mode(settings))
    return await run.run(task_status)
