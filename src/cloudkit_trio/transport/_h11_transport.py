"""PooledTransport: an httpx transport on h11 and Trio whose cost does not grow with load.

httpx's default transport slows down as concurrency rises (its pool scans every connection
on every change), so this one keeps a pool per endpoint with O(1) checkout and return (see
``_pool.py``) and speaks HTTP/1.1 with h11 over Trio streams (see ``_connection.py``). It
keeps httpx's Request/Response model, so ``httpx.AsyncClient(transport=...)`` works and any
other ``httpx.AsyncBaseTransport`` can take its place.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeAlias

import attrs
import httpx
import trio

from ._connection import Connection, aclose_stream, http_version
from ._pool import EndpointPool, TransportStatistics

__all__ = ["PooledTransport", "StreamOpener"]

#: Opens the byte stream to ``(host, port)``; TLS, when the URL asks for it, is layered on
#: top by the transport. The default is :func:`trio.open_tcp_stream`.
StreamOpener: TypeAlias = Callable[[str, int], Awaitable[trio.abc.Stream]]

_Key: TypeAlias = tuple[bytes, bytes, int | None]

# RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_NO_TIMEOUTS: Final[dict[str, float | None]] = {}
# How often, at most, a request looks at every endpoint to close expired idle connections
# and forget endpoints that hold nothing.
_SWEEP_INTERVAL: Final = 1.0
_CLOSED: Final = "the transport is closed; create a new one"


async def _open_tcp_stream(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


def _positive_int(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__)
    return text or type(exc).__name__


@attrs.define(eq=False)
class PooledTransport(httpx.AsyncBaseTransport):
    """An httpx transport for Trio that stays fast when many requests run at once.

    Use it where httpx takes a transport: ``httpx.AsyncClient(transport=PooledTransport())``.
    Connections are pooled per endpoint (scheme, host, port), reused most-recent-first,
    capped per endpoint (requests beyond the cap wait in arrival order) and closed once idle
    longer than ``keepalive_expiry``. Timeouts come from httpx's ``timeout`` request
    extension and fail with httpx's own timeout exceptions.

    Args:
        max_connections_per_endpoint: At most this many connections to one endpoint, open
            or opening. Requests beyond it wait for a connection (``pool`` timeout).
        keepalive_expiry: Seconds an idle connection is kept for reuse. ``0`` closes every
            connection after its response.
        verify: ``True`` checks server certificates against certifi's CA bundle (or
            ``SSL_CERT_FILE``/``SSL_CERT_DIR``), ``False`` does not check them, an
            :class:`ssl.SSLContext` is used as given.
        open_stream: ``async (host, port) -> trio.abc.Stream`` opening the raw byte
            stream; for tests and unusual networks.

    Close it with ``await transport.aclose()`` (``AsyncClient`` does so when it closes):
    idle connections close, and requests still running fail with httpx's errors.

    .. versionadded:: 0.1.0
    """

    max_connections_per_endpoint: int = attrs.field(
        default=64, kw_only=True, validator=_positive_int
    )
    keepalive_expiry: float = attrs.field(default=4.0, kw_only=True, validator=_non_negative)
    verify: bool | ssl.SSLContext = attrs.field(
        default=True, kw_only=True, validator=attrs.validators.instance_of((bool, ssl.SSLContext))
    )
    open_stream: StreamOpener = attrs.field(default=_open_tcp_stream, kw_only=True, repr=False)
    _pools: dict[_Key, EndpointPool] = attrs.field(init=False, factory=dict, repr=False)
    _tls_context: ssl.SSLContext | None = attrs.field(init=False, default=None, repr=False)
    _closed: bool = attrs.field(init=False, default=False, repr=False)
    _next_sweep: float = attrs.field(init=False, default=-math.inf, repr=False)
    _created: int = attrs.field(init=False, default=0, repr=False)
    _reused: int = attrs.field(init=False, default=0, repr=False)
    _retried: int = attrs.field(init=False, default=0, repr=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its response once the head has arrived.

        The response body streams from the connection; the connection returns to the pool
        when the body has been read to its end, and is closed if the response is closed
        earlier. Small bodies that arrived with the head are read at once.
        """
        if self._closed:
            raise trio.ClosedResourceError(_CLOSED)
        now = trio.current_time()
        if now >= self._next_sweep:
            await self._sweep(now)
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._add_pool(key)
        timeouts = request.extensions.get("timeout", _NO_TIMEOUTS)
        connection = await pool.checkout(timeouts.get("pool"), now, replayable=_replayable(request))
        try:
            if connection is None:
                connection = await self._connect(pool, timeouts.get("connect"))
            else:
                self._reused += 1
            try:
                head = await connection.exchange(request, timeouts)
            except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
                if not _may_retry(connection, request):
                    raise
                await pool.forget(connection)
                connection = None
                connection = await self._connect(pool, timeouts.get("connect"))
                self._retried += 1
                head = await connection.exchange(request, timeouts)
            parts, complete = connection.buffered_body()
        except BaseException:
            # Whatever went wrong (cancellation included), a connection in the middle of an
            # exchange can never be reused: close it and give its slot to the next waiter.
            if connection is None:
                pool.free_slot()
            else:
                await pool.discard(connection)
            raise
        stream: httpx.AsyncByteStream
        if complete:
            await pool.release(connection)
            stream = httpx.ByteStream(parts[0] if len(parts) == 1 else b"".join(parts))
        else:
            stream = _ResponseBody(pool, connection, timeouts.get("read"), parts)
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=stream,
            extensions={
                "http_version": http_version(head.http_version),
                "reason_phrase": head.reason,
            },
            request=request,
        )

    async def aclose(self) -> None:
        """Close every connection; requests still waiting or running fail. Idempotent."""
        if self._closed:
            return
        self._closed = True
        connections: list[Connection] = []
        for pool in self._pools.values():
            connections.extend(pool.close())
        self._pools.clear()
        for connection in connections:
            await connection.aclose()

    def statistics(self) -> TransportStatistics:
        """A snapshot of the pools: connections open and idle, waiters, counters.

        Costs O(endpoints); meant for tests, dashboards and debugging, not per request.
        """
        pools = self._pools.values()
        idle = sum(len(pool.idle) for pool in pools)
        return TransportStatistics(
            endpoints=len(self._pools),
            open_connections=idle + sum(len(pool.active) for pool in pools),
            idle_connections=idle,
            waiters=sum(len(pool.waiters) for pool in pools),
            connections_created=self._created,
            connections_reused=self._reused,
            requests_retried=self._retried,
        )

    def _add_pool(self, key: _Key) -> EndpointPool:
        scheme, raw_host, port = key
        if scheme == b"https":
            tls, default_port = True, 443
        elif scheme == b"http":
            tls, default_port = False, 80
        else:
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {scheme.decode('ascii', 'replace')!r}: "
                "use http:// or https://"
            )
        if not raw_host:
            raise httpx.LocalProtocolError("the request URL has no host")
        host = raw_host.decode("ascii")
        port = default_port if port is None else port
        shown = f"[{host}]" if ":" in host else host
        pool = EndpointPool(
            origin=f"{scheme.decode('ascii')}://{shown}:{port}",
            host=host,
            port=port,
            tls=tls,
            max_connections=self.max_connections_per_endpoint,
            keepalive_expiry=self.keepalive_expiry,
        )
        self._pools[key] = pool
        return pool

    def _ssl_context(self) -> ssl.SSLContext:
        context = self._tls_context
        if context is None:
            if isinstance(self.verify, ssl.SSLContext):
                context = self.verify
            else:
                context = httpx.create_ssl_context(verify=self.verify)
                context.set_alpn_protocols(["http/1.1"])
            self._tls_context = context
        return context

    async def _connect(self, pool: EndpointPool, connect_timeout: float | None) -> Connection:
        """Open a connection in a slot the caller holds (TCP, then TLS when asked)."""
        stream: trio.abc.Stream | None = None
        deadline = math.inf if connect_timeout is None else trio.current_time() + connect_timeout
        with trio.CancelScope(deadline=deadline):
            try:
                stream = await self.open_stream(pool.host, pool.port)
                if pool.tls:
                    stream = trio.SSLStream(
                        stream,
                        self._ssl_context(),
                        server_hostname=pool.host,
                        https_compatible=True,
                    )
                    await stream.do_handshake()
            except (OSError, trio.BrokenResourceError) as exc:
                if stream is not None:
                    await aclose_stream(stream)
                raise httpx.ConnectError(
                    f"could not connect to {pool.origin}: {_describe(exc)}"
                ) from exc
            except BaseException:
                if stream is not None:
                    await aclose_stream(stream)
                raise
            connection = Connection(stream)
            pool.adopt(connection)
            self._created += 1
            return connection
        raise httpx.ConnectTimeout(
            f"connecting to {pool.origin} took longer than {connect_timeout} s"
        )

    async def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_INTERVAL
        expired: list[Connection] = []
        pools = self._pools
        for key, pool in list(pools.items()):
            if pool.idle:
                expired.extend(pool.prune(now))
            if pool.is_unused():
                del pools[key]
        for connection in expired:
            await connection.aclose()


