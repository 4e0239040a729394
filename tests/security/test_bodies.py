"""Hostile response bodies (issue 13, items 3 and 13, and its two design questions): bombs,
lying encodings, cut gzip, bodies too large to hold, and servers that drip."""

from __future__ import annotations

import gzip
import math
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.transport import NoAuthSigner

from ._raw import read_head

ENDPOINT = "http://127.0.0.1:9000"
MiB = 1024 * 1024
PAYLOAD = b"".join(b"%06d,the quick brown fox;" % n for n in range(4000))


def op(path: str = "/bucket/key") -> ck.Operation:
    return ck.Operation(service="s3", name="get_object", method="GET", path=path)


def mock_context(
    answer: Callable[[httpx.Request], httpx.Response], **config: object
) -> ck.CloudContext:
    """A context on httpx's MockTransport that answers every request with ``answer``."""
    return (
        ck.CloudContext.builder("aws")
        .config(ck.CloudConfig(endpoint=ENDPOINT, max_retries=0, **config))  # type: ignore[arg-type]
        .transport(httpx.MockTransport(answer))
        .logger(ck.NoopLogger())
        .signer(NoAuthSigner())  # these tests are about bodies, not authentication
        .build()
    )


def gzipped(body: bytes, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    """An answer: 200 with ``body`` under ``Content-Encoding: gzip`` (or as ``headers`` say)."""
    return lambda request: httpx.Response(
        200, content=body, headers={"Content-Encoding": "gzip", **headers}
    )


async def read_stream(cloud: ck.Cloud, **kwargs: object) -> bytes:
    async with cloud.stream(op(), **kwargs) as response:  # type: ignore[arg-type]
        return b"".join([chunk async for chunk in response.aiter_bytes()])


async def read_all_chunks(
    cloud: ck.Cloud, operation: ck.Operation, sizes: list[int], chunk_size: int | None = None
) -> None:
    """Stream ``operation``'s decoded body, recording each chunk's size in ``sizes``."""
    async with cloud.stream(operation) as response:
        async for chunk in response.aiter_bytes(chunk_size):
            sizes.append(len(chunk))


class Drip(httpx.AsyncByteStream):
    """A body of ``count`` bytes, one every ``pause`` seconds."""

    def __init__(self, count: int, pause: float) -> None:
        self.count = count
        self.pause = pause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            await trio.sleep(self.pause)
            yield b"x"


class Untouched(httpx.AsyncByteStream):
    """A body that records whether anybody read it."""

    def __init__(self) -> None:
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield b"x" * 1000


# -- a raw HTTP/1.1 server on a loopback socket ------------------------------------------------

Reply = Callable[[trio.SocketStream, str], Awaitable[None]]


async def _serve_one(reply: Reply, stream: trio.SocketStream) -> None:
    head = await read_head(stream)
    if head is None:
        return
    path = head.split(b" ", 2)[1].decode("ascii")
    try:
        await reply(stream, path)
    except trio.BrokenResourceError:
        pass  # the client hung up, as it may
    finally:
        await stream.aclose()


async def raw_server(nursery: trio.Nursery, reply: Reply) -> str:
    """Serve ``reply`` on 127.0.0.1 (one response per connection); return the base URL."""
    listeners = await nursery.start(
        partial(trio.serve_tcp, partial(_serve_one, reply), 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def head(length: int | None, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Connection: close", *extra]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


ZEROS = bytes(65_536)


async def send_zeros(stream: trio.SocketStream, size: int, *, chunked: bool) -> None:
    """``size`` zero bytes in 64 KiB pieces, never held whole (tracemalloc sees the server)."""
    for _ in range(size // len(ZEROS)):
        await stream.send_all(b"10000\r\n" + ZEROS + b"\r\n" if chunked else ZEROS)
    if chunked:
        await stream.send_all(b"0\r\n\r\n")


def loopback_context(base: str, **config: object) -> ck.CloudContext:
    return (
        ck.CloudContext.builder("aws")
        .config(ck.CloudConfig(endpoint=base, timeout=10.0, max_retries=0, **config))  # type: ignore[arg-type]
        .logger(ck.NoopLogger())
        .signer(NoAuthSigner())
        .build()
    )


BOMB = gzip.compress(bytes(64 * MiB), compresslevel=9)


async def hostile(stream: trio.SocketStream, path: str) -> None:
    """The hostile server: each path one way to abuse a client."""
    if path == "/bomb":
        await stream.send_all(head(len(BOMB), "Content-Encoding: gzip") + BOMB)
    elif path == "/cut-gzip":
        body = gzip.compress(PAYLOAD)
        body = body[: len(body) // 2]
        await stream.send_all(head(len(body), "Content-Encoding: gzip") + body)
    elif path == "/not-gzip":
        await stream.send_all(head(1, "Content-Encoding: gzip") + b"x")
    elif path == "/layers":
        body = PAYLOAD
        for _ in range(100):
            body = gzip.compress(body)
        coding = "Content-Encoding: " + ", ".join(["gzip"] * 100)
        await stream.send_all(head(len(body), coding) + body)
    elif path == "/big-chunked":
        await stream.send_all(head(None, "Transfer-Encoding: chunked"))
        await send_zeros(stream, 8 * MiB, chunked=True)
    elif path == "/big-declared":
        await stream.send_all(head(8 * MiB))
        await send_zeros(stream, 8 * MiB, chunked=False)
    elif path == "/drip":
        await stream.send_all(head(1000))
        for _ in range(1000):
            await trio.sleep(0.1)
            await stream.send_all(b"x")


@pytest.fixture
async def hostile_url(nursery: trio.Nursery) -> str:
    return await raw_server(nursery, hostile)


# -- item 3: decompression bombs and lying encodings -------------------------------------------


class TestBoundedDecoding:
    async def test_reading_a_little_of_a_bomb_holds_a_little(self, hostile_url: str) -> None:
        """1 KiB read of a 64 KiB -> 64 MiB gzip body over loopback peaks far below 64 MiB."""
        async with loopback_context(hostile_url) as cloud:
            tracemalloc.start()
            try:
                async with cloud.stream(op("/bomb")) as response:
                    first = await response.aiter_bytes(1024).__anext__()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert first == bytes(1024)
        assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"

    async def test_a_bomb_read_to_its_end_is_refused(self, hostile_url: str) -> None:
        """Past 100:1 (after the first MiB) the body is a SerializationError, not 64 MiB."""
        async with loopback_context(hostile_url) as cloud:
            sizes: list[int] = []
            with pytest.raises(ck.SerializationError, match="100:1"):
                await read_all_chunks(cloud, op("/bomb"), sizes)
        assert max(sizes) <= 64 * 1024 and sum(sizes) <= 8 * MiB

    async def test_a_hundred_encoding_layers_are_refused(self, hostile_url: str) -> None:
        """100 x gzip raises SerializationError naming the limit, for stream and execute."""
        async with loopback_context(hostile_url) as cloud:
            with pytest.raises(ck.SerializationError, match="more than the 5"):
                async with cloud.stream(op("/layers")) as response:
                    await response.aread()
            with pytest.raises(ck.SerializationError, match="more than the 5"):
                await cloud.execute(op("/layers"))

    async def test_five_layers_decode_and_six_do_not(self) -> None:
        """MAX_ENCODING_LAYERS is 5: five stacked gzip decode, a sixth is refused."""
        five = PAYLOAD
        for _ in range(5):
            five = gzip.compress(five)
        answers = iter(
            [
                gzipped(five, **{"Content-Encoding": "gzip, gzip,gzip , gzip, gzip"}),
                gzipped(gzip.compress(five), **{"Content-Encoding": ", ".join(["gzip"] * 6)}),
            ]
        )
        async with mock_context(lambda request: next(answers)(request)) as cloud:
            assert await read_stream(cloud) == PAYLOAD
            with pytest.raises(ck.SerializationError, match="6 Content-Encoding layers"):
                await read_stream(cloud)

    async def test_a_body_that_is_not_gzip_is_an_error(self, hostile_url: str) -> None:
        """A 1-byte non-gzip body under Content-Encoding: gzip raises, never decodes to b''."""
        async with loopback_context(hostile_url) as cloud:
            with pytest.raises(ck.SerializationError, match="not gzip"):
                async with cloud.stream(op("/not-gzip")) as response:
                    await response.aread()
            with pytest.raises(ck.SerializationError, match="not gzip"):
                await cloud.execute(op("/not-gzip"))

    async def test_concatenated_gzip_members_are_all_decoded(self) -> None:
        """A gzip body of two members (RFC 1952 section 2.2) decodes to both, not the first."""
        body = gzip.compress(b"first,") + gzip.compress(b"second")
        async with mock_context(gzipped(body)) as cloud:
            assert await read_stream(cloud) == b"first,second"
            assert (await cloud.execute(op())).content == b"first,second"

    async def test_raw_deflate_and_unknown_codings_in_execute(self) -> None:
        """Raw deflate still decodes; execute returns a coding it cannot decode as sent."""
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        deflated = raw.compress(PAYLOAD) + raw.flush()
        answers = iter(
            [
                gzipped(deflated, **{"Content-Encoding": "deflate"}),
                gzipped(b"\x00brotli", **{"Content-Encoding": "br"}),
                gzipped(b"x", **{"Content-Encoding": "gzip"}),
            ]
        )
        async with mock_context(lambda request: next(answers)(request)) as cloud:
            assert await read_stream(cloud) == PAYLOAD
            assert (await cloud.execute(op())).content == b"\x00brotli"
            with pytest.raises(ck.SerializationError):
                await cloud.execute(op())


# -- item 13: a gzip body cut short ------------------------------------------------------------


class TestTruncatedGzip:
    async def test_half_a_gzip_body_is_an_error_over_loopback(self, hostile_url: str) -> None:
        """A gzip body cut in half (Content-Length honest) raises SerializationError."""
        async with loopback_context(hostile_url) as cloud:
            with pytest.raises(ck.SerializationError, match="truncated"):
                await read_all_chunks(cloud, op("/cut-gzip"), [], chunk_size=100)
            with pytest.raises(ck.SerializationError, match="truncated"):
                await cloud.execute(op("/cut-gzip"))

    @pytest.mark.parametrize("coding", ["gzip", "deflate"])
    async def test_every_cut_is_an_error(self, coding: str) -> None:
        """Cut anywhere short of its end, a gzip or deflate body is never returned short."""
        whole = gzip.compress(PAYLOAD) if coding == "gzip" else zlib.compress(PAYLOAD)
        cuts = [1, 2, 10, len(whole) // 3, len(whole) - 8, len(whole) - 1]
        answers = iter([gzipped(whole[:cut], **{"Content-Encoding": coding}) for cut in cuts])
        async with mock_context(lambda request: next(answers)(request)) as cloud:
            for _ in cuts:
                with pytest.raises(ck.SerializationError):
                    await read_stream(cloud)


# -- the maximum in-memory response size -------------------------------------------------------


class TestMaxResponseSize:
    def test_the_default_and_validation(self) -> None:
        """max_response_size defaults to 64 MiB and must be a positive int."""
        assert ck.CloudConfig().max_response_size == 64 * MiB
        for bad in (0, -1, 1.5, True, "1"):
            with pytest.raises(ck.ConfigError, match="max_response_size"):
                ck.CloudConfig(max_response_size=bad)  # type: ignore[arg-type]

    async def test_a_chunked_body_past_the_limit_is_refused_holding_no_more(
        self, hostile_url: str
    ) -> None:
        """8 MiB chunked over loopback with a 1 MiB limit: ResponseTooLarge, peak < 4 MiB."""
        async with loopback_context(hostile_url, max_response_size=MiB) as cloud:
            tracemalloc.start()
            try:
                with pytest.raises(ck.ResponseTooLarge) as caught:
                    await cloud.execute(op("/big-chunked"))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        error = caught.value
        assert (error.limit, error.size, error.retryable) == (MiB, None, False)
        assert error.operation == "get_object" and "max_response_size" in str(error)
        assert peak < 4 * MiB, f"peak {peak / MiB:.1f} MiB"

    async def test_a_declared_length_past_the_limit_is_refused_unread(self) -> None:
        """Content-Length above the limit fails before a byte of the body is read."""
        body = Untouched()
        answer = partial(httpx.Response, 200, headers={"Content-Length": "1000"}, stream=body)
        async with mock_context(lambda request: answer(), max_response_size=999) as cloud:
            with pytest.raises(ck.ResponseTooLarge) as caught:
                await cloud.execute(op())
        assert caught.value.size == 1000 and not body.read

    async def test_the_limit_counts_decoded_bytes(self, hostile_url: str) -> None:
        """A 64 KiB gzip body that decodes past the limit is refused, in execute and aread."""
        async with loopback_context(hostile_url, max_response_size=MiB) as cloud:
            with pytest.raises(ck.ResponseTooLarge):
                await cloud.execute(op("/bomb"))
            with pytest.raises(ck.ResponseTooLarge):
                async with cloud.stream(op("/bomb")) as response:
                    await response.aread()

    async def test_a_body_at_the_limit_is_returned_whole(self) -> None:
        """Exactly max_response_size bytes is fine; one more is ResponseTooLarge."""
        answers = iter([bytes(1000), bytes(1001)])
        async with mock_context(
            lambda request: httpx.Response(200, content=next(answers)), max_response_size=1000
        ) as cloud:
            assert len((await cloud.execute(op())).content) == 1000
            with pytest.raises(ck.ResponseTooLarge):
                await cloud.execute(op())

    async def test_an_error_body_past_the_limit_keeps_its_status(self) -> None:
        """A 503 with a body past the limit is still ServiceUnavailable, its body cut."""
        async with mock_context(
            lambda request: httpx.Response(503, content=b"<Error>" + bytes(5000)),
            max_response_size=100,
        ) as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op())

    async def test_aiter_bytes_is_not_limited(self, hostile_url: str) -> None:
        """Streaming in pieces is the way past the limit: 8 MiB read with a 1 MiB limit."""
        sizes: list[int] = []
        async with loopback_context(hostile_url, max_response_size=MiB) as cloud:
            await read_all_chunks(cloud, op("/big-declared"), sizes)
        assert sum(sizes) == 8 * MiB


# -- a whole-body deadline for streams ---------------------------------------------------------


class TestStreamTimeout:
    def test_the_default_and_validation(self) -> None:
        """stream_timeout defaults to 300 s and must be a positive number of seconds."""
        assert ck.CloudConfig().stream_timeout == 300.0
        for bad in (0, -1, math.inf, math.nan, True):
            with pytest.raises(ck.ConfigError, match="stream_timeout"):
                ck.CloudConfig(stream_timeout=bad)  # type: ignore[arg-type]

    async def test_a_dripping_server_is_cut_off_over_loopback(
        self, hostile_url: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A byte every 0.1 s, no timeout= given: OperationTimeout after stream_timeout."""
        async with loopback_context(hostile_url, stream_timeout=5.0) as cloud:
            sizes: list[int] = []
            started = trio.current_time()
            with pytest.raises(ck.OperationTimeout) as caught:
                await read_all_chunks(cloud, op("/drip"), sizes)
            elapsed = trio.current_time() - started
            assert cloud.statistics().runner.inflight == 0
        error = caught.value
        assert (error.waiting_for, error.timeout) == ("body", 5.0)
        assert "stream_timeout" in str(error) and error.operation == "get_object"
        assert 5.0 <= elapsed < 5.5 and 40 <= sum(sizes) <= 50

    async def test_the_default_bounds_an_endless_body(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With the defaults, a body dripping for a day ends after 300 s."""
        answer = partial(httpx.Response, 200, stream=Drip(864_000, 0.1))
        async with mock_context(lambda request: answer()) as cloud:
            start = trio.current_time()
            with pytest.raises(ck.OperationTimeout, match="stream_timeout=300s"):
                await read_stream(cloud)
            assert 300 <= trio.current_time() - start < 301
            assert cloud.statistics().runner.deadlines_expired["body"] == 1

    async def test_a_deadline_the_caller_set_wins(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """timeout= or an enclosing scope longer than stream_timeout lets the body finish."""
        answer = partial(httpx.Response, 200, stream=Drip(100, 0.1))
        async with mock_context(lambda request: answer(), stream_timeout=5.0) as cloud:
            assert len(await read_stream(cloud, timeout=60.0)) == 100
            with trio.fail_after(60):
                assert len(await read_stream(cloud)) == 100
