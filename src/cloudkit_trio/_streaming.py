"""Responses whose body is read by the caller, chunk by chunk.

The body is iterated here rather than through httpx's ``aiter_bytes``/``aiter_raw``: those
are async generators stacked on each other, and a caller who stops half-way would leave the
inner ones to the garbage collector (Trio rightly warns about that). One class-based
iterator, closed when the ``cloud.stream()`` block exits, leaves nothing behind.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, final

import httpx

from ._errors import CloudError, ResponseTooLarge, SerializationError
from ._masking import mask_url

__all__ = ["StreamingResponse"]

_Guard = Callable[[Awaitable[bytes]], Awaitable[bytes]]


#: At most this many ``Content-Encoding`` layers are decoded (urllib3 allows as many, for
#: CVE-2025-66418); real servers send one.
MAX_ENCODING_LAYERS: Final = 5
#: Decoded bytes may be at most this many times the bytes received, once past
#: :data:`_RATIO_FLOOR`. Text, JSON and XML compress 3-20:1; deflate's own ceiling is about
#: 1032:1, which is where every single-layer bomb sits.
MAX_EXPANSION_RATIO: Final = 100
# Below this much output any ratio is allowed: small, highly repetitive bodies are harmless.
_RATIO_FLOOR: Final = 1024 * 1024
# The most one decoding step produces at once, whatever one input byte expands to.
_PIECE: Final = 64 * 1024
_GZIP_WBITS: Final = zlib.MAX_WBITS | 16


def _undecodable(reason: str) -> SerializationError:
    return SerializationError(f"the response body could not be decoded: {reason}")


class _Inflater:
    """One ``gzip`` or ``deflate`` layer, inflated at most ``limit`` bytes per call.

    zlib keeps what it has not inflated yet (``unconsumed_tail``), so neither the input it
    was given nor what that expands to is ever held beyond one step. A gzip body may be
    several members back to back (RFC 1952 §2.2); ``deflate`` may come zlib-wrapped or,
    against the RFC, raw.
    """

    __slots__ = ("_gzip", "_inner", "_pending", "_raw_tried", "_started")

    def __init__(self, *, gzip: bool) -> None:
        self._gzip = gzip
        self._inner = zlib.decompressobj(_GZIP_WBITS if gzip else zlib.MAX_WBITS)
        self._pending = b""
        self._started = False
        self._raw_tried = gzip

    def feed(self, data: bytes) -> None:
        if data:
            self._started = True
            self._pending = data

    def inflate(self, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes; ``b""`` once the input given so far is used up."""
        while self._pending:
            inner = self._inner
            if inner.eof:
                if not self._gzip:
                    # Bytes after the end of a deflate stream carry nothing.
                    self._pending = b""
                    return b""
                self._inner = inner = zlib.decompressobj(_GZIP_WBITS)
            data = self._pending
            try:
                out = inner.decompress(data, limit)
            except zlib.error as exc:
                if self._raw_tried:
                    raise _undecodable(str(exc)) from exc
                self._raw_tried = True
                self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._raw_tried = True
            self._pending = inner.unused_data if inner.eof else inner.unconsumed_tail
            if out:
                return out
        return b""

    def check_complete(self) -> None:
        """At the end of the body: a stream that started must have reached its end."""
        if self._started and not self._inner.eof:
            raise _undecodable(
                "it ends before its compressed data does (truncated, or not "
                f"{'gzip' if self._gzip else 'deflate'} at all)"
            )


_CODINGS: Final[dict[str, bool]] = {"gzip": True, "x-gzip": True, "deflate": False}


def _inflaters(headers: httpx.Headers, *, strict: bool = True) -> list[_Inflater]:
    """Decoders for ``Content-Encoding``, in the order to apply them (the reverse of coding).

    A coding we cannot decode raises, or without ``strict`` leaves the body as sent.
    """
    codings = [
        coding
        for value in headers.get_list("content-encoding")
        for raw in value.split(",")
        if (coding := raw.strip().lower()) not in ("", "identity")
    ]
    if len(codings) > MAX_ENCODING_LAYERS:
        raise SerializationError(
            f"the response has {len(codings)} Content-Encoding layers, more than the "
            f"{MAX_ENCODING_LAYERS} decoded; read the body with aiter_raw()"
        )
    inflaters: list[_Inflater] = []
    for coding in reversed(codings):
        gzip = _CODINGS.get(coding)
        if gzip is None:
            if not strict:
                return []
            raise SerializationError(
                f"cannot decode Content-Encoding {coding!r}; read the body with aiter_raw()"
            )
        inflaters.append(_Inflater(gzip=gzip))
    return inflaters


