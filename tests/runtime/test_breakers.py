"""Per-endpoint circuit breakers: opening, rejecting, half-open probes, control, eviction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.actors import ChildSpec
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.runtime._breaker import Breaker, Outcome, Permit
from cloudkit_trio.runtime._events import Counter, MetricEvent, RuntimeEvents
from cloudkit_trio.runtime._registry import BreakerRegistry
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics

from ._support import ENDPOINT, CountingAuth, KeyEcho, Script, context, op

BREAKER = ck.CircuitBreaker(
    ck.NoRetry(), minimum_throughput=4, failure_ratio=0.5, break_duration=5.0, idle_eviction=60.0
)


def bounded(max_endpoints: int, idle_eviction: float = 600.0) -> ck.CircuitBreaker:
    return ck.CircuitBreaker(
        ck.NoRetry(),
        minimum_throughput=4,
        failure_ratio=0.5,
        break_duration=5.0,
        idle_eviction=idle_eviction,
        max_endpoints=max_endpoints,
    )


def port(n: int) -> str:
    return f"http://127.0.0.1:{10000 + n}"


@asynccontextmanager
async def running(
    settings: ck.CircuitBreaker, emitted: list[MetricEvent] | None = None
) -> AsyncIterator[BreakerRegistry]:
    """A registry with its supervisor (and so its breakers' actors) running."""
    logger = CapturingLogger()
    sink = emitted if emitted is not None else []
    registry = BreakerRegistry(
        settings, RuntimeEvents(ck.ProviderType.AWS, logger, sink.append), logger
    )
    async with registry.supervisor:
        yield registry


def protected(registry: BreakerRegistry, endpoint: str) -> Breaker:
    breaker = registry.get(endpoint)
    assert breaker is not None, f"{endpoint} runs without a breaker"
    return breaker


def open_breaker(breaker: Breaker) -> Breaker:
    now = trio.current_time()
    for _ in range(4):
        breaker.release(breaker.acquire(now), Outcome.FAILURE, now)
    assert breaker.state is BreakerState.OPEN
    return breaker


def transitions(emitted: list[MetricEvent], endpoint: str) -> list[tuple[str, str]]:
    return [
        (event.tags["from_state"], event.tags["to_state"])
        for event in emitted
        if isinstance(event, Counter)
        and event.name == "breaker_transitions"
        and event.tags["endpoint"] == endpoint
    ]


class TestBreakerBehaviour:
    async def test_opens_rejects_half_opens_and_closes(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Failures open the circuit; calls are rejected without a request; a probe closes it."""
        script = Script([503] * 4)
        metrics = RecordingMetrics()
        async with context(script, policy=BREAKER, metrics=metrics) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            assert cloud.breaker(ENDPOINT).state is BreakerState.OPEN
            with pytest.raises(ck.CircuitOpenError) as info:
                await cloud.execute(op())
            assert len(script.requests) == 4  # rejected without a network call
            assert info.value.endpoint == ENDPOINT
            assert info.value.retry_at == pytest.approx(trio.current_time() + 5.0)
            await trio.sleep(5.0)
            assert cloud.breaker(ENDPOINT).state is BreakerState.HALF_OPEN
            await cloud.execute(op())
            assert cloud.breaker(ENDPOINT).state is BreakerState.CLOSED
        transitions = [
            (i.tags["from_state"], i.tags["to_state"])
            for i in metrics.instruments
            if i.name == "breaker_transitions"
        ]
        assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
        assert metrics.counter_total("breaker_rejections", endpoint=ENDPOINT) == 1

    async def test_failed_probe_reopens(self, autojump_clock: trio.testing.MockClock) -> None:
        """A failing half-open probe opens the circuit for another break."""
        script = Script([503] * 5)
        async with context(script, policy=BREAKER) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            await trio.sleep(5.0)
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op())
            snapshot = cloud.breaker(ENDPOINT)
            assert snapshot.state is BreakerState.OPEN
            assert snapshot.time_until_half_open == pytest.approx(5.0)

    async def test_half_open_admits_bounded_probes(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Half-open lets one probe through; concurrent calls are rejected meanwhile."""
        gate = trio.Event()

        class Gated(httpx.AsyncBaseTransport):
            calls = 0

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                Gated.calls += 1
                if Gated.calls <= 4:
                    return httpx.Response(503)
                await gate.wait()
                return httpx.Response(200)

        async with context(Gated(), policy=BREAKER) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            await trio.sleep(5.0)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cloud.execute, op())
                await trio.testing.wait_all_tasks_blocked()
                assert cloud.breaker(ENDPOINT).probes_in_flight == 1
                with pytest.raises(ck.CircuitOpenError):
                    await cloud.execute(op())
                gate.set()
            assert cloud.breaker(ENDPOINT).state is BreakerState.CLOSED

    async def test_cancelled_probe_returns_its_permit(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A probe whose caller is cancelled gives its permit back."""

        class Hang(httpx.AsyncBaseTransport):
            calls = 0

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                Hang.calls += 1
                if Hang.calls <= 4:
                    return httpx.Response(503)
                await trio.sleep_forever()
                raise AssertionError

        async with context(Hang(), policy=BREAKER) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            await trio.sleep(5.0)
            with trio.move_on_after(1.0):
                await cloud.execute(op())
            snapshot = cloud.breaker(ENDPOINT)
            assert snapshot.state is BreakerState.HALF_OPEN and snapshot.probes_in_flight == 0

    async def test_non_retryable_errors_do_not_count(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """404s say nothing about an endpoint's health and never open the circuit."""
        async with context(Script([404] * 10), policy=BREAKER) as cloud:
            for _ in range(10):
                with pytest.raises(ck.NotFound):
                    await cloud.execute(op())
            assert cloud.breaker(ENDPOINT).state is BreakerState.CLOSED

    async def test_minimum_throughput(self, autojump_clock: trio.testing.MockClock) -> None:
        """Below the minimum number of calls in the window, failures do not open the circuit."""
        async with context(Script([503] * 3), policy=BREAKER) as cloud:
            for _ in range(3):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            assert cloud.breaker(ENDPOINT).state is BreakerState.CLOSED

    async def test_window_slides(self, autojump_clock: trio.testing.MockClock) -> None:
        """Failures older than the sampling window are forgotten."""
        async with context(Script([503] * 3), policy=BREAKER) as cloud:
            for _ in range(3):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            await trio.sleep(31.0)
            await cloud.execute(op())
            snapshot = cloud.breaker(ENDPOINT)
            assert snapshot.state is BreakerState.CLOSED and snapshot.calls_in_window == 1

    async def test_breakers_are_per_endpoint(self, autojump_clock: trio.testing.MockClock) -> None:
        """An open circuit for one endpoint does not affect another."""

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(503 if request.url.port == 9000 else 200)

        async with context(handler, policy=BREAKER) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            other = ck.Operation(service="s3", name="get", url="http://127.0.0.1:9001/k")
            assert (await cloud.execute(other)).status_code == 200
            assert cloud.breaker("http://127.0.0.1:9001").state is BreakerState.CLOSED


class TestManualControl:
    async def test_force_open_closed_reset(self, autojump_clock: trio.testing.MockClock) -> None:
        """force_open rejects, force_closed admits despite failures, reset closes."""
        script = Script([503] * 10)
        async with context(script, policy=BREAKER) as cloud:
            cloud.force_open(ENDPOINT + "/any/path")
            with pytest.raises(ck.CircuitOpenError):
                await cloud.execute(op())
            await trio.sleep(60)
            assert cloud.breaker(ENDPOINT).state is BreakerState.FORCED_OPEN
            cloud.force_closed(ENDPOINT)
            for _ in range(6):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            assert cloud.breaker(ENDPOINT).state is BreakerState.FORCED_CLOSED
            cloud.reset_breaker(ENDPOINT)
            assert cloud.breaker(ENDPOINT).state is BreakerState.CLOSED

    async def test_disabled_breakers(self, autojump_clock: trio.testing.MockClock) -> None:
        """circuit_breaker(None) runs without breakers; manual control says so."""
        async with context(Script([503] * 20), policy=ck.NoRetry(), breaker=None) as cloud:
            for _ in range(20):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            with pytest.raises(RuntimeError, match="disabled"):
                cloud.breaker(ENDPOINT)


class TestEviction:
    async def test_idle_closed_breakers_are_evicted(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A closed breaker idle past idle_eviction is dropped, and its actor stops."""
        async with context(policy=BREAKER) as cloud:
            await cloud.execute(op())
            await trio.testing.wait_all_tasks_blocked()
            assert len(cloud.statistics().breakers) == 1
            children = cloud.snapshot().tree.walk()
            assert any("breaker:" in str(info.id) for _, info in children)
            await trio.sleep(61.0)
            await trio.testing.wait_all_tasks_blocked()
            assert cloud.statistics().breakers == ()
            assert not any("breaker:" in str(info.id) for _, info in cloud.snapshot().tree.walk())

    async def test_open_breakers_are_never_evicted(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A forced-open breaker stays, however long it is idle."""
        async with context(policy=BREAKER) as cloud:
            cloud.force_open(ENDPOINT)
            await trio.sleep(600.0)
            assert cloud.breaker(ENDPOINT).state is BreakerState.FORCED_OPEN

    async def test_breaker_count_is_bounded(self, autojump_clock: trio.testing.MockClock) -> None:
        """Past max_endpoints, the least recently used idle breaker makes room."""
        settings = ck.CircuitBreaker(ck.NoRetry(), max_endpoints=5)
        async with context(policy=settings) as cloud:
            for port in range(20):
                await cloud.execute(
                    ck.Operation(service="s3", name="get", url=f"http://127.0.0.1:{10000 + port}/")
                )
            await trio.testing.wait_all_tasks_blocked()
            endpoints = [b.endpoint for b in cloud.statistics().breakers]
            assert endpoints == [f"http://127.0.0.1:{10015 + n}" for n in range(5)]


class TestCallsInFlight:
    async def test_hanging_calls_open_the_breaker(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With idle_eviction shorter than the calls, calls that hang then fail still open it."""
        async with running(bounded(1024, idle_eviction=1.0)) as registry:
            first = protected(registry, ENDPOINT)
            for _ in range(4):
                breaker = protected(registry, ENDPOINT)
                permit = breaker.acquire(trio.current_time())
                await trio.sleep(5.0)
                breaker.release(permit, Outcome.FAILURE, trio.current_time())
            assert protected(registry, ENDPOINT).state is BreakerState.OPEN
            assert protected(registry, ENDPOINT) is first  # never evicted on the way

    async def test_busy_breaker_is_kept_then_evicted_once_idle(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A breaker with a call in flight is not evicted; idle_eviction after its release it is."""
        async with running(bounded(1024, idle_eviction=1.0)) as registry:
            breaker = protected(registry, ENDPOINT)
            permit = breaker.acquire(trio.current_time())
            await trio.sleep(100.0)
            assert len(registry) == 1 and not breaker.evictable
            breaker.release(permit, Outcome.SUCCESS, trio.current_time())
            await trio.sleep(0.5)
            assert len(registry) == 1
            await trio.sleep(2.0)  # the actor looks again at most idle_eviction later
            assert len(registry) == 0

    async def test_timeouts_open_the_breaker(self, autojump_clock: trio.testing.MockClock) -> None:
        """End to end: every call hangs until its 5 s timeout, idle_eviction is 1 s, and the
        circuit still opens."""

        class Hang(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                await trio.sleep_forever()
                raise AssertionError

        config = ck.CloudConfig(endpoint=ENDPOINT, timeout=5.0)
        async with context(Hang(), config=config, policy=bounded(1024, idle_eviction=1.0)) as cloud:
            for _ in range(4):
                with pytest.raises(ck.OperationTimeout):
                    await cloud.execute(op())
            with pytest.raises(ck.CircuitOpenError):
                await cloud.execute(op())
            assert cloud.breaker(ENDPOINT).state is BreakerState.OPEN


class TestBound:
    async def test_idle_half_open_breaker_expires(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A half-open breaker nobody probes closes and is evicted after idle_eviction."""
        emitted: list[MetricEvent] = []
        async with running(bounded(1024, idle_eviction=60.0), emitted) as registry:
            open_breaker(protected(registry, ENDPOINT))
            await trio.sleep(6.0)
            assert protected(registry, ENDPOINT).state is BreakerState.HALF_OPEN
            # Half-open since t=5: it expires at t=65, not a moment before.
            await trio.sleep(58.0)
            assert len(registry) == 1
            await trio.sleep(3.0)
            assert len(registry) == 0
        assert transitions(emitted, ENDPOINT) == [
            ("closed", "open"), ("open", "half_open"), ("half_open", "closed"),
        ]  # fmt: skip

    async def test_half_open_breakers_make_room(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With every slot held by an idle half-open breaker, a new endpoint still gets one."""
        async with running(bounded(2)) as registry:
            open_breaker(protected(registry, port(0)))
            open_breaker(protected(registry, port(1)))
            await trio.sleep(6.0)
            assert [state for _, state in registry.states()] == [BreakerState.HALF_OPEN] * 2
            assert protected(registry, port(2)).state is BreakerState.CLOSED
            assert [endpoint for endpoint, _ in registry.states()] == [port(1), port(2)]
            assert registry.breaker(port(3)).state is BreakerState.CLOSED

    async def test_drops_closed_then_half_open_then_open(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """At the bound, the breaker dropped is the least recently used one without calls in
        flight, closed before half-open before open."""

        async def endpoints() -> list[str]:
            await trio.testing.wait_all_tasks_blocked()
            return [endpoint for endpoint, _ in registry.states()]

        busy: list[tuple[Breaker, Permit]] = []

        def occupy(endpoint: str) -> None:
            breaker = protected(registry, endpoint)
            busy.append((breaker, breaker.acquire(trio.current_time())))

        async with running(bounded(3)) as registry:
            oldest = protected(registry, port(0))
            open_breaker(protected(registry, port(1)))
            await trio.sleep(6.0)
            open_breaker(oldest)  # least recently used, and open
            protected(registry, port(2))  # most recently used, and closed
            assert [state for _, state in registry.states()] == [
                BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED,
            ]  # fmt: skip
            occupy(port(3))
            assert await endpoints() == [port(0), port(1), port(3)]  # closed one went first
            occupy(port(4))
            assert await endpoints() == [port(0), port(3), port(4)]  # then half-open
            occupy(port(5))
            assert await endpoints() == [port(3), port(4), port(5)]  # then open
            occupy(port(6))  # nothing is safe to drop: one over the bound
            assert await endpoints() == [port(3), port(4), port(5), port(6)]
            for breaker, permit in busy:
                breaker.release(permit, Outcome.SUCCESS, trio.current_time())
            protected(registry, port(7))  # back to the bound
            assert await endpoints() == [port(5), port(6), port(7)]

    async def test_forced_breakers_are_not_dropped_for_room(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An operator's override stays: the new endpoint is protected over the bound."""
        async with running(bounded(1)) as registry:
            registry.breaker(port(0)).force_open(trio.current_time())
            assert protected(registry, port(1)).state is BreakerState.CLOSED
            assert dict(registry.states()) == {
                port(0): BreakerState.FORCED_OPEN,
                port(1): BreakerState.CLOSED,
            }
            protected(registry, port(2))
            assert dict(registry.states()) == {
                port(0): BreakerState.FORCED_OPEN,
                port(2): BreakerState.CLOSED,
            }

    async def test_new_endpoint_is_protected_when_others_are_half_open(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """End to end: with max_endpoints breakers half-open, 50 failing calls to a new
        endpoint open its circuit; only minimum_throughput of them reach the network."""
        seen: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.port or 0)
            return httpx.Response(503)

        def to(n: int) -> ck.Operation:
            return ck.Operation(service="s3", name="get", url=f"{port(n)}/k")

        async with context(handler, policy=bounded(2, idle_eviction=60.0)) as cloud:
            for n in (0, 1):
                for _ in range(4):
                    with pytest.raises(ck.ServiceUnavailable):
                        await cloud.execute(to(n))
            await trio.sleep(6.0)
            rejected = 0
            for _ in range(50):
                try:
                    await cloud.execute(to(2))
                except ck.CircuitOpenError:
                    rejected += 1
                except ck.ServiceUnavailable:
                    pass
            assert seen.count(10002) == 4 and rejected == 46
            assert cloud.breaker(port(2)).state is BreakerState.OPEN


class TestSnapshot:
    async def test_snapshot_under_a_scripted_scenario(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """snapshot() shows the tree, an open breaker with its time to half-open, and no secret."""
        async with context(Script([503] * 4), policy=BREAKER) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            await trio.sleep(2.0)
            await trio.testing.wait_all_tasks_blocked()
            snapshot = cloud.snapshot()
        assert [child.id for child in snapshot.tree.children] == [
            "metrics-aggregator", "credential-refresher", "breakers", "router", "workers",
        ]  # fmt: skip
        assert any(path[-1] == f"breaker:{ENDPOINT}" for path, _ in snapshot.tree.walk())
        [breaker] = snapshot.breakers
        assert breaker.state is BreakerState.OPEN and breaker.failure_ratio == 1.0
        assert breaker.time_until_half_open == pytest.approx(3.0)
        assert snapshot.inflight == 0 and snapshot.queued == 0 and not snapshot.closing
        assert "SECRET" not in repr(snapshot)

    async def test_snapshot_shows_credentials_restarts_and_queues(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Credentials (age, expiry, the last refresh error), a user child's restarts and last
        failure, and the queue bounds, at scripted instants."""
        auth = CountingAuth(lifetime=100.0)
        crashes = 0

        async def flaky(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal crashes
            task_status.started()
            if crashes == 0:
                crashes += 1
                raise RuntimeError("worker lost its lease")
            await trio.sleep_forever()

        config = ck.CloudConfig(endpoint=ENDPOINT, queue_size=16, max_concurrency=8)
        async with context(auth=auth, signer=KeyEcho(), config=config) as cloud:
            await cloud.execute(op())
            await cloud.supervisor.start_child(ChildSpec("flaky-worker", flaky))
            await trio.sleep(10.0)
            early = cloud.snapshot()
            auth.fail = True
            await trio.sleep(60.0)  # inside the advisory window: a refresh is tried, and fails
            late = cloud.snapshot()
        assert early.credentials.age == pytest.approx(10.0, abs=0.1)
        assert early.credentials.expires_in == pytest.approx(90.0, abs=0.1)
        assert early.credentials.access_key_id == "AKID1" and early.credentials.last_error is None
        assert late.credentials.failures >= 1 and "vault is down" in (
            late.credentials.last_error or ""
        )
        assert late.credentials.source == "CountingAuth" and late.credentials.refreshes == 1
        [workers] = [child for child in late.tree.children if child.id == "workers"]
        assert workers.subtree is not None
        [worker] = [child for child in workers.subtree.children if child.id == "flaky-worker"]
        assert worker.restarts == 1 and worker.last_failure is not None
        assert worker.last_failure.type_name == "RuntimeError"
        assert "lease" in worker.last_failure.message
        assert (late.queue_capacity, late.max_concurrency) == (16, 8)
        assert "SECRET" not in repr(late)
