"""The embedded S3 endpoint: an ASGI app that speaks the part of S3 the demo uses.

CreateBucket, HeadBucket, PutObject and ListObjectsV2 (prefix, max-keys, start-after,
continuation tokens, ``encoding-type=url``), path-style, with S3's XML documents and XML
error bodies. Each request is checked the way S3 checks it, in this order:

1. SigV4's shape: ``Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/s3/
   aws4_request, SignedHeaders=..., Signature=<64 hex digits>``, an ``X-Amz-Date`` of the
   credential's day, ``Host``, ``X-Amz-Date``, ``X-Amz-Content-SHA256`` (and the session
   token) among the signed headers, and the declared payload hash equal to the body's. The
   signature is not recomputed: that checks the shape and the key, not the signing math,
   which the tests verify against moto's S3.
2. The access key and session token: the pair the embedded Vault issued, still honoured
   (``InvalidAccessKeyId``, ``InvalidToken``, ``ExpiredToken`` otherwise).
3. For PutObject, the fault plan may answer instead, always before the object is stored: an
   object exists exactly when a put of it was answered 200, so after the run the listing
   must count the puts that succeeded.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, quote_plus
from xml.sax.saxutils import escape

import attrs
import trio

from ._asgi import EmbeddedApp, answer
from ._credentials import TokenLedger, TokenState
from ._faults import Fault, FaultPlan, RunClock
from ._s3_store import Bucket, ObjectStore, StoredObject, StorePage

if TYPE_CHECKING:
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

    from ._settings import Timing

__all__ = ["S3App"]

_NAMESPACE: Final = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML: Final = b"application/xml"
_MAX_KEYS: Final = 1000
_MAX_KEY_BYTES: Final = 1024
_UNSIGNED: Final = "UNSIGNED-PAYLOAD"
_AUTHORIZATION: Final = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)"
    r"/s3/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=[0-9a-f]{64}"
)
_AMZ_DATE: Final = re.compile(r"\d{8}T\d{6}Z")
_BUCKET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

#: What each injected fault is answered, in S3's words: (status, code, message, Retry-After).
_FAULT_ERRORS: Final[Mapping[Fault, tuple[int, str, str, bool]]] = {
    Fault.SERVER_ERROR: (
        500,
        "InternalError",
        "We encountered an internal error. Try again.",
        False,
    ),
    Fault.UNAVAILABLE: (503, "ServiceUnavailable", "Service is unable to handle request.", True),
    Fault.RATE_LIMITED: (429, "SlowDown", "Please reduce your request rate.", True),
    Fault.BURST_500: (500, "InternalError", "We encountered an internal error. Try again.", False),
    Fault.BURST_503: (503, "SlowDown", "Please reduce your request rate.", False),
    Fault.OUTAGE: (503, "ServiceUnavailable", "Service is unable to handle request.", False),
}
_STALLED: Final = (503, "SlowDown", "Please reduce your request rate.", False)


class _InjectedReset(Exception):
    """Raised mid-response so that the server breaks the connection."""


class _S3Error(Exception):
    """An answer in S3's error document; raised anywhere in a request's handling."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@attrs.frozen(kw_only=True)
class _Request:
    """A request read whole: the body is hashed as it arrives, never kept."""

    method: str
    bucket: str
    key: str | None
    query: Mapping[str, str]
    #: Lowercase names; the last of repeated headers wins.
    headers: Mapping[str, str]
    size: int
    md5: str
    sha256: str
    #: False when the client went away before the body ended.
    complete: bool
    request_id: str = attrs.field(factory=lambda: secrets.token_hex(8).upper())

    @property
    def resource(self) -> str:
        return f"/{self.bucket}" + ("" if self.key is None else f"/{self.key}")


async def _read_request(scope: HTTPScope, receive: ASGIReceiveCallable) -> _Request:
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    complete = False
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body = message.get("body", b"")
        md5.update(body)
        sha256.update(body)
        size += len(body)
        if not message.get("more_body", False):
            complete = True
            break
    bucket, _, key = scope["path"].lstrip("/").partition("/")
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }
    return _Request(
        method=scope["method"].upper(),
        bucket=bucket,
        key=key or None,
        query=query,
        headers=headers,
        size=size,
        md5=md5.hexdigest(),
        sha256=sha256.hexdigest(),
        complete=complete,
    )


def _error_document(error: _S3Error, request: _Request) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"<Resource>{escape(request.resource)}</Resource>"
        f"<RequestId>{request.request_id}</RequestId></Error>"
    ).encode()


def _timestamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        key = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        key = ""
    if not key:
        raise _S3Error(400, "InvalidArgument", "The continuation token provided is incorrect")
    return key


def _max_keys(text: str | None) -> int:
    if text is None:
        return _MAX_KEYS
    if not (text.isascii() and text.isdigit()):
        raise _S3Error(
            400, "InvalidArgument", "Provided max-keys not an integer or within integer range"
        )
    return min(int(text), _MAX_KEYS)


