"""What the hot path leaves out when nothing needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner

if TYPE_CHECKING:
    import pytest

    from cloudkit_trio.spi import OperationMetrics

OPERATION = ck.Operation(service="svc", name="get", url="http://127.0.0.1:9001/item")


class CountingNoop(ck.NoopMetrics):
    """A subclass of the default collector that does record: it must still be fed."""

    def __init__(self) -> None:
        self.operations = 0

    async def record(self, metrics: OperationMetrics) -> None:
        self.operations += 1


def build(*collectors: ck.MetricsCollector) -> ck.CloudContext:
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .transport(httpx.MockTransport(lambda request: httpx.Response(200)))
        .signer(NoAuthSigner())
        .logger(CapturingLogger())
    )
    for collector in collectors:
        builder = builder.metrics_collector(collector)
    return builder.build()


class TestNoopMetrics:
    async def test_the_default_collector_gets_no_events_built(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With only NoopMetrics (the default) nothing is queued for the aggregator."""
        async with build() as cloud:
            for _ in range(50):
                await cloud.execute(OPERATION)
            assert cloud.snapshot().metrics_queued == 0

    async def test_a_real_collector_gets_every_operation(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        metrics = RecordingMetrics()
        async with build(metrics) as cloud:
            for _ in range(50):
                await cloud.execute(OPERATION)
            assert cloud.snapshot().metrics_queued == 50
        assert len(metrics.operations) == 50

    async def test_a_noop_subclass_and_a_noop_beside_a_real_one_are_fed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        counting = CountingNoop()
        async with build(counting) as cloud:
            for _ in range(20):
                await cloud.execute(OPERATION)
        assert counting.operations == 20
        metrics = RecordingMetrics()
        async with build(ck.NoopMetrics(), metrics) as cloud:
            for _ in range(20):
                await cloud.execute(OPERATION)
        assert len(metrics.operations) == 20


class TestClockReads:
    async def test_one_read_per_decision_point(
        self, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A successful operation reads Trio's clock three times: when it departs, when
        its attempt starts (budget, admission and the attempt share it) and when the
        attempt ends (the operation's end too)."""
        async with build() as cloud:
            await cloud.execute(OPERATION)  # the endpoint's state is made on first use
            reads = 0
            real = trio.current_time

            def counting() -> float:
                nonlocal reads
                reads += 1
                return real()

            monkeypatch.setattr(trio, "current_time", counting)
            for _ in range(10):
                await cloud.execute(OPERATION)
            monkeypatch.undo()
        assert reads == 30
