"""The metrics aggregator: takes metric events without blocking, forwards them in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..spi import MetricsCollector, OperationMetrics
from ._containment import Containment, Spi
from ._events import Counter, Gauge, Histogram, MetricEvent, RuntimeMetric

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["AggregatorStatistics", "MetricsAggregator"]

# Shutdown may not wait forever for a slow collector.
_FINAL_DRAIN_BUDGET: Final = 5.0


@attrs.frozen
class AggregatorStatistics:
    """Counts kept by the metrics aggregator.

    .. versionadded:: 0.1.0
    """

    queued: int
    capacity: int
    forwarded: int
    dropped: int
    collector_errors: int


class MetricsAggregator:
    """Owns a bounded queue of metric events and the task that forwards them.

    :meth:`emit` never blocks and never raises: when the queue is full the event is dropped
    and counted. The actor wakes every ``flush_interval`` seconds rather than per event, so
    an operation never pays for a task switch to report itself (and an idle context never
    wakes it at all); each flush also samples the gauges (queue depth, in-flight
    operations, ...) from ``samplers``. On shutdown it drains what is left. A collector
    that raises is contained (counted under ``metrics_collector``) and the others still
    get the event; each flush also forwards the new failures of every SPI as the
    ``spi_failures`` counter, from here rather than from where they happen, so a
    failing collector cannot recurse into itself.
    """

    def __init__(
        self,
        collectors: Sequence[MetricsCollector],
        containment: Containment,
        *,
        capacity: int,
        flush_interval: float,
    ) -> None:
        self._collectors = tuple(collectors)
        self._containment = containment
        self._reported_spi_failures: dict[str, int] = {}
        self._capacity = capacity
        self._flush_interval = flush_interval
        self._send, self._receive = trio.open_memory_channel[MetricEvent](capacity)
        self._samplers: list[Callable[[], Iterable[Gauge]]] = []
        self.forwarded = 0
        self.dropped = 0
        self._reported_dropped = 0
        self.collector_errors = 0
        self._has_events = trio.Event()
        self._pending: MetricEvent | None = None
        self._pending_index = 0

    def emit(self, event: MetricEvent) -> None:
        """Queue ``event`` for the collectors, or count it as dropped."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        # Wakes the actor once per batch, not per event: set() is a no-op once set.
        self._has_events.set()

    def add_sampler(self, sampler: Callable[[], Iterable[Gauge]]) -> None:
        """Call ``sampler`` at every flush and forward the gauges it returns."""
        self._samplers.append(sampler)

    def statistics(self) -> AggregatorStatistics:
        return AggregatorStatistics(
            queued=self._send.statistics().current_buffer_used,
            capacity=self._capacity,
            forwarded=self.forwarded,
            dropped=self.dropped,
            collector_errors=self.collector_errors,
        )

    async def run(
        self, *, task_status: trio.TaskStatus[MetricsAggregator] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The actor body: flush periodically; drain what is left when stopped."""
        task_status.started(self)
        try:
            while True:
                # Idle contexts cost nothing: wait for the first event, then batch.
                await self._has_events.wait()
                await trio.sleep(self._flush_interval)
                self._has_events = trio.Event()
                await self.flush()
        finally:
            with trio.move_on_after(_FINAL_DRAIN_BUDGET, shield=True):
                pending = self._pending
                if pending is not None:
                    # The collector that was being awaited saw the cancellation, not the
                    # event; it and the ones after it get it again.
                    await self._forward(pending, self._pending_index)
                await self.flush()

    async def flush(self) -> None:
        """Sample the gauges and forward every queued event."""
        for sampler in self._samplers:
            for gauge in sampler():
                # Straight to the collectors: queueing it would wake us up again.
                await self._forward(gauge)
        if self.dropped > self._reported_dropped:
            # Reported past the queue, which is full when this matters most.
            newly = self.dropped - self._reported_dropped
            self._reported_dropped = self.dropped
            await self._forward(Counter(RuntimeMetric.METRICS_DROPPED, float(newly), {}))
        await self._forward_spi_failures()
        while True:
            try:
                event = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            await self._forward(event)

    async def _forward_spi_failures(self) -> None:
        for spi, count in self._containment.failures().items():
            newly = count - self._reported_spi_failures.get(spi, 0)
            if newly > 0:
                self._reported_spi_failures[spi] = count
                await self._forward(Counter(RuntimeMetric.SPI_FAILURES, float(newly), {"spi": spi}))

    async def _forward(self, event: MetricEvent, first: int = 0) -> None:
        collectors = self._collectors
        # Where this event stands, should the actor be stopped while a collector is
        # awaited: the final drain hands it to the collectors it has not reached yet.
        self._pending = event
        for index in range(first, len(collectors)):
            collector = collectors[index]
            self._pending_index = index
            try:
                if isinstance(event, OperationMetrics):
                    await collector.record(event)
                elif isinstance(event, Counter):
                    await collector.increment_counter(event.name, event.value, event.tags)
                elif isinstance(event, Gauge):
                    await collector.record_gauge(event.name, event.value, event.tags)
                else:
                    assert isinstance(event, Histogram)
                    await collector.record_histogram(event.name, event.value, event.tags)
            except Exception as exc:  # a broken collector must not lose metrics for the others
                self.collector_errors += 1
                self._containment.failed(Spi.METRICS_COLLECTOR, _method(event), exc)
        self._pending = None
        self.forwarded += 1


def _method(event: MetricEvent) -> str:
    if isinstance(event, OperationMetrics):
        return "record"
    if isinstance(event, Counter):
        return "increment_counter"
    if isinstance(event, Gauge):
        return "record_gauge"
    return "record_histogram"
