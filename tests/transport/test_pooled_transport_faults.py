"""PooledTransport against misbehaving servers: closed connections, garbage, timeouts.

Each test scripts a raw TCP server on 127.0.0.1 (``trio.serve_tcp``) to misbehave in one
precise way. Timeouts are real but small (0.1 s) and only used where the test is about a
timeout; everything else waits on events, never on the clock.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import attrs
import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.transport import PooledTransport, TransportStatistics, error_from_exception

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_SHORT = 0.1


def _timeouts(**overrides: float) -> httpx.Timeout:
    """Generous timeouts except the ones a test is about."""
    values = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0, **overrides}
    return httpx.Timeout(**values)


class Reader:
    """Reads HTTP/1.1 requests (head plus Content-Length body) from a server-side stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def request(self) -> bytes | None:
        """The next request's head and body, or None when the client closed."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._fill():
                return None
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            if not await self._fill():
                return None
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]


Script = Callable[["RawServer", trio.SocketStream, Reader, int], Awaitable[None]]


@attrs.define
class RawServer:
    """A TCP server running ``script`` for every connection (with the connection's index)."""

    script: Script
    url: str = ""
    connections: int = 0
    requests: list[bytes] = attrs.field(factory=list)
    closed: trio.Event = attrs.field(factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        index = self.connections
        self.connections += 1
        try:
            await self.script(self, stream, Reader(stream), index)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()
            self.closed.set()

    async def next_request(self, reader: Reader) -> bytes | None:
        request = await reader.request()
        if request is not None:
            self.requests.append(request.split(b"\r\n", 1)[0])
        return request


async def start(nursery: trio.Nursery, script: Script) -> RawServer:
    server = RawServer(script)
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    return server


async def serve_forever(server: RawServer, stream: trio.SocketStream, reader: Reader) -> None:
    """Answer every request with a small 200 until the client closes."""
    while await server.next_request(reader) is not None:
        await stream.send_all(_OK)


class TestServerClosedConnections:
    @pytest.mark.parametrize(("method", "retried"), [("POST", 0), ("GET", 1)])
    async def test_a_connection_the_server_closed_loses_no_request(
        self, nursery: trio.Nursery, method: str, retried: int
    ) -> None:
        """A request that could not be sent again (a POST) probes the idle connection
        first and notices it closed: nothing is retried. A replayable one (a GET, on a
        connection idle for under a second) skips the probe, a system call per request;
        the retry-once rule sends it again on a fresh connection. Nothing is lost."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            if i == 0:
                await server.next_request(reader)
                await stream.send_all(_OK)
                return
            await serve_forever(server, stream, reader)

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.request(method, server.url, content=b"x")).text == "ok"
            await server.closed.wait()
            assert (await client.request(method, server.url, content=b"x")).text == "ok"
            stats = transport.statistics()
        assert (stats.connections_created, stats.requests_retried) == (2, retried)
        assert len(server.requests) == 2

    async def test_get_is_retried_once_when_a_reused_connection_drops(
        self, nursery: trio.Nursery
    ) -> None:
        """A GET whose reused connection closes before any response byte goes out again."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            if i == 0:
                await server.next_request(reader)
                await stream.send_all(_OK)
                await server.next_request(reader)
                return
            await serve_forever(server, stream, reader)

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(server.url)).text == "ok"
            assert (await client.get(server.url)).text == "ok"
            stats = transport.statistics()
        assert (stats.connections_created, stats.requests_retried) == (2, 1)
        assert server.requests == [b"GET / HTTP/1.1"] * 3

    async def test_post_is_not_retried_once_sent(self, nursery: trio.Nursery) -> None:
        """A POST that reached the server is never sent twice, even on a dropped connection."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(_OK)
            await server.next_request(reader)

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(server.url)
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await client.post(server.url, content=b"once")
        error = error_from_exception(info.value)
        assert isinstance(error, ck.ProtocolError)
        assert error.request_sent
        assert server.requests == [b"GET / HTTP/1.1", b"POST / HTTP/1.1"]
        assert transport.statistics().requests_retried == 0

    async def test_a_streamed_body_is_not_replayed(self, nursery: trio.Nursery) -> None:
        """A request whose streamed body was consumed is not retried, idempotent or not."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(_OK)
            while b"\r\n\r\n" not in reader.buffer:
                await reader._fill()

        async def body() -> AsyncIterator[bytes]:
            yield b"part"

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(server.url)
            with pytest.raises((httpx.RemoteProtocolError, httpx.WriteError)):
                await client.put(server.url, content=body())
        assert server.connections == 1
        assert transport.statistics().requests_retried == 0

    async def test_a_fresh_connection_is_not_retried(self, nursery: trio.Nursery) -> None:
        """A request on a brand-new connection that closes unanswered fails: no retry."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)

        server = await start(nursery, script)
        transport = PooledTransport()
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(httpx.Request("GET", server.url))
        assert server.connections == 1
        assert transport.statistics().open_connections == 0

    async def test_a_partial_response_is_not_retried(self, nursery: trio.Nursery) -> None:
        """Once any response byte arrived, a broken connection is an error, not a retry."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(_OK)
            await server.next_request(reader)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Le")
            # Abort (RST): the client's read fails with a reset, as when a server crashes.
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(server.url)
            with pytest.raises(httpx.ReadError) as info:
                await client.get(server.url)
        assert isinstance(error_from_exception(info.value), ck.ConnectionReset)
        assert server.connections == 1
        assert transport.statistics().requests_retried == 0

    async def test_post_is_retried_when_nothing_was_written(self, nursery: trio.Nursery) -> None:
        """A POST whose first write failed whole never left: it goes out on a fresh connection."""
        server = await start(nursery, lambda s, stream, reader, i: serve_forever(s, stream, reader))
        opened: list[BreakingStream] = []

        async def open_stream(host: str, port: int) -> trio.abc.Stream:
            stream = BreakingStream(await trio.open_tcp_stream(host, port))
            opened.append(stream)
            return stream

        transport = PooledTransport(open_stream=open_stream)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(server.url)).text == "ok"
            opened[0].broken = True
            assert (await client.post(server.url, content=b"data")).text == "ok"
            stats = transport.statistics()
        assert (stats.connections_created, stats.requests_retried) == (2, 1)
        assert server.requests == [b"GET / HTTP/1.1", b"POST / HTTP/1.1"]


