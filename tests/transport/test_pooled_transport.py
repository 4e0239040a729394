"""PooledTransport against a well-behaved HTTP/1.1 server (hypercorn on 127.0.0.1).

Keep-alive reuse, the per-endpoint cap and its fair queue, idle expiry, request and
response framing in both directions, large streamed bodies, TLS, options and statistics.
Misbehaving servers and timeouts are in ``test_pooled_transport_faults.py``.
"""

from __future__ import annotations

import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
import trustme
from hypercorn.config import Config
from hypercorn.trio import serve

import cloudkit_trio as ck
from cloudkit_trio.transport import PooledTransport, TransportStatistics, error_from_exception

_MB = 1024 * 1024
_CHUNK = 64 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@attrs.define
class Recorder:
    """What the test server saw: requests, client ports (one per connection), concurrency."""

    requests: list[tuple[str, str, dict[str, str], int]] = attrs.field(factory=list)
    ports: list[int] = attrs.field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    gate: trio.Event | None = None
    gate_at: int = 0

    @property
    def connections(self) -> int:
        return len(set(self.ports))


async def _read_body(receive: Receive) -> tuple[int, bytes]:
    """Count the request body; keep at most its first 64 bytes (never the whole of it)."""
    size, head = 0, b""
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if len(head) < 64:
            head += chunk[: 64 - len(head)]
        if not message.get("more_body"):
            return size, head


async def _respond(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = list(headers or [])
    if status not in (204, 304):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def make_app(recorder: Recorder) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A small ASGI app; the path picks the behaviour."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        size, head = await _read_body(receive)
        recorder.requests.append((scope["method"], path, headers, size))
        recorder.ports.append(scope["client"][1])
        recorder.in_flight += 1
        recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
        try:
            if path == "/gate" and recorder.gate is not None:
                if recorder.in_flight >= recorder.gate_at:
                    recorder.gate.set()
                await recorder.gate.wait()
                # Give every other client task the chance to open one more connection.
                for _ in range(5):
                    await trio.lowlevel.checkpoint()
            if path == "/echo":
                await _respond(send, 200, f"{size}:{head.decode()}".encode())
            elif path == "/chunked":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                for part in (b"one,", b"two,", b"three"):
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            elif path == "/large":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", str(20 * _MB).encode())],
                    }
                )
                chunk = b"x" * _CHUNK
                for _ in range(20 * _MB // _CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            elif path == "/no-content":
                await _respond(send, 204)
            elif path == "/not-modified":
                await _respond(send, 304, headers=[(b"etag", b'"v1"')])
            elif path == "/close":
                await _respond(send, 200, b"bye", [(b"connection", b"close")])
            else:
                await _respond(send, 200, b"hello", [(b"content-type", b"text/plain")])
        finally:
            recorder.in_flight -= 1

    return app


async def start_server(nursery: trio.Nursery, **options: Any) -> tuple[str, Recorder]:
    """Start a hypercorn server on 127.0.0.1 with a fresh recorder: (base URL, recorder)."""
    recorder = Recorder()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    for name, value in options.items():
        setattr(config, name, value)
    binds = await nursery.start(serve, make_app(recorder), config)
    return binds[0], recorder


@pytest.fixture
async def server(nursery: trio.Nursery) -> tuple[str, Recorder]:
    """A hypercorn server for one test (pytest-trio cancels its nursery afterwards)."""
    return await start_server(nursery)


def _stats(transport: PooledTransport) -> TransportStatistics:
    return transport.statistics()


class TestKeepAlive:
    async def test_sequential_requests_share_one_connection(
        self, server: tuple[str, Recorder]
    ) -> None:
        """Sequential requests reuse one kept-alive connection, seen once by the server."""
        url, recorder = server
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(5):
                response = await client.get(f"{url}/")
                assert response.text == "hello"
            stats = _stats(transport)
        assert recorder.connections == 1
        assert stats.connections_created == 1
        assert stats.connections_reused == 4
        assert (stats.open_connections, stats.idle_connections, stats.endpoints) == (1, 1, 1)

    async def test_response_closed_before_its_end_is_not_reused(
        self, server: tuple[str, Recorder]
    ) -> None:
        """A response closed before its body was read closes the connection instead."""
        url, recorder = server
        async with PooledTransport() as transport:
            response = await transport.handle_async_request(httpx.Request("GET", f"{url}/large"))
            assert response.status_code == 200
            assert await anext(aiter(response.stream))
            assert _stats(transport).open_connections == 1
            await response.aclose()
            assert _stats(transport).open_connections == 0
            response = await transport.handle_async_request(httpx.Request("GET", f"{url}/"))
            assert await response.aread() == b"hello"
        assert recorder.connections == 2
        assert _stats(transport).connections_created == 2

    async def test_connection_close_from_the_server_is_honoured(
        self, server: tuple[str, Recorder]
    ) -> None:
        """A response with ``Connection: close`` ends its connection's life."""
        url, recorder = server
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(f"{url}/close")).text == "bye"
            assert _stats(transport).open_connections == 0
            assert (await client.get(f"{url}/")).text == "hello"
        assert recorder.connections == 2

    async def test_idle_connection_expires(
        self, server: tuple[str, Recorder], mock_clock: trio.testing.MockClock
    ) -> None:
        """A connection idle longer than keepalive_expiry is closed, not reused."""
        url, recorder = server
        # Both jumps stay within one sweep interval (1 s): checkout alone must notice.
        transport = PooledTransport(keepalive_expiry=0.5)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"{url}/")
            mock_clock.jump(0.3)
            await client.get(f"{url}/")
            assert _stats(transport).connections_created == 1
            mock_clock.jump(0.6)
            await client.get(f"{url}/")
            stats = _stats(transport)
        assert stats.connections_created == 2
        assert stats.open_connections == 1
        assert recorder.connections == 2

    async def test_zero_expiry_keeps_nothing(self, server: tuple[str, Recorder]) -> None:
        """keepalive_expiry=0 closes every connection after its response."""
        url, recorder = server
        transport = PooledTransport(keepalive_expiry=0)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"{url}/")
            await client.get(f"{url}/")
            assert _stats(transport).open_connections == 0
        assert recorder.connections == 2

    async def test_unused_endpoints_are_forgotten(
        self,
        server: tuple[str, Recorder],
        nursery: trio.Nursery,
        mock_clock: trio.testing.MockClock,
    ) -> None:
        """Expired connections of an endpoint nobody calls are closed, and the endpoint dropped."""
        url, _ = server
        other, _ = await start_server(nursery)
        transport = PooledTransport(keepalive_expiry=2.0)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"{url}/")
            await client.get(f"{other}/")
            assert _stats(transport).endpoints == 2
            mock_clock.jump(1.5)
            await client.get(f"{other}/")
            mock_clock.jump(1.5)
            await client.get(f"{other}/")
            stats = _stats(transport)
        assert (stats.endpoints, stats.open_connections) == (1, 1)


