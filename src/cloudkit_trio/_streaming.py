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
from typing import Final, Protocol, final

import httpx

from ._errors import CloudError, SerializationError

__all__ = ["StreamingResponse"]

_Guard = Callable[[Awaitable[bytes]], Awaitable[bytes]]


class _Decoder(Protocol):
    def decompress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or (against the RFC) raw."""

    __slots__ = ("_first", "_inner")

    def __init__(self) -> None:
        self._inner = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes, /) -> bytes:
        if self._first and data:
            self._first = False
            try:
                return self._inner.decompress(data)
            except zlib.error:
                self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush()


_DECODERS: Final[dict[str, Callable[[], _Decoder]]] = {
    "gzip": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
    "deflate": _Deflate,
}


def _decoders(headers: httpx.Headers) -> list[_Decoder]:
    """Decoders for ``Content-Encoding``, in the order to apply them (the reverse of coding)."""
    codings = [
        coding.strip().lower()
        for value in headers.get_list("content-encoding")
        for coding in value.split(",")
    ]
    decoders: list[_Decoder] = []
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        factory = _DECODERS.get(coding)
        if factory is None:
            raise SerializationError(
                f"cannot decode Content-Encoding {coding!r}; read the body with aiter_raw()"
            )
        decoders.append(factory())
    return decoders


@final
class StreamingResponse:
    """A successful response (status below 300) whose body has not been read yet.

    Yielded by :meth:`Cloud.stream() <cloudkit_trio.Cloud.stream>`; valid inside its
    ``async with`` block only. Read the body once: with :meth:`aiter_bytes` (``gzip`` and
    ``deflate`` ``Content-Encoding`` decoded), :meth:`aiter_raw` (the bytes as sent), or
    :meth:`aread` for all of it. Stopping early is fine: whatever is left is discarded (and
    its connection closed) when the block exits. Every read runs within the operation's
    deadline; a failure while reading raises a :class:`~cloudkit_trio.CloudError` (a
    :class:`~cloudkit_trio.NetworkError`, an :class:`~cloudkit_trio.OperationTimeout`, a
    :class:`~cloudkit_trio.SerializationError` for a body that cannot be decoded) and is
    never retried: part of the body has already been handed over.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_body",
        "_failure",
        "_guard",
        "_response",
        "attempts",
        "elapsed",
        "num_bytes_downloaded",
        "url",
    )

    _response: httpx.Response
    _guard: _Guard
    _failure: CloudError | None
    _body: _Body | None
    #: The URL requested, as resolved against the configured endpoint.
    url: str
    #: Attempts made, the successful one included.
    attempts: int
    #: Seconds from the first attempt to the response's headers, backoff included.
    elapsed: float
    #: Bytes of the body received so far, as sent (before any decoding).
    num_bytes_downloaded: int

    def __init__(self) -> None:
        raise TypeError("StreamingResponse objects come from Cloud.stream()")

    @classmethod
    def _create(
        cls, response: httpx.Response, *, url: str, attempts: int, elapsed: float, guard: _Guard
    ) -> StreamingResponse:
        self = object.__new__(cls)
        self._response = response
        self._guard = guard
        self._failure = None
        self._body = None
        self.url = url
        self.attempts = attempts
        self.elapsed = elapsed
        self.num_bytes_downloaded = 0
        return self

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self._response.headers

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body, decoded from its ``Content-Encoding``, in chunks of ``chunk_size``
        bytes (the last may be shorter), or as they arrive when ``chunk_size`` is None."""
        return self._open(decode=True, chunk_size=chunk_size)

    def aiter_raw(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body exactly as it came over the wire, in chunks (see :meth:`aiter_bytes`)."""
        return self._open(decode=False, chunk_size=chunk_size)

    async def aread(self) -> bytes:
        """The whole (decoded) body; for large bodies prefer :meth:`aiter_bytes`."""
        return b"".join([chunk async for chunk in self.aiter_bytes()])

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
        decoders = _decoders(self._response.headers) if decode else []
        self._body = _Body(self, decoders, chunk_size)
        return self._body

    def __repr__(self) -> str:
        return f"<StreamingResponse [{self.status_code}] {self.url}>"


@final
class _Body:
    """The one iterator over a response body; every network read goes through the guard."""

    __slots__ = ("_buffer", "_chunk_size", "_decoders", "_done", "_owner", "_pending", "_source")

    def __init__(
        self, owner: StreamingResponse, decoders: list[_Decoder], chunk_size: int | None
    ) -> None:
        self._owner = owner
        self._decoders = decoders
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._done = False
        stream = owner._response.stream
        self._source: AsyncIterator[bytes] | None
        if type(stream) is httpx.ByteStream:
            # Already in memory: no reads, no generator to leave behind.
            self._source = None
            self._pending: list[bytes] = [b"".join(stream)]
        else:
            if not isinstance(stream, httpx.AsyncByteStream):
                raise TypeError("an async transport must return an async response body")
            self._source = aiter(stream)
            self._pending = []

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._next()
        except CloudError as error:
            self._owner._failure = error
            raise

    async def _next(self) -> bytes:
        size = self._chunk_size
        buffer = self._buffer
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
            raw = await self._receive()
            data = self._decode(raw) if raw is not None else self._flush()
            if raw is None:
                self._done = True
            if size is None:
                if data:
                    return data
            else:
                buffer += data

    async def _receive(self) -> bytes | None:
        """The next raw piece of the body, or None at its end."""
        if self._pending:
            raw = self._pending.pop()
        elif self._source is None:
            return None
        else:
            try:
                raw = await self._owner._guard(self._source.__anext__())
            except StopAsyncIteration:
                self._source = None
                return None
        self._owner.num_bytes_downloaded += len(raw)
        return raw

    def _decode(self, data: bytes) -> bytes:
        try:
            for decoder in self._decoders:
                data = decoder.decompress(data)
        except zlib.error as exc:
            raise SerializationError(f"the response body could not be decoded: {exc}") from exc
        return data

    def _flush(self) -> bytes:
        data = b""
        try:
            for decoder in self._decoders:
                data = decoder.decompress(data) + decoder.flush()
        except zlib.error as exc:
            raise SerializationError(f"the response body could not be decoded: {exc}") from exc
        return data

    async def aclose(self) -> None:
        source, self._source = self._source, None
        self._done = True
        if source is not None and inspect.isasyncgen(source):
            await source.aclose()
