"""Responses whose body is read by the caller, chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, final

from ._errors import CloudError

if TYPE_CHECKING:
    import httpx

__all__ = ["StreamingResponse"]

_Guard = Callable[[Awaitable[bytes]], Awaitable[bytes]]


@final
class StreamingResponse:
    """A successful response (status below 300) whose body has not been read yet.

    Yielded by :meth:`Cloud.stream() <cloudkit_trio.Cloud.stream>`; valid inside its
    ``async with`` block only. Iterate the body once, with :meth:`aiter_bytes` (decoded
    ``Content-Encoding``) or :meth:`aiter_raw` (the bytes as sent), or read it whole with
    :meth:`aread`. Every read runs within the operation's deadline; a failure while
    reading raises a :class:`~cloudkit_trio.CloudError` (a
    :class:`~cloudkit_trio.NetworkError`, an :class:`~cloudkit_trio.OperationTimeout`)
    and is never retried: part of the body has already been handed over.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_failure", "_guard", "_response", "attempts", "elapsed", "url")

    _response: httpx.Response
    _guard: _Guard
    _failure: CloudError | None
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
        cls, response: httpx.Response, *, url: str, attempts: int, elapsed: float, guard: _Guard
    ) -> StreamingResponse:
        self = object.__new__(cls)
        self._response = response
        self._guard = guard
        self._failure = None
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
        """Bytes received so far, as sent (before any decoding)."""
        return self._response.num_bytes_downloaded

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body, decoded from its ``Content-Encoding``, in chunks."""
        return _Chunks(self, self._response.aiter_bytes(chunk_size))

    def aiter_raw(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body exactly as it came over the wire, in chunks."""
        return _Chunks(self, self._response.aiter_raw(chunk_size))

    async def aread(self) -> bytes:
        """The whole (decoded) body; for large bodies prefer :meth:`aiter_bytes`."""
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    def __repr__(self) -> str:
        return f"<StreamingResponse [{self.status_code}] {self.url}>"


@final
class _Chunks:
    """An iterator over body chunks whose every read goes through the runtime's guard."""

    __slots__ = ("_chunks", "_owner")

    def __init__(self, owner: StreamingResponse, chunks: AsyncIterator[bytes]) -> None:
        self._owner = owner
        self._chunks = chunks

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._owner._guard(self._chunks.__anext__())
        except CloudError as error:
            self._owner._failure = error
            raise