class _Decoding:
    """The body's decoders in a chain that is pulled from, one bounded piece at a time.

    With no decoders it passes the body through as it arrived. It refuses output that
    grows past :data:`MAX_EXPANSION_RATIO` times the input, and a stream that stops short.
    """

    __slots__ = ("_layers", "_pending", "_produced", "_received")

    def __init__(self, layers: list[_Inflater]) -> None:
        self._layers = layers
        self._pending = b""
        self._received = 0
        self._produced = 0

    def feed(self, raw: bytes) -> None:
        """More of the body as received; call only when :meth:`pull` returned ``b""``."""
        self._received += len(raw)
        if self._layers:
            self._layers[0].feed(raw)
        else:
            self._pending = raw

    def pull(self) -> bytes:
        """The next decoded piece (at most 64 KiB when decoding); ``b""``: feed more."""
        if not self._layers:
            data, self._pending = self._pending, b""
            return data
        data = self._pull(len(self._layers) - 1)
        self._produced += len(data)
        if self._produced > _RATIO_FLOOR and self._produced > MAX_EXPANSION_RATIO * self._received:
            raise SerializationError(
                f"the response body expands more than {MAX_EXPANSION_RATIO}:1 when decoded "
                f"({self._received} bytes gave {self._produced}), a decompression bomb; "
                "read it with aiter_raw() if that is expected"
            )
        return data

    def _pull(self, index: int) -> bytes:
        layer = self._layers[index]
        while True:
            data = layer.inflate(_PIECE)
            if data or index == 0:
                return data
            upstream = self._pull(index - 1)
            if not upstream:
                return b""
            layer.feed(upstream)

    def finish(self) -> None:
        """The body has ended (and :meth:`pull` returned ``b""``): was it whole?"""
        for layer in self._layers:
            layer.check_complete()


