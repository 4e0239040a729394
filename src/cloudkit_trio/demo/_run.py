"""One run: start the target, build the context, drive, show frames, judge.

Operations are released at ``rate`` a second, at most ``concurrency`` unanswered; even ones
are awaited with ``cloud.execute``, odd ones sent as :class:`~cloudkit_trio.Submission`
messages. Retries, breaker transitions and credential refreshes are counted by a
:class:`~cloudkit_trio.MetricsCollector` from what the runtime reports, as a user's would.

The last frame is drawn once every operation is answered and the context is closed, so
the runtime's metrics are drained: the summary is that frame, judged. Ctrl-C once stops
releasing and closes the context (which answers what is still running); twice cancels.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import threading
from collections import Counter
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import trio
from prometheus_client import CollectorRegistry

import cloudkit_trio as ck
from cloudkit_trio.runtime import RuntimeMetric
from cloudkit_trio.transport import NoAuthSigner

from ._report import Check, EndpointFrame, Frame, Summary, Transition, Verdict
from ._s3 import start_s3
from ._scenario import DemoError, Settings, Target, remote_target, start_embedded

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cloudkit_trio.spi import Tags

__all__ = ["View", "run_demo"]

#: Seconds between two frames.
TICK: Final = 0.25
BUDGET: Final = ck.RetryBudget()


class View(Protocol):
    """Shown the target before the first operation, frames while it runs, the summary."""

    def start(self, target: Target, settings: Settings, metrics_url: str | None) -> None: ...

    def update(self, frame: Frame) -> None: ...

    def finish(self, summary: Summary) -> None: ...


class Collector(ck.NoopMetrics):
    """Adds up what the runtime reports; ``elapsed`` dates the breaker transitions."""

    def __init__(self, elapsed: Callable[[], float]) -> None:
        self._elapsed = elapsed
        self.retries: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.refreshes: Counter[str] = Counter()
        self.transitions: list[Transition] = []

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        tags = tags or {}
        if name == RuntimeMetric.RETRIES:
            self.retries[tags.get("error", "?")] += int(value)
        elif name == RuntimeMetric.BREAKER_REJECTIONS:
            self.rejections[tags.get("endpoint", "?")] += int(value)
        elif name == RuntimeMetric.CREDENTIAL_REFRESHES:
            self.refreshes[tags.get("outcome", "?")] += int(value)
        elif name == RuntimeMetric.BREAKER_TRANSITIONS:
            moved = (tags.get(key, "?") for key in ("endpoint", "from_state", "to_state"))
            self.transitions.append(Transition(self._elapsed(), *moved))


def build_context(
    settings: Settings, target: Target, collectors: list[ck.MetricsCollector]
) -> ck.CloudContext:
    """The public builder, with timings for a short run."""
    timing = settings.timing
    backoff = ck.ExponentialBackoff(
        initial_delay=0.05,
        max_delay=1.0,
        max_attempts=4,
        jitter=ck.Jitter.EQUAL,
        random=random.Random(settings.seed),
    )
    policy = ck.CircuitBreaker(
        backoff,
        failure_ratio=0.5,
        minimum_throughput=5,
        sampling_window=timing.sampling_window,
        break_duration=timing.break_duration,
    )
    config = ck.CloudConfig(
        timeout=timing.attempt_timeout,
        connect_timeout=timing.attempt_timeout,
        max_concurrency=settings.concurrency,
        max_concurrency_per_endpoint=settings.concurrency,
        queue_size=max(settings.concurrency, 64),
        shutdown_grace=timing.shutdown_grace,
    )
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(config)
        .retry_policy(policy)
        .retry_budget(BUDGET)
        .metrics_collector(*collectors)
        # The terminal belongs to the view; what the runtime would log, it also counts.
        .logger(ck.NoopLogger())
        .metrics_flush_interval(0.05)
        .signer(target.signer if target.signer is not None else NoAuthSigner())
    )
    if target.auth_provider is not None:
        lease = timing.lease
        builder = builder.auth_provider(target.auth_provider).credential_refresh(
            advisory=0.25 * lease, mandatory=0.1 * lease
        )
    return builder.build()


class _Run:
    def __init__(self, settings: Settings, view: View, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.view = view
        self.environ = environ
        self.stop = trio.Event()
        self.interrupted = False
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.collector = Collector(self.elapsed)
        self.limiter = trio.CapacityLimiter(settings.concurrency)
        self.submitted = self.via_execute = self.succeeded = self.duplicates = 0
        self.failures: Counter[str] = Counter()
        self.answered: set[int] = set()
        self.all_answered = trio.Event()
        self.releasing = True
        self.last: Frame | None = None

    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else trio.current_time()
        return end - self.started_at

    # -- answers -------------------------------------------------------------------------

    def _answer(self, n: int, error: ck.CloudError | None) -> None:
        if n in self.answered:
            self.duplicates += 1
            return
        self.answered.add(n)
        self.limiter.release_on_behalf_of(n)
        if error is None:
            self.succeeded += 1
        else:
            self.failures[type(error).__name__] += 1
        self._check_done()

    def _check_done(self) -> None:
        if not self.releasing and len(self.answered) >= self.submitted:
            self.all_answered.set()

    async def _execute(self, cloud: ck.Cloud, operation: ck.Operation, n: int) -> None:
        try:
            await cloud.execute(operation)
        except ck.CloudError as error:
            self._answer(n, error)
        else:
            self._answer(n, None)

    async def _collect(self, replies: trio.MemoryReceiveChannel[ck.Reply]) -> None:
        async for reply in replies:
            assert isinstance(reply.correlation_id, int)
            self._answer(reply.correlation_id, reply.error)

    # -- driving -------------------------------------------------------------------------

    async def _release(
        self,
        cloud: ck.Cloud,
        target: Target,
        nursery: trio.Nursery,
        replies: trio.MemorySendChannel[ck.Reply],
    ) -> None:
        interval = 1.0 / self.settings.rate
        start = self.started_at = trio.current_time()
        target.begin(start)
        async with cloud.submit_channel() as submit:
            for n in range(self.settings.operations):
                await trio.sleep_until(start + n * interval)
                await self.limiter.acquire_on_behalf_of(n)
                operation = target.operation(n)
                if n % 2 == 0:
                    self.submitted += 1
                    self.via_execute += 1
                    nursery.start_soon(self._execute, cloud, operation, n)
                    continue
                try:
                    await submit.send(ck.Submission(operation, replies, correlation_id=n))
                except BaseException:
                    # Not sent (cancelled, or the queue closed): nobody will answer it.
                    self.limiter.release_on_behalf_of(n)
                    raise
                self.submitted += 1

    async def _drive(self, cloud: ck.Cloud, target: Target) -> None:
        send, receive = trio.open_memory_channel[ck.Reply](self.settings.concurrency)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._collect, receive)
            nursery.start_soon(self._tick, cloud, target)
            with trio.CancelScope() as releasing:
                nursery.start_soon(self._cancel_on_stop, releasing)
                try:
                    await self._release(cloud, target, nursery, send)
                finally:
                    self.releasing = False
                    self._check_done()
            if self.stop.is_set():
                # The runtime's own shutdown answers what is still running or queued.
                await cloud.aclose()
            await self.all_answered.wait()
            nursery.cancel_scope.cancel()
        send.close()

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self.stop.wait()
        scope.cancel()

    async def _tick(self, cloud: ck.Cloud, target: Target) -> None:
        while True:
            self.last = self.frame(target, cloud.snapshot())
            self.view.update(self.last)
            await trio.sleep(TICK)

    async def _watch_interrupts(self, everything: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                self.interrupted = True
                if self.stop.is_set():
                    everything.cancel()
                self.stop.set()

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> Summary:
        settings = self.settings
        target: Target | None = None
        final: Frame | None = None
        extra: tuple[Check, ...] = ()
        document: dict[str, Any] = {}
        metrics_url = None
        with trio.CancelScope() as everything:
            async with trio.open_nursery() as nursery:
                if threading.current_thread() is threading.main_thread():
                    nursery.start_soon(self._watch_interrupts, everything)
                target = await self._start_target(nursery)
                collectors: list[ck.MetricsCollector] = [self.collector]
                if settings.metrics_port is not None:
                    registry = CollectorRegistry(auto_describe=True)
                    collectors.append(ck.PrometheusMetrics(registry))
                    metrics_url = await self._serve_metrics(nursery, registry)
                async with build_context(settings, target, collectors) as cloud:
                    if target.workload is not None:
                        await target.workload.prepare(cloud)
                    self.view.start(target, settings, metrics_url)
                    await self._drive(cloud, target)
                    self.finished_at = trio.current_time()
                    if target.workload is not None and not self.stop.is_set():
                        check, found = await target.workload.finish(cloud, self.succeeded)
                        extra, document = (check,), {"s3": found}
                    snapshot = cloud.snapshot()
                # Closed: every metric the runtime emitted has reached the collector.
                final = self.frame(target, snapshot, final=True)
                self.view.update(final)
                nursery.cancel_scope.cancel()
        if final is None:
            # A second Ctrl-C: what was drawn last is what there is.
            if target is None or self.last is None:
                raise KeyboardInterrupt
            final = attrs.evolve(self.last, final=True)
            self.view.update(final)
        assert target is not None
        verdict = Verdict.judge(
            final,
            outage_endpoint=target.outage_endpoint,
            budget=(BUDGET.ratio, BUDGET.min_per_second, BUDGET.window),
            extra=extra,
            interrupted=self.interrupted,
        )
        return Summary(
            mode=target.mode,
            target=target.title,
            seed=settings.seed,
            frame=final,
            verdict=verdict,
            interrupted=self.interrupted,
            metrics_url=metrics_url,
            extra=document,
        )

    async def _start_target(self, nursery: trio.Nursery) -> Target:
        settings = self.settings
        if settings.s3:
            return await start_s3(nursery, settings, self.environ)
        if settings.endpoint is not None:
            await trio.lowlevel.checkpoint()
            return remote_target(settings.endpoint, self.environ)
        return await start_embedded(nursery, settings)

    async def _serve_metrics(self, nursery: trio.Nursery, registry: CollectorRegistry) -> str:
        port = self.settings.metrics_port or 0
        # Probed first: a server that cannot bind may leave its socket behind.
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                raise DemoError(
                    f"cannot serve metrics on 127.0.0.1:{port}: {error.strerror or error}; "
                    "choose another --metrics-port (0 picks a free one)"
                ) from None
        bound: int = await nursery.start(partial(ck.serve_metrics, port=port, registry=registry))
        return f"http://127.0.0.1:{bound}/metrics"

    def frame(self, target: Target, snapshot: ck.CloudSnapshot, *, final: bool = False) -> Frame:
        c = self.collector
        breakers = {b.endpoint: b for b in snapshot.breakers}
        requests_of = {e.name: e.fake.requests for e in target.endpoints if e.fake is not None}
        endpoints = []
        for e in target.endpoints:
            b = breakers.get(e.key)
            state = "closed" if b is None else str(b.state)
            endpoints.append(
                EndpointFrame(
                    name=e.name,
                    url=e.url,
                    key=e.key,
                    doing=e.doing(state),
                    breaker=state,
                    failure_ratio=0.0 if b is None else b.failure_ratio,
                    half_open_in=None if b is None else b.time_until_half_open,
                    requests=requests_of.get(e.name),
                    rejected=c.rejections[e.key],
                )
            )
        expires = snapshot.credentials.expires_in
        return Frame(
            elapsed=self.elapsed(),
            planned=self.settings.operations,
            planned_duration=self.settings.planned_duration,
            submitted=self.submitted,
            replied=len(self.answered),
            succeeded=self.succeeded,
            failed=sum(self.failures.values()),
            duplicates=self.duplicates,
            via_execute=self.via_execute,
            via_channel=self.submitted - self.via_execute,
            failures=dict(self.failures),
            retries=sum(c.retries.values()),
            retries_by_error=dict(c.retries),
            retries_suppressed=snapshot.retries_suppressed,
            rejected=sum(c.rejections.values()),
            credential_fetches=c.refreshes["success"],
            credential_failures=sum(c.refreshes.values()) - c.refreshes["success"],
            credentials_expire_in=None if expires is None or math.isinf(expires) else expires,
            injected=target.injected(),
            endpoints=tuple(endpoints),
            transitions=tuple(c.transitions),
            stopping=self.stop.is_set(),
            final=final,
        )


async def run_demo(
    settings: Settings, view: View, *, environ: Mapping[str, str] | None = None
) -> Summary:
    """Run the demo with ``settings``, showing it on ``view``; return its summary."""
    return await _Run(settings, view, os.environ if environ is None else environ).run()