def _list_document(
    request: _Request,
    *,
    prefix: str,
    max_keys: int,
    page: StorePage,
    url_encoded: bool,
) -> bytes:
    def name(text: str) -> str:
        # encoding-type=url: form encoding, as S3 does and as clients decode it.
        return escape(quote_plus(text, safe="/") if url_encoded else text)

    token = request.query.get("continuation-token")
    start_after = request.query.get("start-after")
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<ListBucketResult xmlns="{_NAMESPACE}">',
        f"<Name>{escape(request.bucket)}</Name>",
        f"<Prefix>{name(prefix)}</Prefix>",
        f"<KeyCount>{len(page.objects)}</KeyCount>",
        f"<MaxKeys>{max_keys}</MaxKeys>",
    ]
    if url_encoded:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
    if token is not None:
        parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    elif start_after:
        parts.append(f"<StartAfter>{name(start_after)}</StartAfter>")
    for stored in page.objects:
        parts.append(
            f"<Contents><Key>{name(stored.key)}</Key>"
            f"<LastModified>{_timestamp(stored.last_modified)}</LastModified>"
            f"<ETag>&quot;{stored.etag}&quot;</ETag><Size>{stored.size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    if page.truncated:
        next_token = _encode_token(page.objects[-1].key)
        parts.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def _fault_key(key: str) -> str:
    # The demo's keys end in the operation's number; the run id before it differs from run
    # to run, and the schedule should not: a seed replays its faults.
    return key.rpartition("/")[2]


class S3App(EmbeddedApp):
    """An ASGI app for the embedded S3 endpoint.

    ``requests`` counts every request, ``injected`` every fault by kind (``expired_token``
    included); ``store`` holds the buckets.
    """

    def __init__(
        self,
        *,
        plan: FaultPlan,
        ledger: TokenLedger,
        clock: RunClock,
        timing: Timing,
        name: str = "s3",
        region: str = "us-east-1",
        injected: Counter[str] | None = None,
        store: ObjectStore | None = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.ledger = ledger
        self.clock = clock
        self.timing = timing
        self.region = region
        super().__init__()
        self.injected: Counter[str] = injected if injected is not None else Counter()
        self.store = store if store is not None else ObjectStore()
        # Attempts per object so far; an entry goes when its put is stored.
        self._attempts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"S3App({self.name!r}, requests={self.requests})"

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        request = await _read_request(scope, receive)
        if not request.complete:
            # Nobody is left to answer, and half a body is never stored.
            return
        try:
            await self._handle(request, receive, send)
        except _S3Error as error:
            await self._answer_error(send, request, error)

    async def _handle(
        self, request: _Request, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self._authenticate(request, trio.current_time())
        method = request.method
        if not request.bucket:
            raise _S3Error(501, "NotImplemented", "ListBuckets is not implemented here.")
        if request.key is None:
            if method == "PUT":
                await self._create_bucket(request, send)
            elif method == "HEAD":
                self._bucket(request)
                await self._answer(send, request, 200)
            elif method == "GET":
                await self._list_objects(request, send)
            else:
                raise _S3Error(
                    405,
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                )
        elif method == "PUT":
            await self._put_object(request, receive, send)
        else:
            raise _S3Error(501, "NotImplemented", f"{method} of an object is not implemented here.")

    # -- authentication ------------------------------------------------------------------

    def _authenticate(self, request: _Request, now: float) -> None:
        headers = request.headers
        authorization = headers.get("authorization")
        if authorization is None:
            raise _S3Error(403, "AccessDenied", "Access Denied")
        match = _AUTHORIZATION.fullmatch(authorization.strip())
        if match is None:
            raise _S3Error(
                400,
                "AuthorizationHeaderMalformed",
                "The authorization header is malformed; expected AWS4-HMAC-SHA256 with "
                "Credential, SignedHeaders and Signature.",
            )
        if match["region"] != self.region:
            raise _S3Error(
                400,
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; the region '{match['region']}' is "
                f"wrong; expecting '{self.region}'",
            )
        amz_date = headers.get("x-amz-date", "")
        if not _AMZ_DATE.fullmatch(amz_date) or amz_date[:8] != match["date"]:
            raise _S3Error(
                400,
                "AuthorizationHeaderMalformed",
                "The authorization header is malformed; X-Amz-Date must be a timestamp "
                "on the credential's date.",
            )
        declared = headers.get("x-amz-content-sha256")
        if declared is None:
            raise _S3Error(
                400,
                "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256",
            )
        token = headers.get("x-amz-security-token")
        required = {"host", "x-amz-date", "x-amz-content-sha256"}
        if token is not None:
            required.add("x-amz-security-token")
        if not required <= set(match["signed"].split(";")):
            raise _S3Error(
                403,
                "AccessDenied",
                "There were headers present in the request which were not signed",
            )
        state = self.ledger.check_key(match["key"], token, now)
        if state is TokenState.UNKNOWN_KEY:
            raise _S3Error(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        if state is TokenState.UNKNOWN:
            raise _S3Error(
                400, "InvalidToken", "The provided token is malformed or otherwise invalid."
            )
        if state is TokenState.EXPIRED:
            self.injected[Fault.EXPIRED_TOKEN.value] += 1
            raise _S3Error(400, "ExpiredToken", "The provided token has expired.")
        if declared != _UNSIGNED and declared != request.sha256:
            raise _S3Error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )

    # -- buckets -------------------------------------------------------------------------

    def _bucket(self, request: _Request) -> Bucket:
        bucket = self.store.bucket(request.bucket)
        if bucket is None:
            raise _S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        return bucket

    async def _create_bucket(self, request: _Request, send: ASGISendCallable) -> None:
        if not _BUCKET_NAME.fullmatch(request.bucket):
            raise _S3Error(400, "InvalidBucketName", "The specified bucket is not valid.")
        if not self.store.create_bucket(request.bucket, dt.datetime.now(dt.UTC)):
            raise _S3Error(
                409,
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already "
                "own it.",
            )
        await self._answer(send, request, 200, extra=[(b"location", f"/{request.bucket}".encode())])

    async def _list_objects(self, request: _Request, send: ASGISendCallable) -> None:
        query = request.query
        if query.get("list-type") != "2":
            raise _S3Error(
                501, "NotImplemented", "Only ListObjectsV2 (list-type=2) is implemented here."
            )
        bucket = self._bucket(request)
        if query.get("delimiter"):
            raise _S3Error(
                501, "NotImplemented", "Listing with a delimiter is not implemented here."
            )
        encoding = query.get("encoding-type")
        if encoding not in (None, "url"):
            raise _S3Error(400, "InvalidArgument", "Invalid Encoding Method specified in Request")
        max_keys = _max_keys(query.get("max-keys"))
        prefix = query.get("prefix", "")
        token = query.get("continuation-token")
        # S3 ignores start-after once a continuation token says where to go on.
        after = _decode_token(token) if token is not None else query.get("start-after", "")
        page = bucket.page(prefix=prefix, after=after, max_keys=max_keys)
        body = _list_document(
            request, prefix=prefix, max_keys=max_keys, page=page, url_encoded=encoding == "url"
        )
        await self._answer(send, request, 200, body, content_type=_XML)

    # -- objects -------------------------------------------------------------------------

    async def _put_object(
        self, request: _Request, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        bucket = self._bucket(request)
        assert request.key is not None
        if len(request.key.encode()) > _MAX_KEY_BYTES:
            raise _S3Error(400, "KeyTooLongError", "Your key is too long")
        path = request.resource
        attempt = self._attempts[path] = self._attempts.get(path, 0) + 1
        now = trio.current_time()
        fault = self.plan.decide(
            self.name, _fault_key(request.key), attempt, self.clock.elapsed(now)
        )
        if fault is not None:
            self.injected[fault.value] += 1
        if fault is Fault.SLOW:
            await trio.sleep(self.timing.slow)
        elif fault is Fault.STALL:
            if await self._stall(receive):
                return
            raise self._fault_error(_STALLED)
        elif fault is Fault.RESET:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise _InjectedReset("connection broken on purpose")
        elif fault is not None:
            raise self._fault_error(_FAULT_ERRORS[fault])
        bucket.put(
            StoredObject(
                key=request.key,
                size=request.size,
                etag=request.md5,
                last_modified=dt.datetime.now(dt.UTC),
            )
        )
        self._attempts.pop(path, None)
        await self._answer(send, request, 200, extra=[(b"etag", f'"{request.md5}"'.encode())])

    async def _stall(self, receive: ASGIReceiveCallable) -> bool:
        """Hold the request until the client gives up (True: it disconnected) or the stall
        is over (False)."""
        with trio.move_on_after(self.timing.stall):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
        return False

    def _fault_error(self, spec: tuple[int, str, str, bool]) -> _S3Error:
        status, code, message, retry_after = spec
        return _S3Error(
            status, code, message, retry_after=self.timing.retry_after if retry_after else None
        )

    # -- answers -------------------------------------------------------------------------

    async def _answer(
        self,
        send: ASGISendCallable,
        request: _Request,
        status: int,
        body: bytes = b"",
        *,
        content_type: bytes = _XML,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        if request.method == "HEAD":
            body = b""
        headers = [(b"x-amz-request-id", request.request_id.encode()), *extra]
        await answer(send, status, body, content_type=content_type, extra=headers)

    async def _answer_error(
        self, send: ASGISendCallable, request: _Request, error: _S3Error
    ) -> None:
        extra = (
            [] if error.retry_after is None else [(b"retry-after", str(error.retry_after).encode())]
        )
        await self._answer(
            send, request, error.status, _error_document(error, request), extra=extra
        )
