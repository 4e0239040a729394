"""S3: an object-storage client whose every call is an operation of a running runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, final

from .._context import Cloud
from .._errors import AlreadyExists, NotFound, SerializationError
from ._s3_names import Addressing
from ._s3_operations import ByteRange, S3Operations, object_info_from_headers
from ._sigv4 import SigV4Signer

if TYPE_CHECKING:
    from .._operation import Operation, Response
    from .._streaming import StreamingResponse
    from ._s3_records import (
        BucketSummary,
        ListPage,
        ObjectInfo,
        ObjectSummary,
        PutObjectResult,
        S3Object,
    )

__all__ = ["ObjectStream", "S3"]


def _annotate(error: NotFound | AlreadyExists, bucket: str, key: str | None) -> None:
    if error.resource_type is not None:
        return
    if key is None or error.code in (
        "NoSuchBucket",
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
    ):
        error.resource_type, error.resource_id = "bucket", bucket
    else:
        error.resource_type, error.resource_id = "object", f"{bucket}/{key}"


@final
class S3:
    """Amazon S3 (or any S3-compatible store) through a running :class:`~cloudkit_trio.Cloud`.

    Every method builds an :class:`~cloudkit_trio.Operation` with :attr:`operations` and
    runs it with ``cloud.execute``, so credentials, the endpoint's circuit breaker,
    retries, metrics and logging apply to each call. S3's XML errors arrive as the error
    tree: ``NoSuchKey`` and ``NoSuchBucket`` as :class:`~cloudkit_trio.NotFound`,
    ``BucketAlreadyOwnedByYou`` as :class:`~cloudkit_trio.AlreadyExists`, ``SlowDown`` as
    :class:`~cloudkit_trio.RateLimited`, ``SignatureDoesNotMatch`` and
    ``InvalidAccessKeyId`` as :class:`~cloudkit_trio.InvalidCredentials`, ``AccessDenied``
    as :class:`~cloudkit_trio.InsufficientPermissions`; ``NotFound`` and ``AlreadyExists``
    raised here name the bucket or object in ``resource_type`` and ``resource_id``.

    An AWS context signs every call for S3 in the client's region by default, so nothing
    more needs configuring::

        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(region="eu-west-1"))
            .build()
        )
        async with context as cloud:
            s3 = S3(cloud)                          # signs for s3 in eu-west-1
            await s3.put_object("my-bucket", "hello.txt", b"hi")
            archive = S3(cloud, region="us-west-2")  # another region, same context

    Args:
        cloud: The running runtime.
        region: The buckets' region, which every call is signed for; defaults to
            ``cloud.config.region``.
        endpoint: The service's base URL; defaults to ``cloud.config.endpoint``, and
            without one to AWS's ``https://s3.{region}.amazonaws.com``.
        addressing: Path-style or virtual-hosted URLs (see :class:`Addressing`).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_cloud", "_operations")

    def __init__(
        self,
        cloud: Cloud,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        addressing: Addressing | str = Addressing.AUTO,
    ) -> None:
        if not isinstance(cloud, Cloud):
            raise TypeError(
                f"S3 needs a running Cloud (from `async with context as cloud`), "
                f"got {type(cloud).__name__}"
            )
        self._cloud = cloud
        self._operations = S3Operations(
            region=region if region is not None else cloud.config.region,
            endpoint=endpoint if endpoint is not None else cloud.config.endpoint,
            addressing=addressing,
        )

    @staticmethod
    def signer(region: str = "us-east-1") -> SigV4Signer:
        """``SigV4Signer("s3", region)``, for a context that must sign S3 and nothing else.

        .. versionchanged:: 0.2.0
           An AWS context signs S3 calls by default; this is no longer needed.
        """
        return SigV4Signer("s3", region)

    @property
    def operations(self) -> S3Operations:
        """The operation builders and response parsers behind every method, for the
        channel API (``cloud.submit_channel()``) and for ``cloud.stream``."""
        return self._operations

    @property
    def cloud(self) -> Cloud:
        """The runtime every call goes through."""
        return self._cloud

    def __repr__(self) -> str:
        ops = self._operations
        return (
            f"S3(region={ops.region!r}, endpoint={ops.endpoint!r}, "
            f"addressing={ops.addressing.value!r})"
        )

    async def _execute(
        self,
        operation: Operation,
        timeout: float | None,  # noqa: ASYNC109 - bounds retries too, like cloud.execute
        bucket: str,
        key: str | None = None,
    ) -> Response:
        try:
            return await self._cloud.execute(operation, timeout=timeout)
        except (NotFound, AlreadyExists) as error:
            _annotate(error, bucket, key)
            raise

    # -- buckets -----------------------------------------------------------------------------

    async def create_bucket(self, bucket: str, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Create ``bucket`` in this client's region.

        Raises :class:`~cloudkit_trio.AlreadyExists` when it exists, yours
        (``BucketAlreadyOwnedByYou``) or someone else's (``BucketAlreadyExists``).
        """
        await self._execute(self._operations.create_bucket(bucket), timeout, bucket)

    async def delete_bucket(self, bucket: str, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Delete the empty ``bucket``."""
        await self._execute(self._operations.delete_bucket(bucket), timeout, bucket)

    async def bucket_exists(self, bucket: str, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Whether ``bucket`` exists (and these credentials may see it)."""
        try:
            await self._execute(self._operations.head_bucket(bucket), timeout, bucket)
        except NotFound:
            return False
        return True

    async def list_buckets(self, *, timeout: float | None = None) -> tuple[BucketSummary, ...]:  # noqa: ASYNC109
        """The buckets these credentials own."""
        response = await self._cloud.execute(self._operations.list_buckets(), timeout=timeout)
        return self._operations.parse_list_buckets(response)

    # -- objects -----------------------------------------------------------------------------

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> PutObjectResult:
        """Store ``body`` as ``key`` in ``bucket``, replacing any object of that name."""
        operation = self._operations.put_object(
            bucket, key, body, content_type=content_type, metadata=metadata, headers=headers
        )
        response = await self._execute(operation, timeout, bucket, key)
        return self._operations.parse_put_object(response, bucket=bucket, key=key)

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        byte_range: ByteRange | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> S3Object:
        """The object's metadata and whole body (or the ``byte_range`` asked for).

        The body is read into memory; for large objects use :meth:`open_object`.
        """
        operation = self._operations.get_object(bucket, key, byte_range=byte_range)
        response = await self._execute(operation, timeout, bucket, key)
        return self._operations.parse_get_object(response, bucket=bucket, key=key)

    async def head_object(
        self,
        bucket: str,
        key: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ObjectInfo:
        """The object's metadata; :class:`~cloudkit_trio.NotFound` if there is no such key.

        A ``HEAD`` answer has no body, so S3 cannot say why it failed: a missing bucket is
        also :class:`~cloudkit_trio.NotFound`, and a bad signature is
        :class:`~cloudkit_trio.InsufficientPermissions` (plain 403) rather than
        :class:`~cloudkit_trio.InvalidCredentials`.
        """
        operation = self._operations.head_object(bucket, key)
        response = await self._execute(operation, timeout, bucket, key)
        return self._operations.parse_head_object(response, bucket=bucket, key=key)

    async def delete_object(
        self,
        bucket: str,
        key: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Delete ``key``; deleting a key that does not exist is not an error in S3."""
        await self._execute(self._operations.delete_object(bucket, key), timeout, bucket, key)

    @asynccontextmanager
    async def open_object(
        self,
        bucket: str,
        key: str,
        *,
        byte_range: ByteRange | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[ObjectStream]:
        """Read an object as a stream: ``async with s3.open_object(bucket, key) as obj:``.

        The object's metadata is ``obj.info`` as soon as the block is entered; the body
        arrives with ``async for chunk in obj.aiter_bytes()`` and is never held in memory
        whole. Credentials, the breaker and retries apply until S3's headers arrive (a
        missing key raises :class:`~cloudkit_trio.NotFound` from ``async with``); a failure
        while reading the body is raised from the loop and not retried. The connection is
        released when the block exits, read to the end or not. ``timeout`` bounds the whole
        read, the body included.
        """
        operation = self._operations.get_object(bucket, key, byte_range=byte_range)
        opened = False
        try:
            async with self._cloud.stream(operation, timeout=timeout) as response:
                opened = True
                info = object_info_from_headers(
                    response.status_code, response.headers, bucket=bucket, key=key
                )
                yield ObjectStream._create(info, response)
        except (NotFound, AlreadyExists) as error:
            # Only errors about this object are annotated, not ones raised in the block.
            if not opened:
                _annotate(error, bucket, key)
            raise

    # -- listing -----------------------------------------------------------------------------

    def list_objects_v2(
        self,
        bucket: str,
        *,
        prefix: str | None = None,
        delimiter: str | None = None,
        page_size: int | None = None,
        start_after: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ListPage]:
        """The listing of ``bucket``, page by page, following S3's continuation tokens.

        ``async for page in s3.list_objects_v2("bucket", prefix="logs/"):`` — each page is
        one request (at most ``page_size`` keys, 1000 by default) made when the loop asks
        for it, so breaking out early costs nothing more. With a ``delimiter``, keys below
        it are rolled up into ``page.common_prefixes``. ``timeout`` bounds each request.
        Arguments are checked here, before anything is sent.
        """
        return _Pages(
            self,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            page_size=page_size,
            start_after=start_after,
            timeout=timeout,
        )

    def iter_objects(
        self,
        bucket: str,
        *,
        prefix: str | None = None,
        page_size: int | None = None,
        start_after: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ObjectSummary]:
        """Every object in ``bucket`` (under ``prefix``), in key order, across pages.

        Like :meth:`list_objects_v2`, a page is requested only when the loop needs it.
        """
        pages = _Pages(
            self,
            bucket,
            prefix=prefix,
            delimiter=None,
            page_size=page_size,
            start_after=start_after,
            timeout=timeout,
        )
        return _Objects(pages)


@final
class _Pages:
    """The pages of one listing; each ``__anext__`` is one ListObjectsV2 request."""

    __slots__ = ("_bucket", "_build", "_done", "_next", "_s3", "_timeout", "_token")

    def __init__(
        self,
        s3: S3,
        bucket: str,
        *,
        prefix: str | None,
        delimiter: str | None,
        page_size: int | None,
        start_after: str | None,
        timeout: float | None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._timeout = timeout
        self._token: str | None = None
        self._done = False
        self._build = partial(
            s3.operations.list_objects_v2,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            page_size=page_size,
        )
        # Built now so that bad arguments fail at the call, not at the first iteration.
        self._next: Operation = self._build(start_after=start_after)

    def __aiter__(self) -> _Pages:
        return self

    async def __anext__(self) -> ListPage:
        if self._done:
            raise StopAsyncIteration
        s3 = self._s3
        response = await s3._execute(self._next, self._timeout, self._bucket)
        page = s3.operations.parse_list_objects_v2(response)
        token = page.next_continuation_token
        if token is None:
            self._done = True
            return page
        if token == self._token:
            self._done = True
            raise SerializationError(
                "S3 answered the same continuation token twice; the listing would never end",
                service="s3",
                operation="list_objects_v2",
            )
        self._token = token
        self._next = self._build(continuation_token=token)
        return page


@final
class _Objects:
    """The objects of a listing, page after page.

    A class rather than an async generator: a caller may stop at any object, and an
    abandoned generator would be left for the garbage collector to finalize.
    """

    __slots__ = ("_current", "_pages")

    def __init__(self, pages: _Pages) -> None:
        self._pages = pages
        self._current: Iterator[ObjectSummary] = iter(())

    def __aiter__(self) -> _Objects:
        return self

    async def __anext__(self) -> ObjectSummary:
        while (summary := next(self._current, None)) is None:
            # Ends with StopAsyncIteration once the last page has been read.
            page = await self._pages.__anext__()
            self._current = iter(page.objects)
        return summary


@final
class ObjectStream:
    """An object being read from S3, yielded by :meth:`S3.open_object`.

    Valid inside its ``async with`` block only. Read the body once: ``aiter_bytes()`` (with
    any ``Content-Encoding`` the object was stored with decoded, as ``get_object`` does),
    ``aiter_raw()`` (the bytes exactly as stored) or ``aread()`` (all of it).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("info", "response")

    #: The object's metadata, from the response's headers.
    info: ObjectInfo
    #: The underlying response (status, headers, attempts).
    response: StreamingResponse

    def __init__(self) -> None:
        raise TypeError("ObjectStream objects come from S3.open_object()")

    @classmethod
    def _create(cls, info: ObjectInfo, response: StreamingResponse) -> ObjectStream:
        self = object.__new__(cls)
        self.info = info
        self.response = response
        return self

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body in chunks, any ``Content-Encoding`` decoded."""
        return self.response.aiter_bytes(chunk_size)

    def aiter_raw(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body in chunks, exactly as S3 stores it."""
        return self.response.aiter_raw(chunk_size)

    async def aread(self) -> bytes:
        """The whole body (decoded); for large objects iterate instead."""
        return await self.response.aread()

    @property
    def num_bytes_downloaded(self) -> int:
        """Bytes received so far."""
        return self.response.num_bytes_downloaded

    def __repr__(self) -> str:
        return f"<ObjectStream {self.info.bucket}/{self.info.key} ({self.info.size} bytes)>"
