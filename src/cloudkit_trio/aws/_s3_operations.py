"""S3 calls as :class:`~cloudkit_trio.Operation` values, and their answers as records.

Building an operation does no I/O, so the same operations can be awaited with
``cloud.execute``, sent as ``Submission`` messages through ``cloud.submit_channel()``, or
streamed with ``cloud.stream``; the parsers turn the resulting ``Response`` (for example a
``Reply.response``) into the records of ``_s3_records``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from .._errors import ConfigError, SerializationError
from .._operation import Operation
from .._provider import validate_region_code
from ._s3_names import Addressing, S3Endpoint, check_bucket_name, check_key, encode_query
from ._s3_records import BucketSummary, ListPage, ObjectInfo, PutObjectResult, S3Object
from ._s3_xml import (
    create_bucket_configuration,
    parse_bucket_list,
    parse_list_page,
    unquote_etag,
)

if TYPE_CHECKING:
    import httpx

    from .._operation import Response

__all__ = ["ByteRange", "S3Operations", "object_info_from_headers"]

SERVICE: Final = "s3"
_MAX_PAGE_SIZE: Final = 1000
_META_PREFIX: Final = "x-amz-meta-"
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTENT_RANGE: Final = re.compile(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", re.IGNORECASE)

#: ``(first, last)`` byte offsets, both included; ``last=None`` reads to the end.
ByteRange = tuple[int, int | None]


def _header_value(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not (value.isascii() and value.isprintable()):
        raise ConfigError(
            f"{field} must be printable ASCII text to be sent as an HTTP header",
            field=field,
            value=value if isinstance(value, str) else type(value).__name__,
        )
    return value


def _metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"metadata names must be HTTP header-name characters, got {name!r}",
                field="metadata",
                value=name,
            )
        headers[_META_PREFIX + name.lower()] = _header_value(value, field=f"metadata[{name!r}]")
    return headers


def _offset(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _range_header(byte_range: ByteRange) -> str:
    first: int | None = None
    last: int | None = None
    valid = isinstance(byte_range, tuple) and len(byte_range) == 2
    if valid:
        first, last = _offset(byte_range[0]), _offset(byte_range[1])
        valid = first is not None and (
            byte_range[1] is None or (last is not None and last >= first)
        )
    if not valid:
        raise ConfigError(
            "byte_range must be (first, last) offsets with 0 <= first <= last, or (first, None) "
            f"to read to the end; got {byte_range!r}",
            field="byte_range",
            value=byte_range,
        )
    return f"bytes={first}-{'' if last is None else last}"


def _http_date(value: str | None, *, what: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise SerializationError(f"{what} is not an HTTP date: {value!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _object_size(status: int, headers: httpx.Headers, body_length: int | None) -> int:
    if status == 206:
        match = _CONTENT_RANGE.fullmatch((headers.get("content-range") or "").strip())
        if match:
            return int(match.group(1))
    length = headers.get("content-length")
    if length is not None and length.strip().isascii() and length.strip().isdigit():
        return int(length)
    if body_length is not None:
        return body_length
    raise SerializationError("the response says neither Content-Length nor Content-Range")


def object_info_from_headers(
    status: int,
    headers: httpx.Headers,
    *,
    bucket: str,
    key: str,
    body_length: int | None = None,
) -> ObjectInfo:
    """An :class:`ObjectInfo` from the headers of a ``HEAD`` or ``GET`` on an object."""
    metadata = {
        name[len(_META_PREFIX) :]: value
        for name, value in headers.items()
        if name.startswith(_META_PREFIX)
    }
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=_object_size(status, headers, body_length),
        etag=unquote_etag(headers.get("etag")),
        last_modified=_http_date(headers.get("last-modified"), what="Last-Modified"),
        content_type=headers.get("content-type"),
        metadata=metadata,
        version_id=headers.get("x-amz-version-id"),
    )


def _page_size(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_PAGE_SIZE:
        raise ConfigError(
            f"page_size must be an int from 1 to {_MAX_PAGE_SIZE}, got {value!r}",
            field="page_size",
            value=value,
        )
    return value


def _optional_text(value: str | None, *, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"{field} must be a str or None, got {type(value).__name__}",
            field=field,
            value=type(value).__name__,
        )
    return value


def _default_endpoint(region: str) -> str:
    return f"https://s3.{region}.amazonaws.com"


@attrs.frozen(init=False)
class S3Operations:
    """Builds the :class:`~cloudkit_trio.Operation` for each S3 call, and parses the answers.

    Every builder validates its arguments (bucket names, keys, metadata) and raises
    :class:`~cloudkit_trio.ConfigError` for bad ones; it does no I/O. Use the operations
    with any of the runtime's entry points::

        operation = s3.operations.put_object("photos", "2024/ü 1.jpg", data)
        await submit.send(ck.Submission(operation, reply_to=replies, correlation_id=key))
        ...
        result = s3.operations.parse_put_object(reply.result(), bucket="photos", key=key)

    Operations carry absolute URLs (``service="s3"``, ``name="put_object"``, ...). PUT, GET,
    HEAD and DELETE calls are idempotent, so the runtime may retry them after any retryable
    failure. To bound a single operation, ``attrs.evolve(operation, timeout=5.0)``.

    Args:
        region: The bucket's region; it goes into the default endpoint and into
            ``create_bucket``'s location constraint; every operation carries it as
            ``Operation.region``, so an AWS context signs it for this region.
        endpoint: The S3 service's base URL, such as ``http://127.0.0.1:9000`` for MinIO
            or moto; ``None`` means AWS's ``https://s3.{region}.amazonaws.com``.
        addressing: Where bucket names go in URLs (see :class:`Addressing`).

    .. versionadded:: 0.1.0
    """

    region: str
    endpoint: str
    addressing: Addressing
    _endpoint: S3Endpoint = attrs.field(alias="parsed", repr=False, eq=False)

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint: str | None = None,
        addressing: Addressing | str = Addressing.AUTO,
    ) -> None:
        validate_region_code(region)
        mode = Addressing.parse(addressing)
        url = endpoint if endpoint is not None else _default_endpoint(region)
        self.__attrs_init__(
            region=region,
            endpoint=url,
            addressing=mode,
            parsed=S3Endpoint.parse(url, mode),
        )

    # -- buckets -----------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> Operation:
        """``PUT /bucket``, with the location constraint for any region but us-east-1."""
        return self._operation(
            "create_bucket", "PUT", self._bucket_url(bucket), body=self._location()
        )

    def delete_bucket(self, bucket: str) -> Operation:
        """``DELETE /bucket``; S3 refuses with ``BucketNotEmpty`` unless it is empty."""
        return self._operation("delete_bucket", "DELETE", self._bucket_url(bucket))

    def head_bucket(self, bucket: str) -> Operation:
        """``HEAD /bucket``: whether the bucket exists and may be accessed."""
        return self._operation("head_bucket", "HEAD", self._bucket_url(bucket))

    def list_buckets(self) -> Operation:
        """``GET /`` on the endpoint: the caller's buckets."""
        return self._operation("list_buckets", "GET", self._endpoint.url)

    # -- objects -----------------------------------------------------------------------------

    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Operation:
        """``PUT /bucket/key`` with ``body``.

        ``metadata`` becomes ``x-amz-meta-*`` headers (names are lowercased by S3; values
        must be printable ASCII). ``headers`` adds any other request headers
        (``Cache-Control``, ``x-amz-server-side-encryption``, ...).
        """
        if not isinstance(body, bytes | bytearray | memoryview):
            raise ConfigError(
                f"body must be bytes, got {type(body).__name__}",
                field="body",
                value=type(body).__name__,
            )
        extra: dict[str, str] = {}
        for name, value in (headers or {}).items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ConfigError(
                    f"header names must be HTTP tokens, got {name!r}", field="headers", value=name
                )
            extra[name] = _header_value(value, field=f"headers[{name!r}]")
        if content_type is not None:
            extra["Content-Type"] = _header_value(content_type, field="content_type")
        if metadata:
            extra.update(_metadata_headers(metadata))
        return self._operation(
            "put_object", "PUT", self._object_url(bucket, key), body=bytes(body), headers=extra
        )

    def get_object(
        self, bucket: str, key: str, *, byte_range: ByteRange | None = None
    ) -> Operation:
        """``GET /bucket/key``; ``byte_range=(first, last)`` asks for part of it."""
        headers = {} if byte_range is None else {"Range": _range_header(byte_range)}
        return self._operation("get_object", "GET", self._object_url(bucket, key), headers=headers)

    def head_object(self, bucket: str, key: str) -> Operation:
        """``HEAD /bucket/key``: the object's metadata without its body."""
        return self._operation("head_object", "HEAD", self._object_url(bucket, key))

    def delete_object(self, bucket: str, key: str) -> Operation:
        """``DELETE /bucket/key``; deleting a key that does not exist succeeds."""
        return self._operation("delete_object", "DELETE", self._object_url(bucket, key))

    def list_objects_v2(
        self,
        bucket: str,
        *,
        prefix: str | None = None,
        delimiter: str | None = None,
        page_size: int | None = None,
        start_after: str | None = None,
        continuation_token: str | None = None,
    ) -> Operation:
        """``GET /bucket?list-type=2``: one page of the keys in ``bucket``.

        ``page_size`` is at most 1000 (S3's default and maximum). Keys come back
        URL-encoded (``encoding-type=url``), so that any key survives XML; the parser
        decodes them.
        """
        check_bucket_name(bucket)
        query: list[tuple[str, str | None]] = [("list-type", "2"), ("encoding-type", "url")]
        for name, value in (
            ("prefix", _optional_text(prefix, field="prefix")),
            ("delimiter", _optional_text(delimiter, field="delimiter")),
            ("start-after", _optional_text(start_after, field="start_after")),
            ("continuation-token", _optional_text(continuation_token, field="continuation_token")),
        ):
            if value:
                query.append((name, value))
        size = _page_size(page_size)
        if size is not None:
            query.append(("max-keys", str(size)))
        url = self._endpoint.bucket_url(bucket, query=encode_query(sorted(query)))
        return self._operation("list_objects_v2", "GET", url)

    def object_url(self, bucket: str, key: str) -> str:
        """The URL of ``key`` in ``bucket`` (for example, to presign it)."""
        return self._object_url(bucket, key)

    # -- answers -----------------------------------------------------------------------------

    @staticmethod
    def parse_put_object(response: Response, *, bucket: str, key: str) -> PutObjectResult:
        """A ``put_object`` response as a :class:`PutObjectResult`."""
        return PutObjectResult(
            bucket=bucket,
            key=key,
            etag=unquote_etag(response.headers.get("etag")),
            version_id=response.headers.get("x-amz-version-id"),
        )

    @staticmethod
    def parse_get_object(response: Response, *, bucket: str, key: str) -> S3Object:
        """A ``get_object`` response as an :class:`S3Object` (metadata and body)."""
        info = object_info_from_headers(
            response.status_code,
            response.headers,
            bucket=bucket,
            key=key,
            body_length=len(response.content),
        )
        return S3Object(info=info, body=response.content)

    @staticmethod
    def parse_head_object(response: Response, *, bucket: str, key: str) -> ObjectInfo:
        """A ``head_object`` response as an :class:`ObjectInfo`."""
        return object_info_from_headers(
            response.status_code, response.headers, bucket=bucket, key=key
        )

    @staticmethod
    def parse_list_objects_v2(response: Response) -> ListPage:
        """A ``list_objects_v2`` response as a :class:`ListPage`."""
        return parse_list_page(response.content)

    @staticmethod
    def parse_list_buckets(response: Response) -> tuple[BucketSummary, ...]:
        """A ``list_buckets`` response as :class:`BucketSummary` records."""
        return parse_bucket_list(response.content)

    # -- helpers -----------------------------------------------------------------------------

    def _location(self) -> bytes:
        return create_bucket_configuration(self.region)

    def _bucket_url(self, bucket: str) -> str:
        return self._endpoint.bucket_url(check_bucket_name(bucket))

    def _object_url(self, bucket: str, key: str) -> str:
        return self._endpoint.bucket_url(check_bucket_name(bucket), check_key(key))

    def _operation(
        self,
        name: str,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Operation:
        # The region travels with the operation, so the context signs it for this
        # client's region whatever the context's own is.
        return Operation(
            service=SERVICE,
            name=name,
            method=method,
            url=url,
            body=body,
            headers=headers or {},
            region=self.region,
        )