@final
class StreamingResponse:
    """A successful response (status below 300) whose body has not been read yet.

    Yielded by :meth:`Cloud.stream() <cloudkit_trio.Cloud.stream>`; valid inside its
    ``async with`` block only. Read the body once: with :meth:`aiter_bytes` (``gzip`` and
    ``deflate`` ``Content-Encoding`` decoded), :meth:`aiter_raw` (the bytes as sent), or
    :meth:`aread` for all of it. Stopping early is fine: whatever is left is discarded (and
    its connection closed) when the block exits. Every read runs within the operation's
    deadline, or ``CloudConfig.stream_timeout`` from the headers on when it has none; a
    failure while reading raises a :class:`~cloudkit_trio.CloudError` (a
    :class:`~cloudkit_trio.NetworkError`, an :class:`~cloudkit_trio.OperationTimeout`, a
    :class:`~cloudkit_trio.SerializationError` for a body that cannot be decoded) and is
    never retried: part of the body has already been handed over.

    Decoding is bounded: one network read yields at most 64 KiB of decoded pieces at a
    time, however far it expands; more than 5 ``Content-Encoding`` layers, output above
    100 times the bytes received (past the first MiB), a body that is not the coding it
    claims, or one that ends before its compressed data does, raise
    :class:`~cloudkit_trio.SerializationError`.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_body",
        "_guard",
        "_max_size",
        "_response",
        "attempts",
        "elapsed",
        "url",
    )

    _response: httpx.Response
    _guard: _Guard
    _max_size: int
    _body: _Body | None
    #: The URL requested, as resolved against the configured endpoint.
    url: str
    #: Attempts made, the successful one included.
    attempts: int
    #: Seconds from the first attempt to the response's headers, backoff included.
    elapsed: float

    def __init__(self) -> None:
        raise TypeError("StreamingResponse objects come from Cloud.stream()")

    @classmethod
    def _create(
        cls,
        response: httpx.Response,
        *,
        url: str,
        attempts: int,
        elapsed: float,
        guard: _Guard,
        max_size: int,
    ) -> StreamingResponse:
        self = object.__new__(cls)
        self._response = response
        self._guard = guard
        self._max_size = max_size
        self._body = None
        self.url = url
        self.attempts = attempts
        self.elapsed = elapsed
        return self

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self._response.headers

    @property
    def num_bytes_downloaded(self) -> int:
        """Bytes of the body received so far, as sent (before any decoding)."""
        return 0 if self._body is None else self._body.received

    @property
    def _failure(self) -> CloudError | None:
        """The error that reading the body ended with, if it did."""
        return None if self._body is None else self._body.failure

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body, decoded from its ``Content-Encoding``, in chunks of ``chunk_size``
        bytes (the last may be shorter), or as they arrive when ``chunk_size`` is None."""
        return self._open(decode=True, chunk_size=chunk_size)

    def aiter_raw(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body exactly as it came over the wire, in chunks (see :meth:`aiter_bytes`)."""
        return self._open(decode=False, chunk_size=chunk_size)

    async def aread(self) -> bytes:
        """The whole (decoded) body, held in memory: at most
        ``CloudConfig.max_response_size`` bytes, past which it raises
        :class:`~cloudkit_trio.ResponseTooLarge`. For large bodies use :meth:`aiter_bytes`."""
        body = self._open(decode=True, chunk_size=None)
        try:
            return await body.read_all(self._max_size, self._response.headers)
        except CloudError as error:
            body.failure = error
            raise

    async def _aclose(self) -> None:
        """Release the body (called by the runtime when the block exits)."""
        body = self._body
        if body is not None:
            await body.aclose()
        await self._response.aclose()

    def _open(self, *, decode: bool, chunk_size: int | None) -> _Body:
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        if self._body is not None:
            raise httpx.StreamConsumed()
        layers = _inflaters(self._response.headers) if decode else []
        self._body = _Body(self._response.stream, _Decoding(layers), chunk_size, self._guard)
        return self._body

    def __repr__(self) -> str:
        return f"<StreamingResponse [{self.status_code}] {mask_url(self.url)}>"


async def read_body(response: httpx.Response, *, limit: int, truncate: bool) -> bytes:
    """The whole decoded body of ``response``, holding at most ``limit`` bytes; closes it.

    Past ``limit`` it raises :class:`ResponseTooLarge`, or with ``truncate`` returns the
    first ``limit`` bytes (error bodies: the status says more than their end). A body in a
    coding we do not decode comes back as sent, as httpx would return it.
    """
    headers = response.headers
    try:
        layers = _inflaters(headers, strict=False)
        body = _Body(response.stream, _Decoding(layers), None, _unguarded)
        try:
            return await body.read_all(limit, headers, truncate=truncate)
        finally:
            await body.aclose()
    finally:
        await response.aclose()


async def _unguarded(read: Awaitable[bytes]) -> bytes:
    return await read


def _declared_length(headers: httpx.Headers) -> int | None:
    value = headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def _too_large(limit: int, declared: int | None) -> ResponseTooLarge:
    size = "" if declared is None else f" (it declares {declared} bytes)"
    return ResponseTooLarge(
        f"the response body is larger than max_response_size={limit} bytes{size}; "
        "raise CloudConfig.max_response_size, or read it in pieces with Cloud.stream()",
        limit=limit,
        size=declared,
    )


@final
class _Body:
    """The one iterator over a response body; every network read goes through the guard."""

    __slots__ = (
        "_buffer",
        "_chunk_size",
        "_decoding",
        "_done",
        "_guard",
        "_pending",
        "_source",
        "_stream",
        "failure",
        "received",
    )

    def __init__(
        self,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        decoding: _Decoding,
        chunk_size: int | None,
        guard: _Guard,
    ) -> None:
        self._stream = stream
        self._decoding = decoding
        self._chunk_size = chunk_size
        self._guard = guard
        self._buffer = bytearray()
        self._done = False
        #: Bytes received so far, as sent.
        self.received = 0
        #: The error reading ended with, if it did.
        self.failure: CloudError | None = None
        self._source: AsyncIterator[bytes] | None
        if type(stream) is httpx.ByteStream:
            # Already in memory: no reads, no generator to leave behind.
            self._source = None
            self._pending: bytes | None = b"".join(stream)
        else:
            if not isinstance(stream, httpx.AsyncByteStream):
                raise TypeError("an async transport must return an async response body")
            self._source = aiter(stream)
            self._pending = None

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._next()
        except CloudError as error:
            self.failure = error
            raise

    async def read_all(
        self, limit: int, headers: httpx.Headers, *, truncate: bool = False
    ) -> bytes:
        """Everything left, decoded, holding at most ``limit`` bytes (see :func:`read_body`)."""
        declared = _declared_length(headers)
        if (
            not truncate
            and declared is not None
            and declared > limit
            and "content-encoding" not in headers
        ):
            raise _too_large(limit, declared)
        content = bytearray()
        async for piece in self:
            room = limit - len(content)
            if len(piece) > room:
                if not truncate:
                    raise _too_large(limit, declared)
                content += piece[:room]
                break
            content += piece
        return bytes(content)

    async def _next(self) -> bytes:
        size = self._chunk_size
        buffer = self._buffer
        decoding = self._decoding
        while True:
            if size is not None and len(buffer) >= size:
                chunk = bytes(buffer[:size])
                del buffer[:size]
                return chunk
            if self._done:
                if buffer:
                    chunk = bytes(buffer)
                    buffer.clear()
                    return chunk
                raise StopAsyncIteration
            data = decoding.pull()
            if data:
                if size is None:
                    return data
                buffer += data
                continue
            raw = await self._receive()
            if raw is None:
                decoding.finish()
                self._done = True
            else:
                decoding.feed(raw)

    async def _receive(self) -> bytes | None:
        """The next raw piece of the body, or None at its end."""
        if self._pending is not None:
            raw, self._pending = self._pending, None
        elif self._source is None:
            return None
        else:
            try:
                raw = await self._guard(self._source.__anext__())
            except StopAsyncIteration:
                self._source = None
                return None
        self.received += len(raw)
        return raw

    async def aclose(self) -> None:
        source, self._source = self._source, None
        self._done = True
        if source is not None and inspect.isasyncgen(source):
            await source.aclose()
            # httpx wraps a generator body (content=agen()) in a generator of its own, and
            # closing that one leaves the user's to the garbage collector.
            inner = getattr(self._stream, "_stream", None)
            if inspect.isasyncgen(inner):
                await inner.aclose()
