"""Several runtimes (as several processes would) sharing breaker signals through one real
Redis server on 127.0.0.1. Trio's mock clock drives them; it jumps after 20 ms of real
idleness, and each backend's bound is a mock second, so a jump never cuts a Redis call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.redis import RedisState
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner

if TYPE_CHECKING:
    from cloudkit_trio.testing import LocalRedis

URL = "http://127.0.0.1:9001/item"
ENDPOINT = "http://127.0.0.1:9001"
BREAKER = ck.CircuitBreaker(
    ck.NoRetry(), minimum_throughput=5, failure_ratio=0.5, break_duration=5.0
)


class Endpoint:
    """One process's view of the endpoint: healthy or down, and the requests it got."""

    def __init__(self) -> None:
        self.down = False
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(503 if self.down else 200)


@pytest.fixture
def clock(mock_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    mock_clock.autojump_threshold = 0.02
    return mock_clock


@asynccontextmanager
async def processes(
    server: LocalRedis, count: int, *, quorum: int = 2, rate_limit: ck.RateLimit | None = None
) -> AsyncIterator[list[tuple[ck.Cloud, Endpoint, RecordingMetrics]]]:
    """``count`` contexts, each with its own backend, endpoint double and metrics."""
    async with AsyncExitStack() as stack:
        found = []
        for index in range(count):
            endpoint, metrics = Endpoint(), RecordingMetrics()
            backend = RedisState(server.url, timeout=1.0, clock=trio.current_time)
            builder = (
                ck.CloudContext.builder(ck.ProviderType.AWS)
                .transport(httpx.MockTransport(endpoint))
                .signer(NoAuthSigner())
                .logger(CapturingLogger())
                .metrics_collector(metrics)
                .retry_policy(BREAKER)
                .shared_state(backend, quorum=quorum, poll_interval=0.05, process=f"p{index}")
            )
            if rate_limit is not None:
                builder = builder.rate_limit(rate_limit)
            context = builder.build()
            found.append((await stack.enter_async_context(context), endpoint, metrics))
        yield found


async def fail_until_open(cloud: ck.Cloud, endpoint: Endpoint) -> None:
    """Take the endpoint down for this process and call it until its own breaker opens."""
    endpoint.down = True
    for _ in range(10):
        with pytest.raises(ck.ServiceUnavailable):
            await cloud.execute(ck.Operation(service="svc", name="get", url=URL))
        if cloud.breaker(URL).state is BreakerState.OPEN:
            return
    pytest.fail("the breaker did not open")


async def get(cloud: ck.Cloud) -> None:
    await cloud.execute(ck.Operation(service="svc", name="get", url=URL))


async def get_soon(cloud: ck.Cloud) -> None:
    """Call as a caller with traffic would, until the breaker lets a call through."""
    for _ in range(100):
        try:
            await get(cloud)
        except ck.CircuitOpenError:
            await trio.sleep(0.05)
        else:
            return
    pytest.fail("the breaker never let a call through")


class TestQuorum:
    async def test_a_quorum_of_reports_opens_the_other_processes(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with processes(redis_server, 3) as [(a, a_end, _), (b, b_end, _), (c, c_end, m)]:
            await get(c)  # c knows the endpoint, and it is healthy for c
            await fail_until_open(a, a_end)
            await trio.sleep(0.2)
            assert c.breaker(URL).state is BreakerState.CLOSED  # one report is no quorum
            await fail_until_open(b, b_end)
            await trio.sleep(0.2)  # a few polls
            assert c.breaker(URL).state is BreakerState.OPEN
            before = c_end.requests
            with pytest.raises(ck.CircuitOpenError):
                await get(c)
            assert c_end.requests == before  # refused without a request of its own
            shared = c.snapshot().shared
            assert shared is not None and shared.opened_by_quorum == 1 and shared.available
        assert m.counter_total("shared_opens", endpoint=ENDPOINT) == 1

    async def test_a_successful_probe_withdraws_every_report(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with processes(redis_server, 2, quorum=1) as [(a, a_end, _), (b, _b_end, _)]:
            await get(b)
            await fail_until_open(a, a_end)
            await trio.sleep(0.2)
            assert b.breaker(URL).state is BreakerState.OPEN
            a_end.down = False
            await trio.sleep(5.0)  # the break is over
            # a, the process with traffic, takes the lease and probes (b has no traffic).
            await get_soon(a)
            assert a.breaker(URL).state is BreakerState.CLOSED
            await trio.sleep(0.2)
            assert b.breaker(URL).state is BreakerState.CLOSED  # closed without a probe
            async with RedisState(redis_server.url, clock=trio.current_time) as probe:
                assert (await probe.views([ENDPOINT]))[0].open_reports == 0


class TestOneProbe:
    async def test_recovery_is_probed_once_not_once_per_process(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """Three processes open; after the break only the holder of the probe lease sends
        a probe, and its success closes the other two without a request of theirs."""
        async with processes(redis_server, 3) as procs:
            (a, a_end, _), (b, b_end, _), (c, _c_end, _) = procs
            await get(c)
            await fail_until_open(a, a_end)
            await fail_until_open(b, b_end)
            await trio.sleep(0.2)
            assert c.breaker(URL).state is BreakerState.OPEN
            for _cloud, end, _m in procs:
                end.down = False
            before = [end.requests for _cloud, end, _m in procs]

            async def keep_calling(cloud: ck.Cloud, until: float) -> None:
                while trio.current_time() < until:
                    with contextlib.suppress(ck.CircuitOpenError):
                        await get(cloud)
                    await trio.sleep(0.1)

            # Everyone keeps asking through the end of the break and past it.
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for cloud, _end, _m in procs:
                    nursery.start_soon(keep_calling, cloud, start + 4.5)
            assert [end.requests for _cloud, end, _m in procs] == before  # still open
            probes = [0, 0, 0]

            async def first_answer(index: int, cloud: ck.Cloud) -> None:
                while True:
                    try:
                        await get(cloud)
                    except ck.CircuitOpenError:
                        await trio.sleep(0.01)
                        continue
                    probes[index] = procs[index][1].requests - before[index]
                    return

            async with trio.open_nursery() as nursery:
                for index, (cloud, _end, _m) in enumerate(procs):
                    nursery.start_soon(first_answer, index, cloud)
            # One process probed; the others' first request came once it had succeeded.
            assert sorted(probes) == [1, 1, 1]
            led = [cloud.snapshot().shared.probes_led for cloud, _e, _m in procs]  # type: ignore[union-attr]
            assert sum(led) == 1, led
            assert [cloud.breaker(URL).state for cloud, _e, _m in procs] == [
                BreakerState.CLOSED
            ] * 3
        # Only one breaker of the three ever went half-open (without the lease: all three).
        half_opened = [
            m.counter_total("breaker_transitions", to_state="half_open") for *_, m in procs
        ]
        assert sorted(half_opened) == [0, 0, 1]


class TestOverrides:
    async def test_force_everywhere_reaches_every_process_and_lifts(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with processes(redis_server, 3) as [(a, _, _), (b, b_end, _), (c, _, _)]:
            await a.force_everywhere(URL, ck.ForcedState.OPEN)
            assert a.breaker(URL).state is BreakerState.FORCED_OPEN  # at once, here
            await trio.sleep(0.2)
            for cloud in (b, c):  # at their next poll, there, even for an unused endpoint
                assert cloud.breaker(URL).state is BreakerState.FORCED_OPEN
            with pytest.raises(ck.CircuitOpenError):
                await get(b)
            assert b_end.requests == 0
            await c.force_everywhere(URL, None)
            await trio.sleep(0.2)
            assert [cloud.breaker(URL).state for cloud in (a, b, c)] == [BreakerState.CLOSED] * 3
            await get(b)

    async def test_force_everywhere_needs_shared_state(self) -> None:
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .transport(httpx.MockTransport(Endpoint()))
            .signer(NoAuthSigner())
            .logger(CapturingLogger())
            .build()
        )
        async with context as cloud:
            with pytest.raises(RuntimeError, match="shares no state"):
                await cloud.force_everywhere(URL, ck.ForcedState.OPEN)
            assert cloud.snapshot().shared is None


class TestRedisDown:
    async def test_operations_go_on_locally_and_resynchronise(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """Redis killed: nothing blocks or fails because of it, the failures are counted
        and shown; restarted: the next opening propagates again."""
        async with processes(redis_server, 3) as procs:
            (a, a_end, metrics), (b, b_end, _), (c, _, _) = procs
            await get(c)
            redis_server.kill()
            await trio.sleep(0.2)
            for cloud, _end, _m in procs:
                await get(cloud)  # works, unhindered
                shared = cloud.snapshot().shared
                assert shared is not None and not shared.available and shared.failures > 0
            with pytest.raises(ck.SharedStateUnavailable):
                await a.force_everywhere(URL, ck.ForcedState.OPEN)
            assert a.breaker(URL).state is BreakerState.CLOSED  # nothing changed
            await fail_until_open(a, a_end)  # local breakers still work
            redis_server.start()
            await trio.sleep(0.5)
            await fail_until_open(b, b_end)
            await trio.sleep(0.2)
            # a's report was queued while Redis was down and sent once it came back.
            assert c.breaker(URL).state is BreakerState.OPEN
            assert c.snapshot().shared.available  # type: ignore[union-attr]
        assert metrics.counter_total("shared_state_unavailable") > 0


class TestShutdown:
    async def test_closing_a_context_with_the_redis_backend_is_clean(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """The backend's client (a task group of its own) is closed where it was opened:
        no child of the supervisor fails while stopping, with a subscription open."""
        logger = CapturingLogger()
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .transport(httpx.MockTransport(Endpoint()))
            .signer(NoAuthSigner())
            .logger(logger)
            .shared_state(RedisState(redis_server.url, timeout=1.0), process="p0")
            .build()
        )
        async with context as cloud:
            await get(cloud)
            with trio.fail_after(5):
                while not cloud.snapshot().shared.subscribed:  # type: ignore[union-attr]  # noqa: ASYNC110 - a snapshot, not an event
                    await trio.sleep(0.01)
        failures = [entry for entry in logger.entries if "fail" in entry.message]
        assert failures == [], [(e.message, e.fields) for e in failures]


class TestAvailability:
    async def test_a_reachable_store_is_available_before_any_traffic(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """No endpoint used yet, so no view to read: the store answered the poll and the
        subscription, and the snapshot says it is available."""
        async with processes(redis_server, 1) as procs:
            cloud = procs[0][0]
            await trio.sleep(0.2)  # a few polls
            shared = cloud.snapshot().shared
        assert shared is not None
        assert (shared.available, shared.failures, shared.subscribed) == (True, 0, True)


class TestSharedRateLimit:
    async def test_processes_keep_to_one_rate_together(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """Three processes, each offered 20 operations a second against one shared limit
        of 30 a second (failing fast): together they send 30 a second, not 60."""
        limit = ck.RateLimit(30.0, wait=False, shared=True)
        async with processes(redis_server, 3, rate_limit=limit) as procs:
            sent_before = [end.requests for _c, end, _m in procs]

            async def offer(cloud: ck.Cloud, until: float) -> None:
                while trio.current_time() < until:
                    with contextlib.suppress(ck.Throttled):
                        await get(cloud)
                    await trio.sleep(0.05)

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for cloud, _end, _m in procs:
                    nursery.start_soon(offer, cloud, start + 5.0)
            sent = [end.requests - b for (_c, end, _m), b in zip(procs, sent_before, strict=True)]
            shared = [cloud.snapshot().shared for cloud, _e, _m in procs]
        assert 135 <= sum(sent) <= 165, sent  # 30/s for 5 s, within 10 % (alone: 300)
        # Equal demand, equal parts: not decided by which process leases first.
        assert max(sent) - min(sent) <= 0.2 * max(sent), sent
        assert all(s is not None and s.leases > 0 for s in shared)

    async def test_processes_that_start_together_overshoot_by_no_more_than_the_burst(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """Three fresh processes, each offered 300 operations a second against one shared
        limit of 100 a second: in their first second together they send the limit plus
        the shared bucket's burst (two lease periods of the rate, 20) and one operation
        each from before the first lease; not a tenth of a second of the whole rate each
        from pacing alone, nor four periods of burst."""
        limit = ck.RateLimit(100.0, wait=False, shared=True)
        async with processes(redis_server, 3, rate_limit=limit) as procs:

            async def offer(cloud: ck.Cloud, until: float) -> None:
                while trio.current_time() < until:
                    with contextlib.suppress(ck.Throttled):
                        await get(cloud)
                    await trio.sleep(1 / 300)

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for cloud, _end, _m in procs:
                    nursery.start_soon(offer, cloud, start + 1.0)
            sent = [end.requests for _c, end, _m in procs]
        assert sum(sent) <= 100 + 20 + 3 + 2, sent  # 2: the leases' own timing

    async def test_a_quiet_process_gets_what_it_asks_and_the_busy_ones_the_rest(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """A shared limit of 40 a second, one process offered 5 a second and two offered
        100: the quiet one sends its 5, the busy ones share the other 35 (max-min fair)."""
        limit = ck.RateLimit(40.0, wait=False, shared=True)
        async with processes(redis_server, 3, rate_limit=limit) as procs:

            async def offer(cloud: ck.Cloud, per_second: float, until: float) -> None:
                while trio.current_time() < until:
                    with contextlib.suppress(ck.Throttled):
                        await get(cloud)
                    await trio.sleep(1 / per_second)

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for (cloud, _end, _m), per_second in zip(procs, (5, 100, 100), strict=True):
                    nursery.start_soon(offer, cloud, per_second, start + 5.0)
            quiet, *busy = (end.requests / 5.0 for _c, end, _m in procs)
        assert quiet >= 4.5, (quiet, busy)
        assert all(16.0 <= rate <= 19.0 for rate in busy), (quiet, busy)
        assert 36.0 <= quiet + sum(busy) <= 44.0, (quiet, busy)  # the limit, within 10 %

    def test_a_shared_limit_needs_shared_state(self) -> None:
        builder = ck.CloudContext.builder(ck.ProviderType.AWS).rate_limit(
            ck.RateLimit(10.0, shared=True)
        )
        with pytest.raises(ck.ConfigError, match="shared_state"):
            builder.build()

    def test_settings_are_validated(self) -> None:
        with pytest.raises(ck.ConfigError, match="shared=True"):
            ck.RateLimit(10.0, key="quota")
        with pytest.raises(ck.ConfigError, match="shared and adaptive"):
            ck.RateLimit(10.0, shared=True, adaptive=True)
        with pytest.raises(ck.ConfigError, match=r"RateLimit\.key"):
            ck.RateLimit(10.0, shared=True, key=" ")
        assert ck.RateLimit(10.0, shared=True, key="s3-writes").key == "s3-writes"


class TestBuilder:
    def test_validates(self) -> None:
        builder = ck.CloudContext.builder(ck.ProviderType.AWS)
        backend = RedisState()
        with pytest.raises(ck.ConfigError, match="quorum"):
            builder.shared_state(backend, quorum=0)
        with pytest.raises(ck.ConfigError, match="poll_interval"):
            builder.shared_state(backend, poll_interval=0)
        with pytest.raises(ck.ConfigError, match="process"):
            builder.shared_state(backend, process=" ")
        with pytest.raises(TypeError):
            builder.shared_state("redis://127.0.0.1")  # type: ignore[arg-type]
