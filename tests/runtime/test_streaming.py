"""cloud.stream(): retries up to the headers, a body read by the caller, slots held until closed."""

from __future__ import annotations

import gc
import gzip
import socket
import zlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve

import cloudkit_trio as ck
from cloudkit_trio.testing import RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner

from ._support import Script, context, op


class SlowBody(httpx.AsyncByteStream):
    """A body that yields ``chunks`` pieces, sleeping ``pause`` seconds before each."""

    def __init__(self, chunks: int, pause: float) -> None:
        self.chunks = chunks
        self.pause = pause
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for n in range(self.chunks):
            await trio.sleep(self.pause)
            yield b"%d," % n

    async def aclose(self) -> None:
        self.closed = True


async def read_raw(
    cloud: ck.Cloud, operation: ck.Operation, received: list[bytes], **kwargs: Any
) -> None:
    async with cloud.stream(operation, **kwargs) as response:
        async for chunk in response.aiter_raw():
            received.append(chunk)


class TestStreamWithMockTransport:
    async def test_retries_until_headers_then_hands_over_the_body(self) -> None:
        """A 503 is retried; the 200's body is read in chunks; success is reported on exit."""
        metrics = RecordingMetrics()
        body = b"x" * 100_000
        script = Script([503, lambda request: httpx.Response(200, content=body)])
        policy = ck.ExponentialBackoff(initial_delay=0.001, max_delay=0.001)
        async with context(script, metrics=metrics, policy=policy) as cloud:
            async with cloud.stream(op()) as response:
                assert (response.status_code, response.attempts) == (200, 2)
                assert metrics.operations == []
                chunks = [chunk async for chunk in response.aiter_bytes(16_384)]
            assert b"".join(chunks) == body and len(chunks) > 1
        [reported] = metrics.operations
        assert reported.outcome is ck.OperationOutcome.SUCCESS and reported.retry_count == 1

    async def test_an_error_status_raises_from_async_with(self) -> None:
        """A 404 never reaches the block: the mapped error is raised and reported."""
        metrics = RecordingMetrics()
        entered = False
        async with context(Script([404]), metrics=metrics) as cloud:
            with pytest.raises(ck.NotFound):
                async with cloud.stream(op()):
                    entered = True
        assert not entered
        [reported] = metrics.operations
        assert reported.outcome is ck.OperationOutcome.FAILURE

    async def test_the_deadline_bounds_reading_the_body(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """timeout= covers the body: a slow body ends in OperationTimeout, closed and reported."""
        metrics = RecordingMetrics()
        stream = SlowBody(chunks=10, pause=1.0)
        handler = Script([lambda request: httpx.Response(200, stream=stream)])
        async with context(handler, metrics=metrics) as cloud:
            received: list[bytes] = []
            with pytest.raises(ck.OperationTimeout) as caught:
                await read_raw(cloud, op(), received, timeout=3.5)
        assert received == [b"0,", b"1,", b"2,"]
        assert stream.closed and caught.value.request_sent
        [reported] = metrics.operations
        assert reported.outcome is ck.OperationOutcome.FAILURE

    async def test_the_operation_holds_its_slot_until_the_block_exits(self) -> None:
        """With max_concurrency=1 a second operation waits for the stream to be closed."""
        config = ck.CloudConfig(endpoint="http://127.0.0.1:9000", max_concurrency=1)
        async with context(config=config) as cloud, trio.open_nursery() as nursery:
            done = trio.Event()

            async def second() -> None:
                await cloud.execute(op())
                done.set()

            async with cloud.stream(op()) as response:
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                assert not done.is_set() and cloud.statistics().runner.inflight == 2
                await response.aread()
            await done.wait()

    async def test_unread_bodies_are_closed_and_misuse_is_not_a_cloud_error(self) -> None:
        """Leaving the block unread closes the body; reading it twice is StreamConsumed."""
        stream = SlowBody(chunks=3, pause=0.0)
        handler = Script([lambda r: httpx.Response(200, stream=stream)] * 2)
        async with context(handler) as cloud:
            async with cloud.stream(op()):
                pass
            assert stream.closed
            async with cloud.stream(op()) as response:
                assert await response.aread() == b"0,1,2,"
                with pytest.raises(httpx.StreamConsumed):
                    await response.aread()
            with pytest.raises(TypeError, match="Operation"):
                async with cloud.stream("GET /"):  # type: ignore[arg-type]
                    pass
            with pytest.raises(ck.ConfigError):
                async with cloud.stream(op(), timeout=-1):
                    pass

    async def test_encodings_chunk_sizes_and_leaving_early(self) -> None:
        """aiter_bytes decodes gzip and deflate, aiter_raw does not; chunk_size is exact; a
        body left half-read (even a generator-backed one) is closed without a warning."""
        payload = bytes(range(256)) * 64
        deflated = zlib.compress(payload)

        async def generated() -> AsyncIterator[bytes]:
            for n in range(0, len(payload), 1000):
                yield payload[n : n + 1000]

        script = Script(
            [
                lambda r: httpx.Response(
                    200, content=gzip.compress(payload), headers={"Content-Encoding": "gzip"}
                ),
                lambda r: httpx.Response(
                    200, content=deflated, headers={"Content-Encoding": "deflate"}
                ),
                lambda r: httpx.Response(200, content=generated()),
                lambda r: httpx.Response(200, content=b"x", headers={"Content-Encoding": "br"}),
            ]
        )
        async with context(script) as cloud:
            async with cloud.stream(op()) as response:
                chunks = [chunk async for chunk in response.aiter_bytes(1000)]
            assert b"".join(chunks) == payload
            assert {len(c) for c in chunks[:-1]} == {1000} and len(chunks[-1]) == len(
                payload
            ) % 1000
            async with cloud.stream(op()) as response:
                assert b"".join([c async for c in response.aiter_raw(7)]) == deflated
                assert response.num_bytes_downloaded == len(deflated)
            async with cloud.stream(op()) as response:
                async for chunk in response.aiter_raw():
                    assert chunk == payload[:1000]
                    break
            gc.collect()
            async with cloud.stream(op()) as response:
                with pytest.raises(ck.SerializationError, match="aiter_raw"):
                    response.aiter_bytes()
                with pytest.raises(ValueError, match="chunk_size"):
                    response.aiter_raw(0)
                assert await response.aiter_raw().__anext__() == b"x"

    async def test_shutdown_cancels_a_stream_being_read(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """aclose() past its grace ends a stream that is still reading with ContextClosed."""
        handler = Script([lambda request: httpx.Response(200, stream=SlowBody(100, 1.0))])
        config = ck.CloudConfig(endpoint="http://127.0.0.1:9000", shutdown_grace=2.0)
        async with context(handler, config=config) as cloud, trio.open_nursery() as nursery:
            outcome: list[BaseException] = []

            async def reader() -> None:
                try:
                    async with cloud.stream(op()) as response:
                        async for _ in response.aiter_raw():
                            pass
                except ck.CloudError as error:
                    outcome.append(error)

            nursery.start_soon(reader)
            await trio.sleep(3)
            await cloud.aclose()
        [error] = outcome
        assert isinstance(error, ck.ContextClosed)


async def large_body_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Streams ``/big/<n>`` as n chunks of 64 KiB; ``/cut`` dies half-way through its body."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunk = bytes(range(256)) * 256
    if scope["path"] == "/cut":
        headers = [(b"content-length", b"%d" % (len(chunk) * 4))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        raise RuntimeError("injected: connection dropped mid-body")
    count = int(scope["path"].rsplit("/", 1)[1])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for n in range(count):
        await send({"type": "http.response.body", "body": chunk, "more_body": n < count - 1})


@pytest.fixture
async def base_url(nursery: trio.Nursery) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    await nursery.start(partial(serve, large_body_app, config))  # type: ignore[arg-type]
    return f"http://127.0.0.1:{port}"


def loopback_context(base: str) -> ck.CloudContext:
    return (
        ck.CloudContext.builder("aws")
        .config(ck.CloudConfig(endpoint=base, timeout=5.0))
        .logger(ck.NoopLogger())
        .signer(NoAuthSigner())
        .build()
    )


class TestStreamOverLoopback:
    async def test_a_large_body_streams_over_the_pooled_transport(self, base_url: str) -> None:
        """8 MiB arrive in pieces without being held whole, and the connection is reused."""
        async with loopback_context(base_url) as cloud:
            received = largest = 0
            async with cloud.stream(op(path="/big/128")) as response:
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    largest = max(largest, len(chunk))
            assert received == 128 * 65_536 and largest < received
            assert response.num_bytes_downloaded == received
            again = await cloud.execute(op(path="/big/1"))
            assert len(again.content) == 65_536
            stats = cloud._runtime.transport.statistics()  # type: ignore[attr-defined]
            assert stats.connections_created == 1

    async def test_a_connection_cut_mid_body_is_a_network_error(self, base_url: str) -> None:
        """A body cut short raises a NetworkError from the read, marked as sent, not retried."""
        metrics = RecordingMetrics()
        context = (
            ck.CloudContext.builder("aws")
            .config(ck.CloudConfig(endpoint=base_url, timeout=5.0))
            .metrics_collector(metrics)
            .logger(ck.NoopLogger())
            .signer(NoAuthSigner())
            .build()
        )
        async with context as cloud:
            received: list[bytes] = []
            with pytest.raises(ck.NetworkError) as caught:
                await read_raw(cloud, op(path="/cut"), received)
        assert caught.value.request_sent and sum(map(len, received)) == 65_536
        [reported] = metrics.operations
        assert reported.outcome is ck.OperationOutcome.FAILURE and reported.retry_count == 0