class TestCap:
    async def test_cap_holds_under_256_concurrent_requests(
        self, server: tuple[str, Recorder]
    ) -> None:
        """256 concurrent requests never use more than max_connections_per_endpoint connections."""
        url, recorder = server
        cap = 8
        recorder.gate, recorder.gate_at = trio.Event(), cap
        transport = PooledTransport(max_connections_per_endpoint=cap)
        statuses: list[int] = []
        async with httpx.AsyncClient(transport=transport) as client:

            async def one() -> None:
                statuses.append((await client.get(f"{url}/gate")).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(256):
                    nursery.start_soon(one)
            stats = _stats(transport)
        assert statuses == [200] * 256
        assert recorder.max_in_flight == cap
        assert recorder.connections == cap
        assert stats.connections_created == cap
        assert stats.connections_reused == 256 - cap
        assert stats.waiters == 0

    async def test_waiters_are_served_in_arrival_order(self, server: tuple[str, Recorder]) -> None:
        """Requests waiting at the cap get the connection first come, first served."""
        url, recorder = server
        transport = PooledTransport(max_connections_per_endpoint=1)
        async with httpx.AsyncClient(transport=transport) as client:
            held = await client.send(client.build_request("GET", f"{url}/large"), stream=True)
            async with trio.open_nursery() as nursery:
                for name in ("a", "b", "c", "d"):
                    nursery.start_soon(client.get, f"{url}/{name}")
                    await trio.testing.wait_all_tasks_blocked()
                assert _stats(transport).waiters == 4
                await held.aclose()
        assert [path for _, path, _, _ in recorder.requests] == ["/large", "/a", "/b", "/c", "/d"]

    async def test_a_cancelled_waiter_leaves_the_queue(self, server: tuple[str, Recorder]) -> None:
        """A waiter cancelled at the cap takes no slot and leaves nothing behind."""
        url, _ = server
        transport = PooledTransport(max_connections_per_endpoint=1)
        async with httpx.AsyncClient(transport=transport) as client:
            held = await client.send(client.build_request("GET", f"{url}/large"), stream=True)
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.get, f"{url}/")
                    await trio.testing.wait_all_tasks_blocked()
                    assert _stats(transport).waiters == 1
                    scope.cancel()
            assert _stats(transport).waiters == 0
            assert _stats(transport).open_connections == 1
            await held.aclose()
            assert (await client.get(f"{url}/")).text == "hello"
            stats = _stats(transport)
        assert (stats.connections_created, stats.open_connections) == (2, 1)


