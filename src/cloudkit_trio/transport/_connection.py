"""One HTTP/1.1 connection: h11's state machine driven over a Trio stream.

A :class:`Connection` sends one request and reads its response at a time; the pool in
``_pool.py`` decides when it is reused. Every failure leaves here as one of httpx's own
exceptions, so the single mapping in ``_classify.py`` turns it into the error tree. Each
exchange also records what it proves about the request's fate (did any byte of it leave
this host, did any byte of a response arrive, did the peer close the connection), which is
what the retry-once rule of the transport reads.

On a plain TCP connection (not TLS, not a custom stream) on a Unix-like system, the
request and the response head go through the socket's file descriptor directly, with
Trio's :func:`trio.lowlevel.wait_readable` / :func:`~trio.lowlevel.wait_writable` for the
waiting: the generic stream layers cost more per request than h11's parsing. Everything
else (TLS, custom streams, response bodies) uses the stream.
"""

from __future__ import annotations

import math
import os
import re
import ssl
import sys
from typing import Final, cast

import attrs
import h11
import httpx
import trio

from .._masking import mask_text
from ._classify import describe_refused_header

__all__ = ["Connection", "aclose_stream", "http_version", "peer_closed"]

READ_SIZE: Final = 64 * 1024
# Through a stream we cannot tell how much of a failed write went out. A first write no
# larger than this lands in an idle socket's empty send buffer whole or not at all (Linux
# never shrinks a TCP send buffer below 4,608 bytes), so when it fails nothing left.
_ATOMIC_WRITE: Final = 4096
# h11's default (16 KiB) is tight for response heads full of cookies or long signed URLs.
_MAX_HEAD: Final = 100 * 1024
# A connection whose early reads found nothing tries one again after this many reads.
_RETRY_EARLY_EVERY: Final = 8
_END: Final = h11.EndOfMessage()
_HTTP_11: Final = b"HTTP/1.1"
_HOST: Final = b"host"
_INF: Final = math.inf
# os.read/os.write work on sockets everywhere but Windows.
_DIRECT_IO: Final = sys.platform != "win32"
_BROKEN: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def peer_closed(exc: BaseException) -> bool:
    """Whether ``exc`` means the peer closed or reset the connection (not a TLS or OS fault)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, ConnectionError | ssl.SSLEOFError):
            return True
        seen += 1
        current = current.__cause__ or current.__context__
    return False


async def aclose_stream(stream: trio.abc.Stream) -> None:
    """Close ``stream`` at once, without a graceful TLS goodbye, even inside a cancelled scope."""
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(stream)


def http_version(raw: bytes) -> bytes:
    """httpx's ``http_version`` extension for h11's version string."""
    return _HTTP_11 if raw == b"1.1" else b"HTTP/" + raw


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        return stream.socket
    return None


def _deadline(seconds: float | None) -> float:
    return _INF if seconds is None else trio.current_time() + seconds


def _with_host(headers: list[tuple[bytes, bytes]], url: httpx.URL) -> list[tuple[bytes, bytes]]:
    for name, _value in headers:
        if name.lower() == _HOST:
            return headers
    host = url.raw_host
    if b":" in host:
        host = b"[" + host + b"]"
    if url.port is not None:
        host += b":%d" % url.port
    return [(b"Host", host), *headers]


@attrs.define(eq=False)
class Connection:
    """An HTTP/1.1 client connection and what its current exchange proved so far."""

    stream: trio.abc.Stream
    #: The raw socket when the stream has one: a cheap liveness probe and a close that
    #: never blocks. None for custom streams that are not socket streams.
    socket: trio.socket.SocketType | None = attrs.field(init=False)
    #: Whether requests and response heads go through the socket's descriptor directly.
    direct: bool = attrs.field(init=False)
    protocol: h11.Connection = attrs.field(
        init=False, factory=lambda: h11.Connection(h11.CLIENT, _MAX_HEAD)
    )
    #: Completed request/response cycles; above zero the connection counts as reused.
    exchanges: int = attrs.field(init=False, default=0)
    #: ``trio.current_time()`` when it was last returned to the pool.
    idle_since: float = attrs.field(init=False, default=0.0)
    #: Some byte of the current request may have reached the peer.
    request_may_have_arrived: bool = attrs.field(init=False, default=False)
    #: A streamed (non-replayable) request body has started to be consumed.
    body_started: bool = attrs.field(init=False, default=False)
    #: Some byte of a response arrived during the current exchange.
    response_started: bool = attrs.field(init=False, default=False)
    #: The current exchange failed because the peer closed or reset the connection.
    closed_by_peer: bool = attrs.field(init=False, default=False)
    # Whether the last early read of a response found it; the reads of responses so far.
    _early: bool = attrs.field(init=False, default=False)
    _reads: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.socket = _socket_of(self.stream)
        self.direct = _DIRECT_IO and isinstance(self.stream, trio.SocketStream)

    def is_alive(self) -> bool:
        """Whether an idle connection still looks usable.

        An idle HTTP/1.1 connection has nothing to read: readable means the peer closed it
        (EOF or reset) or sent bytes nobody asked for. Either way it must not be reused.
        """
        sock = self.socket
        return sock is None or not sock.is_readable()

    def is_reusable(self) -> bool:
        """Whether both sides finished the exchange cleanly and may start another one."""
        h = self.protocol
        # Bytes after the end of the response belong to no request: the connection is
        # out of step with the server.
        return h.our_state is h11.DONE and h.their_state is h11.DONE and not h.trailing_data[0]

    def finish_cycle(self) -> None:
        """Reset the per-exchange state after a completed, reusable exchange."""
        self.protocol.start_next_cycle()
        self.exchanges += 1
        self.request_may_have_arrived = False
        self.body_started = False
        self.response_started = False

    async def aclose(self) -> None:
        """Close the connection immediately; never blocks, also when cancelled."""
        sock = self.socket
        if sock is not None:
            # Closing the descriptor is synchronous and final (Trio wakes any task waiting
            # on it); a TLS goodbye is not worth waiting for on a dropped connection.
            sock.close()
        else:
            await aclose_stream(self.stream)

    # -- the exchange ----------------------------------------------------------------------

    async def exchange(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> h11.Response:
        """Send ``request`` and read the head of its response.

        Raises httpx's exceptions: ``WriteTimeout``/``ReadTimeout`` when one network write
        or read waits longer than its timeout, ``WriteError``/``ReadError`` when the
        connection breaks, ``RemoteProtocolError`` when the server breaks HTTP or closes
        without answering, ``LocalProtocolError`` when the request is not valid HTTP.
        """
        try:
            await self._send_request(request, timeouts.get("write"))
        except httpx.WriteError:
            if not self.request_may_have_arrived:
                raise
            # The server may have answered early and closed (a 413 while we upload): its
            # response is worth more than our write error.
            try:
                return await self._receive_head(timeouts.get("read"))
            except (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError):
                pass
            raise
        return await self._receive_head(timeouts.get("read"))

    async def _send_request(self, request: httpx.Request, write_timeout: float | None) -> None:
        h = self.protocol
        headers = request.headers.raw
        if not headers or headers[0][0].lower() != _HOST:
            headers = _with_host(headers, request.url)
        try:
            head = h.send(
                h11.Request(
                    method=request.method.encode("ascii"),
                    target=request.url.raw_path,
                    headers=headers,
                )
            )
            stream = request.stream
            if isinstance(stream, httpx.ByteStream):
                body = b"".join(stream)
                if body:
                    data = h.send(h11.Data(data=body))
                    end = h.send(_END)
                    if len(head) + len(data) + len(end) <= _ATOMIC_WRITE:
                        await self._write(head + data + end, write_timeout)
                    else:
                        await self._write(head, write_timeout)
                        await self._write(data, write_timeout)
                        if end:
                            await self._write(end, write_timeout)
                else:
                    await self._write(head + h.send(_END), write_timeout)
                return
            if not isinstance(stream, httpx.AsyncByteStream):
                raise TypeError("an async transport needs an async request body")
            await self._write(head, write_timeout)
            self.body_started = True
            chunks = aiter(stream)
            try:
                async for chunk in chunks:
                    if chunk:
                        await self._write(h.send(h11.Data(data=chunk)), write_timeout)
            finally:
                # httpx wraps bodies in async generators: finalize the one we started now,
                # not whenever the garbage collector gets to it.
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            end = h.send(_END)
            if end:
                await self._write(end, write_timeout)
        except h11.LocalProtocolError as exc:
            # h11 quotes the whole value it refuses, a token included: say which header it
            # was instead, and keep h11's message out of the chain.
            raise httpx.LocalProtocolError(_refusal(headers, exc)) from None

    def _write_error(self, exc: BaseException) -> httpx.WriteError:
        # Whatever an early response says, this connection cannot carry another request.
        self.protocol.send_failed()
        self.closed_by_peer = peer_closed(exc)
        return httpx.WriteError(f"the connection broke while sending: {exc!r}")

    async def _write(self, data: bytes, write_timeout: float | None) -> None:
        if not self.direct:
            await self._write_stream(data, write_timeout)
            return
        sock = cast("trio.socket.SocketType", self.socket)
        try:
            sent = os.write(sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            # A failed first write() sent nothing at all.
            raise self._write_error(exc) from exc
        if sent:
            self.request_may_have_arrived = True
        if sent == len(data):
            return
        # The send buffer is full: wait for room, then write the rest.
        remaining = memoryview(data)[sent:]
        with trio.CancelScope(deadline=_deadline(write_timeout)) as scope:
            while remaining:
                try:
                    await trio.lowlevel.wait_writable(sock)
                    sent = os.write(sock.fileno(), remaining)
                except BlockingIOError:
                    continue
                except _BROKEN as exc:
                    raise self._write_error(exc) from exc
                self.request_may_have_arrived = True
                remaining = remaining[sent:]
        if scope.cancelled_caught:
            self.protocol.send_failed()
            raise httpx.WriteTimeout(f"sending the request took longer than {write_timeout} s")

    async def _write_stream(self, data: bytes, write_timeout: float | None) -> None:
        if len(data) > _ATOMIC_WRITE:
            self.request_may_have_arrived = True
        with trio.CancelScope(deadline=_deadline(write_timeout)) as scope:
            try:
                await self.stream.send_all(data)
            except _BROKEN as exc:
                raise self._write_error(exc) from exc
        if scope.cancelled_caught:
            self.protocol.send_failed()
            raise httpx.WriteTimeout(f"sending the request took longer than {write_timeout} s")
        self.request_may_have_arrived = True

    async def _receive(self, read_timeout: float | None, *, wait_first: bool) -> bytes:
        """Bytes from the peer (``b""`` at EOF), within ``read_timeout``."""
        deadline = _deadline(read_timeout)
        if deadline >= trio.current_effective_deadline():
            # An enclosing scope ends no later (the runtime's attempt timeout does, with
            # the default settings): it bounds this read already, and a cancel scope of
            # our own per read would cost more than the read. Its cancellation then ends
            # the read instead of a ReadTimeout.
            data = await self._read_some(wait_first=wait_first)
        else:
            with trio.CancelScope(deadline=deadline) as scope:
                data = await self._read_some(wait_first=wait_first)
            if scope.cancelled_caught:
                raise httpx.ReadTimeout(f"no response data within {read_timeout} s")
        if data:
            self.response_started = True
        return data

    async def _read_some(self, *, wait_first: bool) -> bytes:
        try:
            if wait_first and self.direct:
                sock = cast("trio.socket.SocketType", self.socket)
                self._reads += 1
                if self._early or not self._reads % _RETRY_EARLY_EVERY:
                    # When other tasks run in between (many requests in flight), the
                    # answer has usually come by the time this one is back, and a read
                    # that finds it costs far less than waiting for readiness (an epoll
                    # registration, its event, a wake-up). Learned per connection: when
                    # it finds nothing, the next reads wait first, and it is tried again
                    # every _RETRY_EARLY_EVERY reads.
                    await trio.lowlevel.checkpoint()
                    try:
                        data = os.read(sock.fileno(), READ_SIZE)
                    except BlockingIOError:
                        self._early = False
                    else:
                        self._early = True
                        return data
                # Right after a request the answer is usually not there yet: wait, then
                # read once, instead of failing a read first. Waiting is a checkpoint.
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        return os.read(sock.fileno(), READ_SIZE)
                    except BlockingIOError:
                        continue
            return cast("bytes", await self.stream.receive_some(READ_SIZE))
        except _BROKEN as exc:
            self.closed_by_peer = peer_closed(exc)
            raise httpx.ReadError(f"the connection broke while reading: {exc!r}") from exc

    async def _receive_head(self, read_timeout: float | None) -> h11.Response:
        # h11 holds no bytes between exchanges (is_reusable makes sure), so the first step
        # is always to wait for the server.
        h = self.protocol
        event: object = h11.NEED_DATA
        try:
            while True:
                if event is h11.NEED_DATA:
                    data = await self._receive(read_timeout, wait_first=True)
                    if not data and not self.response_started:
                        self.closed_by_peer = True
                        raise httpx.RemoteProtocolError(
                            "the server closed the connection without sending a response"
                        )
                    h.receive_data(data)
                elif type(event) is h11.Response:
                    return event
                elif type(event) is not h11.InformationalResponse:
                    # PAUSED after a 101 (we never ask to switch protocols) or anything else
                    # a client cannot receive before a response head.
                    raise httpx.RemoteProtocolError(f"unexpected {event!r} before the response")
                event = h.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc

    def buffered_body(self) -> tuple[list[bytes], bool]:
        """The body parts already received, without waiting; True once the body is complete.

        Small responses usually arrive in the same read as their head: taking them out at
        once lets the connection go back to the pool before the caller even reads.
        """
        h = self.protocol
        parts: list[bytes] = []
        try:
            while True:
                event = h.next_event()
                if type(event) is h11.Data:
                    parts.append(bytes(event.data))
                elif type(event) is h11.EndOfMessage:
                    return parts, True
                elif event is h11.NEED_DATA:
                    return parts, False
                else:
                    raise httpx.RemoteProtocolError(f"unexpected {event!r} in a response body")
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc

    async def receive_body_chunk(self, read_timeout: float | None) -> bytes | None:
        """The next piece of the response body, or None at its end."""
        h = self.protocol
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    h.receive_data(await self._receive(read_timeout, wait_first=False))
                elif type(event) is h11.Data:
                    return bytes(event.data)
                elif type(event) is h11.EndOfMessage:
                    return None
                else:
                    raise httpx.RemoteProtocolError(f"unexpected {event!r} in a response body")
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc


_CONTROL_BYTES: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _refusal(headers: list[tuple[bytes, bytes]], exc: h11.LocalProtocolError) -> str:
    """Why h11 refused a request, without the secret it may quote (only on that path)."""
    for name, value in headers:
        if _CONTROL_BYTES.search(value):
            return describe_refused_header(name.decode("latin-1"), value.decode("latin-1"))
    return mask_text(str(exc))