class BreakingStream(trio.abc.Stream):
    """A socket stream whose writes fail, sending nothing, once ``broken`` is set."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.broken = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("write failed") from BrokenPipeError(32, "EPIPE")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TestBrokenResponses:
    async def test_garbage_is_a_protocol_error(self, nursery: trio.Nursery) -> None:
        """Bytes that are not HTTP fail fast as a protocol error, a NetworkError."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            await trio.sleep_forever()

        server = await start(nursery, script)
        transport = PooledTransport()
        with trio.fail_after(5), pytest.raises(httpx.RemoteProtocolError) as info:
            await transport.handle_async_request(httpx.Request("GET", server.url))
        assert isinstance(error_from_exception(info.value), ck.NetworkError)
        assert transport.statistics().open_connections == 0

    async def test_an_endless_head_is_cut_off(self, nursery: trio.Nursery) -> None:
        """A response head that never ends fails at the size limit (100 KiB) instead of hanging."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: yes\r\n" * 16384)
            await trio.sleep_forever()

        server = await start(nursery, script)
        with trio.fail_after(5), pytest.raises(httpx.RemoteProtocolError):
            await PooledTransport().handle_async_request(httpx.Request("GET", server.url))

    async def test_informational_responses_are_skipped(self, nursery: trio.Nursery) -> None:
        """1xx responses before the final one are ignored; the connection stays usable."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            while await server.next_request(reader) is not None:
                await stream.send_all(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + _OK
                )

        server = await start(nursery, script)
        async with httpx.AsyncClient(transport=PooledTransport()) as client:
            for _ in range(2):
                response = await client.get(server.url)
                assert (response.status_code, response.reason_phrase) == (200, "OK")
                assert response.text == "ok"
        assert server.connections == 1

    async def test_bytes_after_the_response_prevent_reuse(self, nursery: trio.Nursery) -> None:
        """Bytes that follow a complete response mean the connection is out of step: closed."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            while await server.next_request(reader) is not None:
                await stream.send_all(_OK + b"HTTP/1.1 200 OK\r\n")

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(server.url)).text == "ok"
            assert transport.statistics().open_connections == 0
            assert (await client.get(server.url)).text == "ok"
        assert server.connections == 2

    async def test_http_10_body_until_close(self, nursery: trio.Nursery) -> None:
        """An HTTP/1.0 response without a length is read to EOF and its connection closed."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(server.url)
        assert (response.http_version, response.text) == ("HTTP/1.0", "until the end")
        assert transport.statistics().open_connections == 0


