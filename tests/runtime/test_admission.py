"""Admission per endpoint through the runtime: retry budgets, rate limits, adaptive
concurrency and deadline-aware shedding, under Trio's MockClock.

The state machines are proven on their own in test_admission_units.py; these tests prove
the runtime consults them where it should: what each operation does, what is sent, what
is counted and shown.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import AsyncIterator, Callable
from functools import partial

import h11
import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner, PooledTransport

A = "http://127.0.0.1:9001"
B = "http://127.0.0.1:9002"


def build(
    transport: httpx.AsyncBaseTransport | Callable[[httpx.Request], httpx.Response],
    *,
    budget: ck.RetryBudget | str | None = "default",
    limit: ck.RateLimit | None = None,
    limit_endpoint: str | None = None,
    concurrency: ck.AdaptiveConcurrency | None = None,
    policy: ck.RetryPolicy | None = None,
    metrics: RecordingMetrics | None = None,
    config: ck.CloudConfig | None = None,
) -> ck.CloudContext:
    if not isinstance(transport, httpx.AsyncBaseTransport):
        transport = httpx.MockTransport(transport)
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(config or ck.CloudConfig(max_concurrency=512, max_concurrency_per_endpoint=512))
        .transport(transport)
        .signer(NoAuthSigner())
        .logger(CapturingLogger())
        .metrics_collector(metrics or RecordingMetrics())
        .circuit_breaker(None)  # these tests are about admission alone
    )
    if budget != "default":
        builder = builder.retry_budget(budget)  # type: ignore[arg-type]
    if limit is not None:
        builder = builder.rate_limit(limit, endpoint=limit_endpoint)
    if concurrency is not None:
        builder = builder.adaptive_concurrency(concurrency)
    if policy is not None:
        builder = builder.retry_policy(policy)
    return builder.build()


def get(base: str = A, path: str = "/item", **fields: object) -> ck.Operation:
    return ck.Operation(service="svc", name="get", url=base + path, **fields)  # type: ignore[arg-type]


async def offer(cloud: ck.Cloud, count: int, rate: float, base: str = A) -> list[object]:
    """Start ``count`` operations at ``rate`` per second (open loop); their results."""
    results: list[object] = []

    async def one() -> None:
        try:
            results.append(await cloud.execute(get(base)))
        except ck.CloudError as error:
            results.append(error)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
            await trio.sleep(1.0 / rate)
    return results


class Flaky:
    """Answers 503 with probability ``p`` (seeded), else 200; counts requests."""

    def __init__(self, p: float, seed: int = 7) -> None:
        self.p = p
        self.random = random.Random(seed)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        status = 503 if self.random.random() < self.p else 200
        return httpx.Response(status, content=b"")


class TestRetryBudget:
    async def test_retries_stay_within_the_budget_at_forty_percent_failures(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """40 % 503s, 2,000 operations at 200/s: the default budget keeps attempts per
        operation at 1.3 or less; without it the default policy sends more than 1.5."""
        figures = {}
        for name, budget in (("budget", "default"), ("none", None)):
            server = Flaky(0.4)
            policy = ck.ExponentialBackoff(initial_delay=0.01, max_attempts=4)
            async with build(server, budget=budget, policy=policy) as cloud:
                await offer(cloud, 2000, 200.0)
                snapshot = cloud.snapshot()
            figures[name] = (server.requests / 2000, snapshot.retries_suppressed)
        with_budget, suppressed = figures["budget"]
        without, none_suppressed = figures["none"]
        assert with_budget <= 1.3
        assert without >= 1.5
        assert suppressed > 0 and none_suppressed == 0

    async def test_a_suppressed_retry_returns_the_last_error_and_is_its_own_outcome(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        metrics = RecordingMetrics()
        budget = ck.RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one retry
        always = Flaky(1.0)
        async with build(always, budget=budget, metrics=metrics) as cloud:
            with pytest.raises(ck.ServiceUnavailable) as first:
                await cloud.execute(get())  # its one retry uses up the budget
            with pytest.raises(ck.ServiceUnavailable) as caught:
                await cloud.execute(get())
            snapshot = cloud.snapshot()
        assert first.value.attempt == 2  # one retry granted, the next refused
        error = caught.value
        assert error.not_retried is not None and "retry budget" in error.not_retried
        assert error.attempt == 1
        assert [str(m.outcome) for m in metrics.operations] == ["retry_suppressed"] * 2
        assert metrics.counter_total("retries_suppressed") == 2
        [gate] = snapshot.admission
        assert gate.budget is not None and gate.budget.suppressed == 2
        assert snapshot.retries_suppressed == 2

    async def test_counted_when_scheduled_not_when_sent(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A retry waiting out its backoff has used its share already (envoy#30205)."""
        budget = ck.RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one retry
        policy = ck.FixedDelay(5.0, max_attempts=2)
        async with (
            build(Flaky(1.0), budget=budget, policy=policy) as cloud,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_swallow, cloud)
            await trio.sleep(1.0)  # the first operation's retry is now scheduled
            with pytest.raises(ck.ServiceUnavailable) as caught:
                await cloud.execute(get())
        assert caught.value.attempt == 1 and caught.value.not_retried is not None