async def _chunks(total: int, size: int = _CHUNK) -> AsyncIterator[bytes]:
    chunk = b"y" * size
    for _ in range(total // size):
        yield chunk


class TestFraming:
    async def test_request_with_content_length(self, server: tuple[str, Recorder]) -> None:
        """An in-memory body goes out with Content-Length; the Host header is set."""
        url, recorder = server
        async with httpx.AsyncClient(transport=PooledTransport()) as client:
            response = await client.post(f"{url}/echo", content=b"payload")
        assert response.text == "7:payload"
        headers = recorder.requests[0][2]
        assert headers["content-length"] == "7"
        assert "transfer-encoding" not in headers
        assert headers["host"] == url.removeprefix("http://")

    async def test_request_streamed_chunked(self, server: tuple[str, Recorder]) -> None:
        """A body from an async iterator goes out chunked and arrives whole."""
        url, recorder = server
        async with httpx.AsyncClient(transport=PooledTransport()) as client:
            response = await client.post(f"{url}/echo", content=_chunks(3 * 10, 10))
        assert response.text == "30:" + "y" * 30
        assert recorder.requests[0][2]["transfer-encoding"] == "chunked"

    async def test_response_chunked(self, server: tuple[str, Recorder]) -> None:
        """A chunked response is reassembled and its connection reused."""
        url, recorder = server
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"{url}/chunked")
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.text == "one,two,three"
            await client.get(f"{url}/")
        assert recorder.connections == 1

    async def test_response_with_content_length(self, server: tuple[str, Recorder]) -> None:
        """A Content-Length response carries its status, headers, body and version."""
        url, _ = server
        async with httpx.AsyncClient(transport=PooledTransport()) as client:
            response = await client.get(f"{url}/")
        assert (response.status_code, response.text) == (200, "hello")
        assert response.headers["content-length"] == "5"
        assert response.headers["content-type"] == "text/plain"
        assert response.http_version == "HTTP/1.1"

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [("HEAD", "/", 200), ("GET", "/no-content", 204), ("GET", "/not-modified", 304)],
    )
    async def test_responses_without_a_body(
        self, server: tuple[str, Recorder], method: str, path: str, status: int
    ) -> None:
        """HEAD, 204 and 304 responses have no body and leave the connection reusable."""
        url, recorder = server
        async with httpx.AsyncClient(transport=PooledTransport()) as client:
            response = await client.request(method, f"{url}{path}")
            assert (response.status_code, response.content) == (status, b"")
            assert (await client.get(f"{url}/")).text == "hello"
        assert recorder.connections == 1

    async def test_large_upload_is_streamed(self, server: tuple[str, Recorder]) -> None:
        """A 20 MB upload from an async iterator never sits in memory whole."""
        url, recorder = server
        async with httpx.AsyncClient(transport=PooledTransport()) as client:
            tracemalloc.start()
            try:
                response = await client.put(f"{url}/echo", content=_chunks(20 * _MB))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert response.text.startswith(f"{20 * _MB}:")
        assert recorder.requests[0][3] == 20 * _MB
        assert peak < 8 * _MB

    async def test_large_download_is_streamed(self, server: tuple[str, Recorder]) -> None:
        """A 20 MB response arrives in bounded chunks, never whole in memory."""
        url, _ = server
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            total, biggest = 0, 0
            tracemalloc.start()
            try:
                async with client.stream("GET", f"{url}/large") as response:
                    async for chunk in response.aiter_raw():
                        total += len(chunk)
                        biggest = max(biggest, len(chunk))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert _stats(transport).idle_connections == 1
        assert total == 20 * _MB
        assert biggest <= 64 * 1024
        assert peak < 8 * _MB


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> tuple[str, Recorder]:
    """A hypercorn HTTPS server with a certificate from a test CA for 127.0.0.1."""
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return await start_server(nursery, certfile=str(certfile), keyfile=str(keyfile))