def _replayable(request: httpx.Request) -> bool:
    """Whether the retry-once rule would send ``request`` again on a connection found
    closed after the request reached it: an idempotent method with a body in memory."""
    return request.method in _IDEMPOTENT and isinstance(request.stream, httpx.ByteStream)


def _may_retry(connection: Connection, request: httpx.Request) -> bool:
    """The retry-once rule: may a request that failed on ``connection`` be sent again?

    Only on a reused connection that the peer closed before any byte of a response came,
    with a body we can send again, and only if the request provably never reached the
    server (its first write failed whole) or repeating it is harmless (an idempotent
    method): the race with a server closing an idle keep-alive connection.
    """
    if connection.exchanges == 0 or not connection.closed_by_peer:
        return False
    if connection.response_started or connection.body_started:
        return False
    return not connection.request_may_have_arrived or request.method in _IDEMPOTENT


class _ResponseBody(httpx.AsyncByteStream):
    """A response body read from its connection as the caller iterates."""

    __slots__ = ("_connection", "_parts", "_pool", "_read_timeout")

    def __init__(
        self,
        pool: EndpointPool,
        connection: Connection,
        read_timeout: float | None,
        parts: list[bytes],
    ) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._read_timeout = read_timeout
        self._parts = parts

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._parts:
            return self._parts.pop(0)
        connection = self._connection
        if connection is None:
            raise StopAsyncIteration
        try:
            chunk = await connection.receive_body_chunk(self._read_timeout)
        except BaseException:
            self._connection = None
            await self._pool.discard(connection)
            raise
        if chunk is None:
            self._connection = None
            await self._pool.release(connection)
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        """Stop reading; a connection whose body was not read to its end is closed."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            self._parts.clear()
            await self._pool.discard(connection)
