"""S3's XML documents, read with the standard library's expat and nothing it does not need.

S3 never sends a document type declaration, so any DTD, entity declaration or external
reference is refused outright: no entity is ever expanded (no "billion laughs", no external
entities), without a third-party dependency. The tree kept is the little S3 needs: local
element names (namespaces dropped) and their text.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from urllib.parse import unquote_plus
from xml.sax.saxutils import escape

from .._errors import SerializationError
from .._xml import Element, parse_xml
from ._s3_records import BucketSummary, ListPage, ObjectSummary

__all__ = [
    "Element",
    "create_bucket_configuration",
    "parse_bucket_list",
    "parse_iso_timestamp",
    "parse_list_page",
    "parse_xml",
    "unquote_etag",
]

_NAMESPACE: Final = "http://s3.amazonaws.com/doc/2006-03-01/"


def parse_iso_timestamp(text: str | None, *, what: str) -> dt.datetime | None:
    """An ISO 8601 timestamp (``2024-05-01T12:00:00.000Z``) as an aware datetime."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SerializationError(f"{what} is not an ISO 8601 timestamp: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _int(text: str | None, *, what: str, default: int | None = None) -> int:
    if text is None or not text.strip():
        if default is not None:
            return default
        raise SerializationError(f"the listing has no {what}")
    try:
        return int(text)
    except ValueError:
        raise SerializationError(f"{what} is not an integer: {text!r}") from None


def unquote_etag(text: str | None) -> str | None:
    """An entity tag without its surrounding quotes; None when empty or absent."""
    if not text:
        return None
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def parse_list_page(body: bytes) -> ListPage:
    """A ``ListObjectsV2`` answer (``<ListBucketResult>``) as a :class:`ListPage`."""
    root = parse_xml(body, what="ListObjectsV2")
    if root.tag != "ListBucketResult":
        raise SerializationError(
            f"expected a ListBucketResult document from ListObjectsV2, got <{root.tag}>"
        )
    url_encoded = (root.text_of("EncodingType") or "").lower() == "url"

    def name(text: str | None) -> str:
        # With encoding-type=url S3 form-encodes names, so that keys holding characters
        # XML 1.0 cannot carry still arrive intact.
        text = text or ""
        return unquote_plus(text) if url_encoded else text

    objects = tuple(
        ObjectSummary(
            key=name(item.text_of("Key")),
            size=_int(item.text_of("Size"), what="Size"),
            etag=unquote_etag(item.text_of("ETag")),
            last_modified=parse_iso_timestamp(item.text_of("LastModified"), what="LastModified"),
            storage_class=item.text_of("StorageClass") or None,
        )
        for item in root.find_all("Contents")
    )
    prefixes = tuple(name(item.text_of("Prefix")) for item in root.find_all("CommonPrefixes"))
    truncated = (root.text_of("IsTruncated") or "false").strip().lower() == "true"
    token = root.text_of("NextContinuationToken") or None
    if truncated and token is None:
        raise SerializationError("a truncated listing came without a NextContinuationToken")
    return ListPage(
        bucket=root.text_of("Name") or "",
        prefix=name(root.text_of("Prefix")),
        objects=objects,
        common_prefixes=prefixes,
        is_truncated=truncated,
        next_continuation_token=token if truncated else None,
        key_count=_int(
            root.text_of("KeyCount"), what="KeyCount", default=len(objects) + len(prefixes)
        ),
    )


def parse_bucket_list(body: bytes) -> tuple[BucketSummary, ...]:
    """A ``ListBuckets`` answer (``<ListAllMyBucketsResult>``)."""
    root = parse_xml(body, what="ListBuckets")
    if root.tag != "ListAllMyBucketsResult":
        raise SerializationError(
            f"expected a ListAllMyBucketsResult document from ListBuckets, got <{root.tag}>"
        )
    buckets = root.find("Buckets")
    if buckets is None:
        return ()
    return tuple(
        BucketSummary(
            name=item.text_of("Name") or "",
            created=parse_iso_timestamp(item.text_of("CreationDate"), what="CreationDate"),
        )
        for item in buckets.find_all("Bucket")
    )


def create_bucket_configuration(region: str) -> bytes:
    """The ``CreateBucket`` body that puts a bucket in ``region`` (none for us-east-1)."""
    if region == "us-east-1":
        return b""
    return (
        f'<CreateBucketConfiguration xmlns="{_NAMESPACE}">'
        f"<LocationConstraint>{escape(region)}</LocationConstraint>"
        "</CreateBucketConfiguration>"
    ).encode()