async def _swallow(cloud: ck.Cloud) -> None:
    with contextlib.suppress(ck.CloudError):
        await cloud.execute(get())


class TestRateLimit:
    async def test_fifty_per_second_takes_four_seconds_for_two_hundred(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        seen: list[float] = []

        def server(request: httpx.Request) -> httpx.Response:
            seen.append(trio.current_time())
            return httpx.Response(200)

        async with build(server, limit=ck.RateLimit(50.0)) as cloud:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(cloud.execute, get())
            elapsed = trio.current_time() - start
        assert elapsed == pytest.approx(3.98, abs=0.01)
        assert len(seen) == 200
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        assert min(gaps) == pytest.approx(0.02, abs=1e-6)

    async def test_fail_fast_raises_throttled_without_a_network_call(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        server = Flaky(0.0)
        metrics = RecordingMetrics()
        limit = ck.RateLimit(1.0, burst=2, wait=False)
        async with build(server, limit=limit, metrics=metrics) as cloud:
            await cloud.execute(get())
            await cloud.execute(get())
            with pytest.raises(ck.Throttled) as caught:
                await cloud.execute(get())
            assert cloud.snapshot().throttled == 1
        assert server.requests == 2
        error = caught.value
        assert error.request_sent is False and not error.retryable
        assert error.retry_after == pytest.approx(1.0)
        assert error.endpoint == "http://127.0.0.1:9001"
        assert metrics.counter_total("admission_refused", reason="throttled") == 1

    async def test_limits_are_per_endpoint(self, autojump_clock: trio.testing.MockClock) -> None:
        """Each endpoint has its own bucket: two endpoints at 50/s take 2 s for 100 each."""
        async with build(Flaky(0.0), limit=ck.RateLimit(50.0)) as cloud:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for base in (A, B):
                    for _ in range(100):
                        nursery.start_soon(cloud.execute, get(base))
            elapsed = trio.current_time() - start
        assert elapsed == pytest.approx(1.98, abs=0.01)

    async def test_a_limit_for_one_endpoint_leaves_the_others_alone(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with build(Flaky(0.0), limit=ck.RateLimit(10.0), limit_endpoint=A) as cloud:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(cloud.execute, get(B))
            assert trio.current_time() == start
            [gate] = cloud.snapshot().admission
            assert gate.endpoint == B and gate.rate_limit is None

    async def test_a_token_past_the_deadline_is_throttled_at_once(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Waiting for a token lies inside the deadline: one that comes too late is refused
        now rather than after a wait that could not end in time."""
        async with build(Flaky(0.0), limit=ck.RateLimit(1.0)) as cloud:
            await cloud.execute(get())
            start = trio.current_time()
            with pytest.raises(ck.Throttled):
                await cloud.execute(get(timeout=0.5))
            assert trio.current_time() == start

    def test_builder_validates(self) -> None:
        with pytest.raises(TypeError):
            ck.CloudContext.builder("aws").rate_limit(10.0)  # type: ignore[arg-type]
        with pytest.raises(ck.ConfigError):
            ck.CloudContext.builder("aws").rate_limit(ck.RateLimit(1.0), endpoint="not a url")
        with pytest.raises(TypeError):
            ck.CloudContext.builder("aws").retry_budget(0.2)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ck.CloudContext.builder("aws").adaptive_concurrency(8)  # type: ignore[arg-type]


class TestShedding:
    async def test_a_deadline_shorter_than_recent_latency_is_refused_unsent(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        class Slow(httpx.AsyncBaseTransport):
            requests = 0

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                Slow.requests += 1
                await trio.sleep(1.0)
                return httpx.Response(200)

        metrics = RecordingMetrics()
        async with build(Slow(), metrics=metrics) as cloud:
            for _ in range(20):
                await cloud.execute(get())
            sent = Slow.requests
            start = trio.current_time()
            with pytest.raises(ck.OperationTimeout) as caught:
                await cloud.execute(get(timeout=0.5))
            assert trio.current_time() == start  # refused at once, not after 0.5 s
            # A deadline the endpoint can meet is admitted.
            await cloud.execute(get(timeout=5.0))
            snapshot = cloud.snapshot()
        assert caught.value.waiting_for == "admission"
        assert Slow.requests == sent + 1
        assert snapshot.shed == 1
        assert metrics.counter_total("admission_refused", reason="shed") == 1

    async def test_nothing_is_shed_before_enough_samples(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        class Slow(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                await trio.sleep(1.0)
                return httpx.Response(200)

        async with build(Slow()) as cloud:
            await cloud.execute(get())
            with pytest.raises(ck.OperationTimeout) as caught:
                await cloud.execute(get(timeout=0.5))
        assert caught.value.waiting_for == "attempt"  # it was sent, and timed out


class TestSheddingSwitch:
    async def test_deadline_shedding_can_be_turned_off(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        class Slow(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                await trio.sleep(1.0)
                return httpx.Response(200)

        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .transport(Slow())
            .signer(NoAuthSigner())
            .logger(CapturingLogger())
            .deadline_shedding(False)
            .build()
        )
        async with context as cloud:
            for _ in range(25):
                await cloud.execute(get())
            with pytest.raises(ck.OperationTimeout) as caught:
                await cloud.execute(get(timeout=0.5))
            assert cloud.snapshot().shed == 0
        assert caught.value.waiting_for == "attempt"  # sent, as asked

    def test_the_switch_takes_a_bool(self) -> None:
        with pytest.raises(TypeError):
            ck.CloudContext.builder("aws").deadline_shedding(1)  # type: ignore[arg-type]


class Capacity(httpx.AsyncBaseTransport):
    """A server that works on ``capacity`` requests at once, each for ``service`` seconds;
    the rest queue (up to ``queue``) or get 503."""

    def __init__(self, capacity: int, service: float = 0.01, queue: int = 1000) -> None:
        self.workers = trio.CapacityLimiter(capacity)
        self.service = service
        self.queue = queue
        self.waiting = 0

    def resize(self, capacity: int) -> None:
        self.workers.total_tokens = capacity

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.waiting >= self.queue:
            return httpx.Response(503)
        self.waiting += 1
        try:
            async with self.workers:
                await trio.sleep(self.service)
        finally:
            self.waiting -= 1
        return httpx.Response(200)


def learned(cloud: ck.Cloud) -> float:
    concurrency = cloud.snapshot().admission[0].concurrency
    assert concurrency is not None
    return concurrency.estimate


class TestAdaptiveConcurrency:
    async def test_the_limit_converges_and_follows_a_halved_capacity(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        server = Capacity(40)
        # Callers that queue for a slot (max_wait=None): the limit is what is measured.
        settings = ck.AdaptiveConcurrency(
            algorithm="vegas", initial_limit=10, max_limit=400, max_wait=None
        )
        limits: list[float] = []
        async with build(server, concurrency=settings) as cloud:

            async def load(until: float) -> None:
                while trio.current_time() < until:
                    await cloud.execute(get())

            async with trio.open_nursery() as nursery:
                for _ in range(200):  # more callers than the server can serve at once
                    nursery.start_soon(load, 20.0)
                # The learned limit, not the bulkhead's size now: a probe (a round trip
                # at half the limit, every few hundred milliseconds here) may be under way.
                await trio.sleep(8.0)
                limits.append(learned(cloud))
                server.resize(20)
                await trio.sleep(8.0)
                limits.append(learned(cloud))
        before, after = limits
        assert 30 <= before <= 80, limits
        assert 15 <= after <= 40 and after < before, limits

    async def test_the_limit_is_a_gauge_and_in_the_snapshot(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        metrics = RecordingMetrics()
        settings = ck.AdaptiveConcurrency(algorithm="aimd", initial_limit=7)
        async with build(Flaky(0.0), concurrency=settings, metrics=metrics) as cloud:
            await cloud.execute(get())
            await trio.sleep(0.5)
            [gate] = cloud.snapshot().admission
        assert gate.concurrency is not None and gate.concurrency.algorithm == "aimd"
        assert gate.concurrency_limit == gate.concurrency.limit
        gauges = [i for i in metrics.instruments if i.name == "concurrency_limit"]
        assert gauges and gauges[-1].tags == {"endpoint": "http://127.0.0.1:9001"}


PINNED_AT_TWO = {"initial_limit": 2, "min_limit": 2, "max_limit": 2}


class TestConcurrencyQueueBound:
    """What an operation does when every slot of its endpoint's adaptive limit is taken."""

    async def _three_at_once(
        self, cloud: ck.Cloud, last_timeout: float | None = None
    ) -> list[BaseException | None]:
        """Three calls 10 ms apart; ``last_timeout`` is the third's ``timeout=``."""
        results: list[BaseException | None] = [None, None, None]

        async def call(index: int) -> None:
            try:
                await cloud.execute(get(timeout=last_timeout if index == 2 else None))
            except ck.CloudError as error:
                results[index] = error

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(call, index)
                await trio.sleep(0.01)  # in order: the third finds both slots taken
        return results

    async def test_refused_at_once_by_default_nothing_sent(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        server = Capacity(10, service=1.0)
        metrics = RecordingMetrics()
        settings = ck.AdaptiveConcurrency(**PINNED_AT_TWO)
        async with build(server, concurrency=settings, metrics=metrics) as cloud:
            start = trio.current_time()
            results = await self._three_at_once(cloud)
            snapshot = cloud.snapshot()
        first, second, third = results
        assert first is None and second is None
        assert isinstance(third, ck.Overloaded)
        assert third.request_sent is False and third.endpoint == "http://127.0.0.1:9001"
        assert "adaptive concurrency limit" in str(third) and "2 in flight" in str(third)
        assert trio.current_time() - start == pytest.approx(1.01, abs=0.005)  # not waited on
        assert snapshot.overloaded == 1 and snapshot.admission[0].overloaded == 1
        assert metrics.counter_total("admission_refused", reason="overloaded") == 1
        assert metrics.counter_total("admission_refused") == 1
        assert sorted(str(o.error_code) for o in metrics.operations) == [
            "None",
            "None",
            "Overloaded",
        ]

    async def test_a_positive_max_wait_absorbs_a_short_wait(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        settings = ck.AdaptiveConcurrency(**PINNED_AT_TWO, max_wait=2.0)
        async with build(Capacity(10, service=1.0), concurrency=settings) as cloud:
            results = await self._three_at_once(cloud)
            assert cloud.snapshot().overloaded == 0
        assert results == [None, None, None]

    async def test_a_positive_max_wait_is_a_bound(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        settings = ck.AdaptiveConcurrency(**PINNED_AT_TWO, max_wait=0.25)
        context = build(Capacity(10, service=1.0), concurrency=settings)
        async with context as cloud, trio.open_nursery() as nursery:
            nursery.start_soon(cloud.execute, get())
            nursery.start_soon(cloud.execute, get())
            await trio.sleep(0.01)
            start = trio.current_time()
            with pytest.raises(ck.Overloaded, match=r"within 0\.25 s") as caught:
                await cloud.execute(get())
            refused_after = trio.current_time() - start
        assert refused_after == pytest.approx(0.25)
        assert caught.value.request_sent is False

    async def test_none_waits_up_to_the_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        settings = ck.AdaptiveConcurrency(**PINNED_AT_TWO, max_wait=None)
        async with build(Capacity(10, service=1.0), concurrency=settings) as cloud:
            results = await self._three_at_once(cloud, last_timeout=0.5)
        assert results[:2] == [None, None]
        third = results[2]
        assert isinstance(third, ck.OperationTimeout) and third.waiting_for == "capacity"

    async def test_a_fixed_bulkhead_still_queues(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Without adaptive concurrency the bulkhead is a queue, as before."""
        config = ck.CloudConfig(max_concurrency=512, max_concurrency_per_endpoint=2)
        async with build(Capacity(10, service=1.0), config=config) as cloud:
            results = await self._three_at_once(cloud)
        assert results == [None, None, None]

    def test_max_wait_is_validated(self) -> None:
        for bad in (-1.0, math.inf, math.nan, "1"):
            with pytest.raises(ck.ConfigError, match=r"AdaptiveConcurrency\.max_wait"):
                ck.AdaptiveConcurrency(max_wait=bad)  # type: ignore[arg-type]
        assert ck.AdaptiveConcurrency(max_wait=None).max_wait is None


class TestEviction:
    async def test_ten_thousand_endpoints_leave_no_gate_behind(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Gates of endpoints nobody uses any more are dropped: memory stays bounded."""
        async with build(Flaky(0.0), limit=ck.RateLimit(100.0)) as cloud:
            for port in range(10_000):
                await cloud.execute(get(f"http://10.0.{port // 250}.{port % 250}:80"))
            assert len(cloud.snapshot().admission) == 10_000
            await trio.sleep(400.0)
            await cloud.execute(get())  # a new endpoint: the sweep runs
            assert [g.endpoint for g in cloud.snapshot().admission] == ["http://127.0.0.1:9001"]


# -- over a real socket ---------------------------------------------------------------------


class QuotaServer:
    """An HTTP/1.1 server on 127.0.0.1 that accepts ``rate`` requests per second (Trio's
    clock) and answers the rest 429, as a throttling cloud API does: a token bucket with
    ``burst`` tokens, like the quotas of AWS's APIs."""

    def __init__(self, rate: float, burst: float = 10.0, service: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        #: Seconds each request takes before it is answered.
        self.service = service
        self.received = 0
        self.tokens = burst
        self.at = 0.0
        self.accepted: list[float] = []
        self.throttled = 0

    def admit(self) -> bool:
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.accepted.append(now)
            return True
        self.throttled += 1
        return False

    async def handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    connection.receive_data(data)
                    continue
                if isinstance(event, h11.EndOfMessage):
                    self.received += 1
                    if self.service:
                        await trio.sleep(self.service)
                    status = 200 if self.admit() else 429
                    body = b"ok" if status == 200 else b'{"__type":"ThrottlingException"}'
                    headers = [("content-length", str(len(body)))]
                    await stream.send_all(
                        connection.send(h11.Response(status_code=status, headers=headers))
                        + connection.send(h11.Data(data=body))
                        + connection.send(h11.EndOfMessage())
                    )
                    connection.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return


@pytest.fixture
async def quota_server(nursery: trio.Nursery) -> AsyncIterator[tuple[str, QuotaServer]]:
    server = QuotaServer(rate=40.0)
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}", server


class TestAdaptiveRateOverLoopback:
    async def test_converges_to_the_rate_the_server_accepts(
        self, quota_server: tuple[str, QuotaServer], mock_clock: trio.testing.MockClock
    ) -> None:
        """Starting at a quarter of the server's quota, the learned rate ends within 20 %
        of it, and so does the rate of accepted requests."""
        # Jump only when idle for real: loopback answers take well under this.
        mock_clock.autojump_threshold = 0.002
        base, server = quota_server
        limit = ck.RateLimit(10.0, burst=1, adaptive=True)
        transport = PooledTransport()  # the test's own: closed by the test, not the context
        async with transport, build(transport, limit=limit, policy=ck.NoRetry()) as cloud:

            async def caller(until: float) -> None:
                while trio.current_time() < until:
                    with contextlib.suppress(ck.RateLimited):
                        await cloud.execute(get(base))

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(caller, start + 40.0)
            [gate] = cloud.snapshot().admission
        assert gate.rate_limit is not None
        assert gate.rate_limit.rate == pytest.approx(server.rate, rel=0.2)
        recent = [t for t in server.accepted if t >= start + 25.0]
        accepted_rate = len(recent) / 15.0
        assert accepted_rate == pytest.approx(server.rate, rel=0.2)
        assert server.throttled > 0 and not math.isnan(accepted_rate)


class TestConcurrencyLimitOverLoopback:
    async def test_an_operation_past_the_limit_is_refused_unsent(
        self, quota_server: tuple[str, QuotaServer], mock_clock: trio.testing.MockClock
    ) -> None:
        mock_clock.autojump_threshold = 0.002
        base, server = quota_server
        server.service = 1.0
        settings = ck.AdaptiveConcurrency(**PINNED_AT_TWO)
        transport = PooledTransport()
        async with transport, build(transport, concurrency=settings) as cloud:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cloud.execute, get(base))
                nursery.start_soon(cloud.execute, get(base))
                await trio.sleep(0.5)  # both are being served
                with pytest.raises(ck.Overloaded) as caught:
                    await cloud.execute(get(base))
            assert cloud.snapshot().overloaded == 1
        assert server.received == 2  # the third never reached the server
        assert caught.value.request_sent is False
