"""A fake S3: the few calls of S3's REST API that tests of object storage code need, in memory.

CreateBucket, HeadBucket, PutObject, GetObject, DeleteObject and ListObjectsV2 (prefix,
``max-keys``, ``start-after``, continuation tokens, ``encoding-type=url``), path-style,
with S3's XML documents and error codes. Signatures are not checked; serve it behind a
:class:`~cloudkit_trio.testing.FakeEndpoint` with a ``vault`` to check the credentials,
and with a fault plan to make it fail. An object exists exactly when a put of it was
answered 200, so a listing after a faulty run counts the puts that succeeded.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from typing import Final
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

import attrs
import trio

from ._endpoint import error_response
from ._http import FakeRequest, FakeResponse

__all__ = ["FakeS3"]

_NAMESPACE: Final = "http://s3.amazonaws.com/doc/2006-03-01/"
_MAX_KEYS: Final = 1000


class _S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@attrs.frozen
class _Stored:
    body: bytes
    etag: str
    last_modified: dt.datetime


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode("ascii")


def _untoken(token: str) -> str:
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise _S3Error(
            400, "InvalidArgument", "The continuation token provided is incorrect"
        ) from None


@attrs.define(eq=False)
class FakeS3:
    """An in-memory S3 service, the app of a :class:`~cloudkit_trio.testing.FakeEndpoint`::

        s3 = FakeS3()
        url = await nursery.start(FakeEndpoint("s3", app=s3).serve)

    Attributes:
        buckets: Each bucket's objects, by key (bodies as bytes), for assertions.

    .. versionadded:: 0.2.0
    """

    _buckets: dict[str, dict[str, _Stored]] = attrs.field(factory=dict, init=False)

    @property
    def buckets(self) -> dict[str, dict[str, bytes]]:
        return {
            name: {k: o.body for k, o in objects.items()} for name, objects in self._buckets.items()
        }

    async def __call__(self, request: FakeRequest) -> FakeResponse:
        await trio.lowlevel.checkpoint()
        bucket, _, key = request.path.lstrip("/").partition("/")
        try:
            if not bucket:
                raise _S3Error(501, "NotImplemented", "ListBuckets is not implemented here.")
            return self._dispatch(request, bucket, key)
        except _S3Error as error:
            return error_response(error.status, error.code, escape(error.message))

    def _dispatch(self, request: FakeRequest, bucket: str, key: str) -> FakeResponse:
        method = request.method
        if not key:
            if method == "PUT":
                if bucket in self._buckets:
                    raise _S3Error(409, "BucketAlreadyOwnedByYou", "You already own this bucket.")
                self._buckets[bucket] = {}
                return FakeResponse(headers={"location": f"/{bucket}"})
            objects = self._bucket(bucket)
            if method == "HEAD":
                return FakeResponse()
            if method == "GET" and request.query.get("list-type") == "2":
                return self._list(request, bucket, objects)
            raise _S3Error(501, "NotImplemented", f"{method} of a bucket is not implemented here.")
        objects = self._bucket(bucket)
        if method == "PUT":
            etag = hashlib.md5(request.body, usedforsecurity=False).hexdigest()
            objects[key] = _Stored(request.body, etag, dt.datetime.now(dt.UTC))
            return FakeResponse(headers={"etag": f'"{etag}"'})
        if method == "DELETE":
            objects.pop(key, None)
            return FakeResponse(status=204)
        stored = objects.get(key)
        if stored is None:
            raise _S3Error(404, "NoSuchKey", "The specified key does not exist.")
        if method in ("GET", "HEAD"):
            body = stored.body if method == "GET" else b""
            return FakeResponse(body=body, headers={"etag": f'"{stored.etag}"'})
        raise _S3Error(501, "NotImplemented", f"{method} of an object is not implemented here.")

    def _bucket(self, name: str) -> dict[str, _Stored]:
        objects = self._buckets.get(name)
        if objects is None:
            raise _S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        return objects

    def _list(self, request: FakeRequest, bucket: str, objects: dict[str, _Stored]) -> FakeResponse:
        query = request.query
        prefix = query.get("prefix", "")
        text = query.get("max-keys", str(_MAX_KEYS))
        if not (text.isascii() and text.isdigit()):
            raise _S3Error(400, "InvalidArgument", "Provided max-keys not an integer")
        max_keys = min(int(text), _MAX_KEYS)
        token = query.get("continuation-token")
        after = _untoken(token) if token is not None else query.get("start-after", "")
        keys = sorted(k for k in objects if k.startswith(prefix) and k > after)
        page, truncated = keys[:max_keys], len(keys) > max_keys
        url_encoded = query.get("encoding-type") == "url"

        def name(text: str) -> str:
            return escape(quote_plus(text, safe="/") if url_encoded else text)

        parts = [
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_NAMESPACE}">',
            f"<Name>{escape(bucket)}</Name><Prefix>{name(prefix)}</Prefix>",
            f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
            "<EncodingType>url</EncodingType>" if url_encoded else "",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        for key in page:
            stored = objects[key]
            modified = stored.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            parts.append(
                f"<Contents><Key>{name(key)}</Key><LastModified>{modified}</LastModified>"
                f"<ETag>&quot;{stored.etag}&quot;</ETag><Size>{len(stored.body)}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        if truncated:
            parts.append(f"<NextContinuationToken>{_token(page[-1])}</NextContinuationToken>")
        parts.append("</ListBucketResult>")
        return FakeResponse(
            body="".join(parts).encode(), headers={"content-type": "application/xml"}
        )
