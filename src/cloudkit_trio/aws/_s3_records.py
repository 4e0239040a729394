"""What S3 calls return: frozen records, never raw XML or header dictionaries."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Mapping

import attrs

__all__ = [
    "BucketSummary",
    "ListPage",
    "ObjectInfo",
    "ObjectSummary",
    "PutObjectResult",
    "S3Object",
]


def _freeze(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return types.MappingProxyType(dict(value or {}))


def _body_repr(value: bytes) -> str:
    return f"<{len(value)} bytes>"


@attrs.frozen(kw_only=True)
class ObjectInfo:
    """An object's metadata, from ``head_object`` or the headers of ``get_object``.

    ``etag`` is the entity tag without its surrounding quotes (for a single-part upload
    without server-side encryption by KMS, the hex MD5 of the body). ``metadata`` holds the
    user metadata (``x-amz-meta-*``) with lowercase names and without the prefix.

    .. versionadded:: 0.1.0
    """

    bucket: str
    key: str
    #: The whole object's size in bytes, also for a ranged get.
    size: int
    etag: str | None
    last_modified: dt.datetime | None
    content_type: str | None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze, hash=False)
    version_id: str | None = None


@attrs.frozen(kw_only=True)
class S3Object:
    """An object read whole by ``get_object``: its metadata and its bytes.

    For a ranged get, ``body`` is the requested range and ``info.size`` the whole object's
    size.

    .. versionadded:: 0.1.0
    """

    info: ObjectInfo
    body: bytes = attrs.field(repr=_body_repr)


@attrs.frozen(kw_only=True)
class PutObjectResult:
    """What S3 answered to a ``put_object``.

    .. versionadded:: 0.1.0
    """

    bucket: str
    key: str
    etag: str | None
    version_id: str | None = None


@attrs.frozen(kw_only=True)
class ObjectSummary:
    """One object in a listing.

    .. versionadded:: 0.1.0
    """

    key: str
    size: int
    etag: str | None
    last_modified: dt.datetime | None
    storage_class: str | None = None


@attrs.frozen(kw_only=True)
class ListPage:
    """One page of a ``list_objects_v2`` listing.

    ``common_prefixes`` are the "directories" rolled up by a ``delimiter``. When
    ``is_truncated`` is true, ``next_continuation_token`` asks for the next page.

    .. versionadded:: 0.1.0
    """

    bucket: str
    prefix: str
    objects: tuple[ObjectSummary, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_continuation_token: str | None = attrs.field(default=None, repr=False)
    #: Objects and common prefixes on this page, as S3 counted them.
    key_count: int = 0


@attrs.frozen(kw_only=True)
class BucketSummary:
    """One bucket in a ``list_buckets`` answer.

    .. versionadded:: 0.1.0
    """

    name: str
    created: dt.datetime | None