class TestTimeouts:
    async def test_connect_timeout(self) -> None:
        """A connection that cannot be opened in time fails with ConnectTimeout, freeing its slot."""

        async def never(host: str, port: int) -> trio.abc.Stream:
            await trio.sleep_forever()
            raise AssertionError

        transport = PooledTransport(open_stream=never, max_connections_per_endpoint=1)
        async with httpx.AsyncClient(transport=transport, timeout=_timeouts(connect=_SHORT)) as c:
            for _ in range(2):
                with pytest.raises(httpx.ConnectTimeout) as info:
                    await c.get("http://127.0.0.1:9/")
        error = error_from_exception(info.value)
        assert isinstance(error, ck.ConnectError)
        assert not error.request_sent
        assert transport.statistics().open_connections == 0

    async def test_connection_refused(self) -> None:
        """A port nobody listens on fails as a connect error, before any request left."""
        with trio.socket.socket() as sock:
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        transport = PooledTransport()
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{port}"))
        assert isinstance(error_from_exception(info.value), ck.ConnectError)
        assert transport.statistics() == TransportStatistics(1, 0, 0, 0, 0, 0, 0)

    async def test_read_timeout_waiting_for_the_head(self, nursery: trio.Nursery) -> None:
        """A server that never answers fails the request with ReadTimeout; nothing is pooled."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await trio.sleep_forever()

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport, timeout=_timeouts(read=_SHORT)) as c:
            with pytest.raises(httpx.ReadTimeout) as info:
                await c.get(server.url)
        assert isinstance(error_from_exception(info.value), ck.OperationTimeout)
        assert transport.statistics().open_connections == 0

    async def test_an_enclosing_deadline_that_ends_first_bounds_the_read(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Under a sooner enclosing deadline the read ends by that scope's cancellation (no
        scope of the transport's own); under a later one, by ReadTimeout. Both discard."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await trio.sleep_forever()

        server = await start(nursery, script)
        transport = PooledTransport()
        request = httpx.Request(
            "GET", server.url, extensions={"timeout": _timeouts(read=10 * _SHORT).as_dict()}
        )
        with trio.move_on_after(_SHORT) as outer:
            await transport.handle_async_request(request)
        assert outer.cancelled_caught
        with trio.move_on_after(100 * _SHORT) as outer, pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)
        assert not outer.cancelled_caught
        assert transport.statistics().open_connections == 0
        await transport.aclose()

    async def test_read_timeout_in_the_body(self, nursery: trio.Nursery) -> None:
        """A body that stops arriving fails the read with ReadTimeout and closes the connection."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
            await trio.sleep_forever()

        server = await start(nursery, script)
        transport = PooledTransport()
        client = httpx.AsyncClient(transport=transport, timeout=_timeouts(read=_SHORT))
        async with client, client.stream("GET", server.url) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()
        assert transport.statistics().open_connections == 0

    async def test_write_timeout(self, nursery: trio.Nursery) -> None:
        """A server that stops reading fails a large upload with WriteTimeout."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await trio.sleep_forever()

        async def body() -> AsyncIterator[bytes]:
            chunk = b"z" * (1024 * 1024)
            for _ in range(256):
                yield chunk

        server = await start(nursery, script)
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport, timeout=_timeouts(write=_SHORT)) as c:
            with pytest.raises(httpx.WriteTimeout) as info:
                await c.post(server.url, content=body())
        assert isinstance(error_from_exception(info.value), ck.OperationTimeout)
        assert transport.statistics().open_connections == 0

    async def test_pool_timeout(self, nursery: trio.Nursery) -> None:
        """At the cap, a request that waits too long for a connection fails with PoolTimeout."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
            await trio.sleep_forever()

        server = await start(nursery, script)
        transport = PooledTransport(max_connections_per_endpoint=1)
        client = httpx.AsyncClient(transport=transport, timeout=_timeouts(pool=_SHORT))
        async with client, client.stream("GET", server.url):
            with pytest.raises(httpx.PoolTimeout) as info:
                await client.get(server.url)
            assert transport.statistics().waiters == 0
        error = error_from_exception(info.value)
        assert isinstance(error, ck.OperationTimeout)
        assert not error.request_sent


class TestCancellation:
    async def test_cancelled_while_waiting_for_the_head(self, nursery: trio.Nursery) -> None:
        """A request cancelled mid-exchange closes its connection and frees its slot."""
        answer = trio.Event()

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            if i == 0:
                await trio.sleep_forever()
            await answer.wait()
            await stream.send_all(_OK)

        server = await start(nursery, script)
        transport = PooledTransport(max_connections_per_endpoint=1)
        async with httpx.AsyncClient(transport=transport) as client:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as inner:
                    inner.start_soon(client.get, server.url)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
            assert scope.cancelled_caught
            assert transport.statistics().open_connections == 0
            answer.set()
            assert (await client.get(server.url)).text == "ok"
        assert server.connections == 2

    async def test_cancelled_while_reading_the_body(self, nursery: trio.Nursery) -> None:
        """A body read cancelled halfway leaves no half-read connection in the pool."""

        async def script(server: RawServer, stream: trio.SocketStream, reader: Reader, i: int):
            await server.next_request(reader)
            if i == 0:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
                await trio.sleep_forever()
            await stream.send_all(_OK)

        server = await start(nursery, script)
        transport = PooledTransport(max_connections_per_endpoint=1)
        response = await transport.handle_async_request(httpx.Request("GET", server.url))
        with trio.move_on_after(0) as scope:
            await response.aread()
        assert scope.cancelled_caught
        assert transport.statistics().open_connections == 0
        second = await transport.handle_async_request(httpx.Request("GET", server.url))
        assert await second.aread() == b"ok"
        await transport.aclose()