class TestTLS:
    async def test_verified_with_the_right_ca(
        self, tls_server: tuple[str, Recorder], ca: trustme.CA
    ) -> None:
        """HTTPS works and keeps connections alive when the server's CA is trusted."""
        url, recorder = tls_server
        assert url.startswith("https://")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(transport=PooledTransport(verify=context)) as client:
            for _ in range(3):
                assert (await client.get(f"{url}/")).text == "hello"
            assert (await client.post(f"{url}/echo", content=b"abc")).text == "3:abc"
        assert recorder.connections == 1

    async def test_refused_without_the_ca(self, tls_server: tuple[str, Recorder]) -> None:
        """Verification is on by default: an unknown CA fails as a TLS error."""
        url, _ = tls_server
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(f"{url}/")
        assert isinstance(error_from_exception(info.value), ck.TLSError)
        assert _stats(transport).open_connections == 0

    async def test_verification_can_be_switched_off(self, tls_server: tuple[str, Recorder]) -> None:
        """verify=False talks to a server whose certificate nobody vouches for."""
        url, _ = tls_server
        async with httpx.AsyncClient(transport=PooledTransport(verify=False)) as client:
            assert (await client.get(f"{url}/")).text == "hello"


class TestLifecycle:
    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({"max_connections_per_endpoint": 0}, ValueError),
            ({"max_connections_per_endpoint": 1.5}, TypeError),
            ({"keepalive_expiry": -1.0}, ValueError),
            ({"keepalive_expiry": float("inf")}, ValueError),
            ({"keepalive_expiry": "5"}, TypeError),
            ({"verify": "/etc/ssl/ca.pem"}, TypeError),
        ],
    )
    def test_options_are_validated(self, options: dict[str, Any], error: type[Exception]) -> None:
        """Nonsense options fail at construction with the builtin error they resemble."""
        with pytest.raises(error):
            PooledTransport(**options)

    def test_defaults_and_repr(self) -> None:
        """The defaults are documented values; the repr shows options, not internals."""
        transport = PooledTransport()
        assert transport.max_connections_per_endpoint == 64
        assert transport.keepalive_expiry == 4.0
        assert transport.verify is True
        assert repr(transport) == (
            "PooledTransport(max_connections_per_endpoint=64, keepalive_expiry=4.0, verify=True)"
        )
        assert transport.statistics() == TransportStatistics(0, 0, 0, 0, 0, 0, 0)

    async def test_unsupported_scheme(self) -> None:
        """A URL that is neither http nor https fails as a configuration error."""
        async with PooledTransport() as transport:
            with pytest.raises(httpx.UnsupportedProtocol) as info:
                await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))
        assert isinstance(error_from_exception(info.value), ck.ConfigError)

    async def test_closed_transport_refuses_requests(self, server: tuple[str, Recorder]) -> None:
        """aclose closes idle connections, is idempotent, and later requests fail."""
        url, _ = server
        transport = PooledTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"{url}/")
        assert _stats(transport).open_connections == 0
        await transport.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await transport.handle_async_request(httpx.Request("GET", f"{url}/"))

    async def test_close_wakes_waiters(self, server: tuple[str, Recorder]) -> None:
        """Requests waiting for a connection fail at once when the transport closes."""
        url, _ = server
        transport = PooledTransport(max_connections_per_endpoint=1)
        held = await transport.handle_async_request(httpx.Request("GET", f"{url}/large"))
        failures: list[BaseException] = []

        async def waiter() -> None:
            with pytest.raises(trio.ClosedResourceError) as info:
                await transport.handle_async_request(httpx.Request("GET", f"{url}/"))
            failures.append(info.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await transport.aclose()
        assert len(failures) == 1
        with pytest.raises(httpx.ReadError):
            await held.aread()

    async def test_plain_httpx_response_api(self, server: tuple[str, Recorder]) -> None:
        """Used without a client, the transport returns a readable httpx.Response."""
        url, _ = server
        async with PooledTransport() as transport:
            request = httpx.Request("GET", f"{url}/chunked")
            response = await transport.handle_async_request(request)
            assert response.request is request
            assert await response.aread() == b"one,two,three"
            assert _stats(transport).idle_connections == 1
