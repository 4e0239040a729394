"""RedisState against a real Redis server on 127.0.0.1, as several processes would use it.

Each "process" is a RedisState of its own (its own connections). The shared buckets count
in Trio's clock (``clock=trio.current_time``), so MockClock drives them; the mock clock
jumps only after 20 ms of real idleness, far longer than a loopback Redis answer takes, and
the backends' timeouts are a mock second, so a jump never cuts a call short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import coredis
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.redis import RedisState

if TYPE_CHECKING:
    from cloudkit_trio.testing import LocalRedis

ENDPOINT = "https://s3.us-east-1.amazonaws.com:443"


@pytest.fixture
def clock(mock_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    mock_clock.autojump_threshold = 0.02
    return mock_clock


@asynccontextmanager
async def state(server: LocalRedis, **options: object) -> AsyncIterator[RedisState]:
    options.setdefault("clock", trio.current_time)
    # In mock seconds: the clock may jump while every task waits on Redis.
    options.setdefault("timeout", 1.0)
    async with RedisState(server.url, **options) as opened:  # type: ignore[arg-type]
        yield opened


@asynccontextmanager
async def raw(server: LocalRedis) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis(host="127.0.0.1", port=server.port) as client:
        yield client


class TestSharedBucket:
    async def test_starts_full_then_refills_at_its_rate(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with state(redis_server) as one:
            first = await one.lease_tokens("s3", rate=10.0, burst=5, count=8)
            assert (first.granted, first.retry_after) == (5, pytest.approx(0.1))
            assert (await one.lease_tokens("s3", rate=10.0, burst=5, count=1)).granted == 0
            await trio.sleep(0.35)
            assert (await one.lease_tokens("s3", rate=10.0, burst=5, count=8)).granted == 3
            await trio.sleep(10.0)  # refills to the burst, no further
            assert (await one.lease_tokens("s3", rate=10.0, burst=5, count=8)).granted == 5

    async def test_processes_share_one_rate(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """Three processes asking for 50/s each get 50/s between them, not 150/s."""
        granted = [0, 0, 0]

        async def process(index: int, until: float) -> None:
            async with state(redis_server) as mine:
                while trio.current_time() < until:
                    lease = await mine.lease_tokens("quota", rate=50.0, burst=5, count=5)
                    granted[index] += lease.granted
                    await trio.sleep(max(lease.retry_after, 0.1))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(process, index, start + 4.0)
        total = sum(granted)
        assert 5 + 50 * 4 * 0.95 <= total <= 5 + 50 * 4 * 1.05, granted
        assert all(share > 0 for share in granted), granted

    @pytest.mark.parametrize("fair", [True, False])
    async def test_named_processes_share_fairly_whoever_leases_first(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock, fair: bool
    ) -> None:
        """Two processes asking for more than 20/s between them, the same one always
        first: named, each gets half; unnamed, the first takes everything."""
        granted = {"p1": 0, "p2": 0}
        async with state(redis_server) as one:
            for _ in range(40):
                for process in ("p1", "p2"):
                    lease = await one.lease_tokens(
                        "quota",
                        rate=20.0,
                        burst=4,
                        count=10,
                        process=process if fair else None,
                        period=0.1 if fair else None,
                    )
                    granted[process] += lease.granted
                await trio.sleep(0.1)
        if fair:
            assert 35 <= granted["p1"] <= 45 and 35 <= granted["p2"] <= 45, granted
        else:
            assert granted["p2"] <= 5 < granted["p1"], granted
        assert sum(granted.values()) <= 4 + 20 * 4, granted

    async def test_a_quiet_process_is_reserved_its_rate_not_a_period(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """A process that leases one token every half second asks for 2/s; the busy one
        gets the other 18/s of 20."""
        granted = {"quiet": 0, "busy": 0}
        async with state(redis_server) as one:
            for step in range(40):
                if step % 5 == 0:
                    lease = await one.lease_tokens(
                        "quota", rate=20.0, burst=4, count=1, process="quiet", period=0.1
                    )
                    granted["quiet"] += lease.granted
                lease = await one.lease_tokens(
                    "quota", rate=20.0, burst=4, count=10, process="busy", period=0.1
                )
                granted["busy"] += lease.granted
                await trio.sleep(0.1)
        assert granted["quiet"] == 8, granted
        assert 66 <= granted["busy"] <= 76, granted

    async def test_keys_are_namespaced_and_expire(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with state(redis_server, namespace="app1") as one:
            await one.lease_tokens("s3", rate=10.0, burst=5, count=1)
            await one.report_open(ENDPOINT, "p1", 30.0)
            assert await one.acquire_probe(ENDPOINT, "p1", 5.0)
            await one.force(ENDPOINT, ck.ForcedState.OPEN)
        async with raw(redis_server) as client:
            keys = sorted(k.decode() for k in await client.keys("*"))
            assert keys == [
                "app1:bucket:s3",
                f"app1:open:{ENDPOINT}",
                "app1:overrides",
                f"app1:probe:{ENDPOINT}",
            ]
            for key in keys:
                assert await client.pttl(key) > 0, key


class TestBreakerSignals:
    async def test_reports_are_counted_per_process_and_expire(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with state(redis_server) as one, state(redis_server) as two:
            assert await one.open_reports(ENDPOINT) == 0
            await one.report_open(ENDPOINT, "p1", 30.0)
            await one.report_open(ENDPOINT, "p1", 30.0)  # the same process: once
            await two.report_open(ENDPOINT, "p2", 5.0)
            assert await two.open_reports(ENDPOINT) == 2
            await trio.sleep(6.0)
            assert await one.open_reports(ENDPOINT) == 1  # p2's report ran out
            await two.report_closed(ENDPOINT, "p1")
            assert await one.open_reports(ENDPOINT) == 0

    async def test_one_probe_lease_at_a_time(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with state(redis_server) as one, state(redis_server) as two:
            assert not await one.acquire_probe(ENDPOINT, "p1", 2.0)  # nobody reports it down
            await two.report_open(ENDPOINT, "p2", 30.0)
            assert await one.acquire_probe(ENDPOINT, "p1", 2.0)
            assert not await two.acquire_probe(ENDPOINT, "p2", 2.0)
            assert await one.acquire_probe(ENDPOINT, "p1", 2.0)  # the holder renews
            await two.release_probe(ENDPOINT, "p2")  # not the holder: nothing happens
            assert not await two.acquire_probe(ENDPOINT, "p2", 2.0)
            await one.release_probe(ENDPOINT, "p1")
            assert await two.acquire_probe(ENDPOINT, "p2", 2.0)

    async def test_a_probe_lease_expires(self, redis_server: LocalRedis) -> None:
        """The lease lives in Redis's own time: a holder that died frees it."""
        async with state(redis_server) as one, state(redis_server) as two:
            await one.report_open(ENDPOINT, "p1", 30.0)
            assert await one.acquire_probe(ENDPOINT, "p1", 0.05)
            await trio.sleep(0.1)  # real time: PX expiry is the server's
            assert await two.acquire_probe(ENDPOINT, "p2", 0.05)

    async def test_manual_override_is_seen_by_every_process(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        async with state(redis_server) as one, state(redis_server) as two:
            assert await two.forced(ENDPOINT) is None
            await one.force(ENDPOINT, ck.ForcedState.OPEN)
            assert await two.forced(ENDPOINT) is ck.ForcedState.OPEN
            await two.force(ENDPOINT, ck.ForcedState.CLOSED)
            assert await one.forced(ENDPOINT) is ck.ForcedState.CLOSED
            assert await two.overrides() == {ENDPOINT: ck.ForcedState.CLOSED}
            await one.force(ENDPOINT, None)
            assert await two.forced(ENDPOINT) is None
            assert await two.overrides() == {}


class TestFailures:
    async def test_a_dead_server_is_unavailable_then_recovered(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        """Killed mid-test, every call fails fast with SharedStateUnavailable; restarted,
        the same RedisState works again (a fresh, empty server)."""
        async with state(redis_server) as one:
            await one.report_open(ENDPOINT, "p1", 30.0)
            redis_server.kill()
            for call in (
                one.open_reports(ENDPOINT),
                one.lease_tokens("s3", rate=1.0, burst=1, count=1),
                one.forced(ENDPOINT),
                one.acquire_probe(ENDPOINT, "p1", 1.0),
            ):
                with pytest.raises(ck.SharedStateUnavailable, match="Redis"):
                    await call
            redis_server.start()
            for _ in range(50):  # reconnecting may take a failed call or two
                try:
                    assert await one.open_reports(ENDPOINT) == 0  # the restart lost it
                    break
                except ck.SharedStateUnavailable:
                    await trio.sleep(0.01)
            else:
                pytest.fail("RedisState did not recover after the restart")

    async def test_a_server_that_never_answers_is_bounded(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A listener that accepts and never replies: the call gives up after its timeout."""
        async with trio.open_nursery() as nursery:

            async def mute(stream: trio.SocketStream) -> None:
                await trio.sleep_forever()

            listeners = await nursery.start(partial(trio.serve_tcp, mute, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with RedisState(f"redis://127.0.0.1:{port}/0", timeout=0.02) as silent:
                start = trio.current_time()
                with pytest.raises(ck.SharedStateUnavailable):
                    await silent.open_reports(ENDPOINT)
                assert trio.current_time() - start == pytest.approx(0.02, abs=0.005)
            nursery.cancel_scope.cancel()

    def test_no_secret_in_repr_or_errors(self) -> None:
        backend = RedisState("redis://:hunter2@127.0.0.1:1/0")
        assert "hunter2" not in repr(backend)
        with pytest.raises(ck.ConfigError) as caught:
            RedisState("http://user:hunter2@example.com")
        assert "hunter2" not in str(caught.value)

    async def test_unopened_backend_is_unavailable(self) -> None:
        backend = RedisState("redis://127.0.0.1:1/0")
        with pytest.raises(ck.SharedStateUnavailable, match="not open"):
            await backend.forced(ENDPOINT)


class TestViews:
    async def test_one_step_says_reports_and_overrides_of_many_endpoints(
        self, redis_server: LocalRedis, clock: trio.testing.MockClock
    ) -> None:
        other = "https://sqs.us-east-1.amazonaws.com:443"
        async with state(redis_server) as one, state(redis_server) as two:
            assert await one.views([]) == []
            await one.report_open(ENDPOINT, "p1", 30.0)
            await two.report_open(ENDPOINT, "p2", 30.0)
            await two.force(other, ck.ForcedState.CLOSED)
            assert await one.views([ENDPOINT, other]) == [
                ck.SharedView(2),
                ck.SharedView(0, ck.ForcedState.CLOSED),
            ]
            await two.recovered(ENDPOINT)  # every process's report goes
            assert await one.views([ENDPOINT]) == [ck.SharedView(0)]
