"""SigV4Signer: every signature is checked byte for byte against botocore's signers."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import string
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager
from types import SimpleNamespace
from unittest import mock
from urllib.parse import unquote_to_bytes

import attrs
import httpx
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.utils import percent_encode, percent_encode_sequence, remove_dot_segments
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cloudkit_trio as ck
from cloudkit_trio.aws import EMPTY_SHA256, UNSIGNED_PAYLOAD, SigV4Signer
from cloudkit_trio.aws._sigv4 import _encode_path, _encode_segment, _remove_dot_segments
from cloudkit_trio.transport import RequestSigner

NOW = dt.datetime(2024, 2, 29, 23, 59, 58, tzinfo=dt.UTC)
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//SESSION+TOKEN=="
CREDS = ck.Credentials("AKIDEXAMPLE", SECRET)
SESSION = ck.Credentials("ASIAEXAMPLE", SECRET, TOKEN)

S3_SERVICES = {"s3", "s3-object-lambda", "s3-outposts", "s3express"}


# -- the reference ---------------------------------------------------------------------------


@attrs.frozen
class Case:
    """One request: what the caller hands to httpx, and what an AWS SDK would put on the wire."""

    service: str
    method: str
    url: str  # given to httpx
    wire_url: str  # the same request, encoded as botocore's serializers encode it
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | None = None
    stream: bool = False
    credentials: ck.Credentials = CREDS
    unsigned: bool = False
    sign_token: bool = True
    region: str = "us-east-1"
    now: dt.datetime = NOW


def _botocore_credentials(credentials: ck.Credentials, *, token: bool = True) -> BotoCredentials:
    return BotoCredentials(
        credentials.access_key,
        credentials.secret_key,
        credentials.session_token if token else None,
    )


def _frozen_clock(now: dt.datetime) -> AbstractContextManager[object]:
    # botocore.auth reads the time through this function (botocore >= 1.40.2).
    return mock.patch(
        "botocore.auth.get_current_datetime",
        return_value=now.astimezone(dt.UTC).replace(tzinfo=None),
    )


def _stream(body: bytes) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return chunks()


def _ours(case: Case) -> httpx.Request:
    content: bytes | AsyncIterator[bytes] | None = case.body
    if case.stream:
        content = _stream(case.body or b"")
    request = httpx.Request(case.method, case.url, headers=list(case.headers), content=content)
    signer = SigV4Signer(
        case.service,
        case.region,
        unsigned_payload=case.unsigned,
        sign_session_token=case.sign_token,
    )
    signer.sign(request, case.credentials, now=case.now)
    return request


def _theirs(case: Case, input_headers: Sequence[tuple[str, str]]) -> AWSRequest:
    """botocore's signature of the same request, with botocore deriving the Host header.

    A session token kept outside the signature is botocore's signature without the token,
    with the token's header added afterwards.
    """
    request = AWSRequest(method=case.method, url=case.wire_url, data=case.body)
    for name, value in input_headers:
        if name.lower() != "host":
            request.headers[name] = value  # appends, as repeated headers should
    unsigned = case.unsigned or case.stream
    credentials = _botocore_credentials(case.credentials, token=case.sign_token)
    auth: SigV4Auth
    if case.service in S3_SERVICES:
        auth = S3SigV4Auth(credentials, case.service, case.region)
        if unsigned:
            request.context["client_config"] = SimpleNamespace(
                s3={"payload_signing_enabled": False}
            )
    else:
        auth = SigV4Auth(credentials, case.service, case.region)
        if unsigned:
            request.context["payload_signing_enabled"] = False
    with _frozen_clock(case.now):
        auth.add_auth(request)
    token = case.credentials.session_token
    if not case.sign_token and token is not None:
        request.headers["X-Amz-Security-Token"] = token
    return request


def _input_headers(case: Case) -> list[tuple[str, str]]:
    content = _stream(case.body or b"") if case.stream else case.body
    unsigned = httpx.Request(case.method, case.url, headers=list(case.headers), content=content)
    return unsigned.headers.multi_items()


def _wire(url: httpx.URL) -> str:
    """The URL as it goes on the wire: httpx sends ``raw_path`` for path and query."""
    return f"{url.scheme}://{url.netloc.decode()}{url.raw_path.decode()}"


def assert_matches_botocore(case: Case) -> httpx.Request:
    ours = _ours(case)
    theirs = _theirs(case, _input_headers(case))
    assert _wire(ours.url) == case.wire_url
    mine = sorted((k, v) for k, v in ours.headers.multi_items() if k != "host")
    reference = sorted((k.lower(), v) for k, v in theirs.headers.items())
    assert mine == reference
    assert ours.headers["authorization"] == theirs.headers["Authorization"]
    return ours


# -- hand-picked edge cases ------------------------------------------------------------------

EDGE_CASES = {
    "empty path, S3": Case("s3", "GET", "https://examplebucket.s3.amazonaws.com",
                           "https://examplebucket.s3.amazonaws.com/"),
    "empty path, other service": Case("sqs", "GET", "https://sqs.us-east-1.amazonaws.com",
                                      "https://sqs.us-east-1.amazonaws.com/"),
    "encoded and unicode key, S3": Case(
        "s3", "PUT", "https://b.s3.amazonaws.com/photos/ünïcode key+plus%2Fslash(1)!.jpg",
        "https://b.s3.amazonaws.com/photos/%C3%BCn%C3%AFcode%20key%2Bplus%2Fslash%281%29%21.jpg",
        body=b"bytes",
    ),
    "encoded and unicode path, other service": Case(
        "execute-api", "GET", "https://api.example.com/prod/ünï code/a:b@c",
        "https://api.example.com/prod/%C3%BCn%C3%AF%20code/a%3Ab%40c",
    ),
    "double slash and encoded dots, S3 keeps them": Case(
        "s3", "GET", "https://b.s3.amazonaws.com/a//b/%2E%2E/%2e/c%20d/",
        "https://b.s3.amazonaws.com/a//b/%2E%2E/%2E/c%20d/",
    ),
    "encoded dots, other service": Case(
        "execute-api", "GET", "https://api.example.com/a/%2E%2E/b",
        "https://api.example.com/a/%2E%2E/b",
    ),
    "double slash, other service normalises and double-encodes": Case(
        "execute-api", "GET", "https://api.example.com/a//b/c%20d/",
        "https://api.example.com/a//b/c%20d/",
    ),
    "invalid UTF-8 escape survives byte for byte": Case(
        "s3", "GET", "https://b.s3.amazonaws.com/k%FF%fe", "https://b.s3.amazonaws.com/k%FF%FE",
    ),
    "repeated query parameters sort by value": Case(
        "sqs", "GET", "https://sqs.us-east-1.amazonaws.com/?b=2&a=2&a=1&a=10&c=",
        "https://sqs.us-east-1.amazonaws.com/?b=2&a=2&a=1&a=10&c=",
    ),
    "query values needing encoding": Case(
        "s3", "GET", "https://b.s3.amazonaws.com/?prefix=photos/2024 x&marker=a+b&k=~*'()!%2B",
        "https://b.s3.amazonaws.com/?prefix=photos%2F2024%20x&marker=a%20b&k=~%2A%27%28%29%21%2B",
    ),
    "subresource without a value": Case(
        "s3", "POST", "https://b.s3.amazonaws.com/key?uploads",
        "https://b.s3.amazonaws.com/key?uploads", body=b"",
    ),
    "session token, S3": Case(
        "s3", "GET", "https://b.s3.amazonaws.com/k", "https://b.s3.amazonaws.com/k",
        credentials=SESSION,
    ),
    "session token, other service": Case(
        "dynamodb", "POST", "https://dynamodb.eu-west-1.amazonaws.com/",
        "https://dynamodb.eu-west-1.amazonaws.com/",
        headers=[("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                 ("Content-Type", "application/x-amz-json-1.0")],
        body=b"{}", credentials=SESSION, region="eu-west-1",
    ),
    "unsigned payload by configuration, S3": Case(
        "s3", "PUT", "https://b.s3.amazonaws.com/big", "https://b.s3.amazonaws.com/big",
        body=b"x" * 1000, unsigned=True,
    ),
    "unsigned payload by configuration, other service": Case(
        "execute-api", "PUT", "https://api.example.com/big", "https://api.example.com/big",
        body=b"x" * 1000, unsigned=True,
    ),
    "streaming body is unsigned": Case(
        "s3", "PUT", "https://b.s3.amazonaws.com/stream", "https://b.s3.amazonaws.com/stream",
        body=b"streamed", stream=True,
    ),
    "streaming body is unsigned, other service": Case(
        "execute-api", "PUT", "https://api.example.com/s", "https://api.example.com/s",
        body=b"streamed", stream=True,
    ),
    "JSON body, other service": Case(
        "sqs", "POST", "https://sqs.us-east-1.amazonaws.com/", "https://sqs.us-east-1.amazonaws.com/",
        headers=[("X-Amz-Target", "AmazonSQS.SendMessage"),
                 ("Content-Type", "application/x-amz-json-1.0")],
        body=b'{"QueueUrl": "q", "MessageBody": "hello"}',
    ),
    "session token outside the signature, S3": Case(
        "s3", "PUT", "https://b.s3.amazonaws.com/k", "https://b.s3.amazonaws.com/k",
        body=b"x", credentials=SESSION, sign_token=False,
    ),
    "session token outside the signature, other service": Case(
        "iotdevicegateway", "GET", "https://example-ats.iot.us-east-1.amazonaws.com/mqtt",
        "https://example-ats.iot.us-east-1.amazonaws.com/mqtt", credentials=SESSION,
        sign_token=False,
    ),
    "header whitespace, case and repeats": Case(
        "s3", "GET", "https://b.s3.amazonaws.com/k", "https://b.s3.amazonaws.com/k",
        headers=[("X-Amz-Meta-A", "  one   two  "), ("x-amz-meta-a", "three"),
                 ("My-Header", "a\tb"), ("User-Agent", "not signed"), ("Connection", "close")],
    ),
    "port and IPv6 host": Case(
        "s3", "GET", "http://[::1]:9000/bucket/key", "http://[::1]:9000/bucket/key",
    ),
    "default port is not signed": Case(
        "s3", "GET", "https://b.s3.amazonaws.com:443/k", "https://b.s3.amazonaws.com/k",
    ),
}  # fmt: skip


class TestAgainstBotocore:
    @pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
    def test_edge_cases(self, case: Case) -> None:
        """Hand-picked requests get the very headers and wire URL botocore produces."""
        assert_matches_botocore(case)

    def test_s3_and_other_services_sign_paths_differently(self) -> None:
        """S3 signs the path as sent; other services sign a normalised, re-encoded path."""
        s3 = assert_matches_botocore(EDGE_CASES["double slash and encoded dots, S3 keeps them"])
        api = assert_matches_botocore(
            EDGE_CASES["double slash, other service normalises and double-encodes"]
        )
        same_path_s3 = _ours(attrs.evolve(EDGE_CASES["double slash, other service normalises and double-encodes"], service="s3"))  # fmt: skip
        assert s3.headers["authorization"] != api.headers["authorization"]
        assert same_path_s3.headers["authorization"] != api.headers["authorization"]

    @pytest.mark.parametrize("service", sorted(S3_SERVICES))
    def test_s3_family_always_sends_the_payload_hash(self, service: str) -> None:
        """S3 signers send X-Amz-Content-SHA256: the body's hash, the empty hash or UNSIGNED."""
        with_body = _ours(Case(service, "PUT", "https://b/k", "https://b/k", body=b"abc"))
        empty = _ours(Case(service, "GET", "https://b/k", "https://b/k"))
        streamed = _ours(Case(service, "PUT", "https://b/k", "https://b/k", body=b"a", stream=True))
        assert with_body.headers["x-amz-content-sha256"] == hashlib.sha256(b"abc").hexdigest()
        assert empty.headers["x-amz-content-sha256"] == EMPTY_SHA256
        assert streamed.headers["x-amz-content-sha256"] == UNSIGNED_PAYLOAD

    def test_other_services_send_it_only_when_unsigned(self) -> None:
        """Other services get the header for UNSIGNED-PAYLOAD only, like botocore's SigV4Auth."""
        with_body = _ours(Case("sqs", "POST", "https://q/", "https://q/", body=b"abc"))
        empty = _ours(Case("sqs", "GET", "https://q/", "https://q/"))
        streamed = _ours(Case("sqs", "PUT", "https://q/", "https://q/", body=b"a", stream=True))
        unsigned = _ours(Case("sqs", "PUT", "https://q/", "https://q/", body=b"a", unsigned=True))
        for request in (with_body, empty):
            assert "x-amz-content-sha256" not in request.headers
            assert "x-amz-content-sha256" not in request.headers["authorization"]
        assert streamed.headers["x-amz-content-sha256"] == UNSIGNED_PAYLOAD
        assert unsigned.headers["x-amz-content-sha256"] == UNSIGNED_PAYLOAD

    def test_signing_again_drops_a_stale_payload_header(self) -> None:
        """A header set by an earlier signing goes when the new signing calls for none."""
        url = "https://sqs.us-east-1.amazonaws.com/"
        request = httpx.Request("POST", url, content=iter([b"abc"]))
        signer = SigV4Signer("sqs", "us-east-1")
        signer.sign(request, CREDS, now=NOW)
        assert request.headers["x-amz-content-sha256"] == UNSIGNED_PAYLOAD
        request.read()  # now the body can be hashed
        signer.sign(request, CREDS, now=NOW)
        assert "x-amz-content-sha256" not in request.headers
        reference = AWSRequest(method="POST", url=url, data=b"abc")
        reference.headers["Transfer-Encoding"] = "chunked"
        with _frozen_clock(NOW):
            SigV4Auth(_botocore_credentials(CREDS), "sqs", "us-east-1").add_auth(reference)
        assert request.headers["authorization"] == reference.headers["Authorization"]

        # Signed for S3 first, then for a service that wants no header.
        moved = httpx.Request("POST", url, content=b"abc")
        SigV4Signer("s3", "us-east-1").sign(moved, CREDS, now=NOW)
        signer.sign(moved, CREDS, now=NOW)
        assert "x-amz-content-sha256" not in moved.headers
        assert moved.headers == _ours(Case("sqs", "POST", url, url, body=b"abc")).headers

    def test_session_token_outside_the_signature(self) -> None:
        """sign_session_token=False sends the token unsigned; the signature is the tokenless one."""
        case = EDGE_CASES["session token outside the signature, other service"]
        ours = assert_matches_botocore(case)
        assert ours.headers["x-amz-security-token"] == TOKEN
        assert "x-amz-security-token" not in ours.headers["authorization"]
        tokenless = _ours(attrs.evolve(case, credentials=ck.Credentials("ASIAEXAMPLE", SECRET)))
        assert ours.headers["authorization"] == tokenless.headers["authorization"]
        signed = _ours(attrs.evolve(case, sign_token=True))
        assert "x-amz-security-token" in signed.headers["authorization"]


# -- generated requests ----------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_PRINTABLE = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
)
_TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# Headers the signer sets itself or httpx computes from the body.
_RESERVED = {"host", "content-length", "transfer-encoding", "authorization", "date"}
_HEADER_NAMES = st.one_of(
    st.text(_TCHAR, min_size=1, max_size=10),
    st.sampled_from(["User-Agent", "Connection", "Expect", "traceparent", "X-Amzn-Trace-Id",
                     "Content-Type", "X-Amz-Meta-Key", "Range"]),
).filter(lambda n: n.lower() not in _RESERVED and not n.lower().startswith("x-amz-date"))  # fmt: skip
_HEADER_NAMES = _HEADER_NAMES.filter(
    lambda n: n.lower() not in {"x-amz-security-token", "x-amz-content-sha256"}
)
_HEADER_VALUES = st.text(st.sampled_from(string.printable[:95] + "\t"), max_size=16)
# Delimiters httpx leaves unencoded in a path: the signer must re-encode them.
_PATH_SAFE = st.sets(st.sampled_from("!$&'()*+,;=:@")).map("".join)
_DATES = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2099, 12, 31),
    timezones=st.just(dt.UTC),
).map(lambda d: d.replace(microsecond=0))


@st.composite
def _requests(draw: st.DrawFn) -> tuple[Case, list[tuple[str, str]]]:
    service = draw(st.sampled_from(["s3", "sqs", "execute-api", "s3-object-lambda", "iam"]))
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.sampled_from(["example.com", "b.s3.us-west-2.amazonaws.com",
                                 "127.0.0.1:9000", "[::1]:8443", "LOCALHOST"]))  # fmt: skip
    segments = draw(st.lists(_TEXT, max_size=4))
    safe = draw(_PATH_SAFE)
    raw_path = "/" + "/".join(percent_encode(segment, safe=safe) for segment in segments)
    params = draw(st.lists(st.tuples(_TEXT, _TEXT), max_size=5))
    headers = draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=5))
    body = draw(st.one_of(st.none(), st.binary(max_size=64)))
    stream = body is not None and draw(st.booleans())
    token = draw(st.one_of(st.none(), st.text(string.printable[:94], min_size=1, max_size=30)))
    credentials = ck.Credentials(
        draw(st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=20)),
        # Any printable text: Credentials refuse control characters in a secret.
        draw(st.text(_PRINTABLE, min_size=1, max_size=40)),
        token,
    )
    url = httpx.URL(f"{scheme}://{host}{raw_path}", params=params)
    # What an AWS SDK would send for the same key and parameters: each path segment that
    # httpx kept, encoded by botocore's own helper, and botocore's query encoding.
    segments_kept = url.raw_path.partition(b"?")[0].split(b"/")
    wire_path = "/".join(percent_encode(unquote_to_bytes(s)) for s in segments_kept)
    wire_url = f"{scheme}://{url.netloc.decode()}{wire_path}"
    if params:
        # httpx groups repeated names together; the order it sends is the one to keep.
        wire_url += "?" + percent_encode_sequence(url.params.multi_items())
    case = Case(
        service=service,
        method=draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"])),
        url=str(url),
        wire_url=wire_url,
        headers=headers,
        body=body,
        stream=stream,
        credentials=credentials,
        unsigned=draw(st.booleans()),
        sign_token=draw(st.booleans()),
        region=draw(st.sampled_from(["us-east-1", "eu-central-1", "ap-southeast-2"])),
        now=draw(_DATES),
    )
    return case, params


class TestGenerated:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_requests())
    def test_signed_headers_match_botocore(self, drawn: tuple[Case, list[tuple[str, str]]]) -> None:
        """Generated requests (methods, paths, query, headers, bodies) sign exactly as botocore."""
        case, _ = drawn
        assert_matches_botocore(case)

    @settings(max_examples=200, deadline=None)
    @given(_requests(), st.integers(1, 604800), st.booleans(), st.booleans())
    def test_presigned_urls_match_botocore(
        self,
        drawn: tuple[Case, list[tuple[str, str]]],
        expires: int,
        content_type: bool,
        with_body: bool,
    ) -> None:
        """Generated presigned URLs equal botocore's SigV4QueryAuth output, byte for byte."""
        case, params = drawn
        names = [name for name, _ in params]
        # botocore's presigner keeps one value per name.
        assume(len(set(names)) == len(names))
        assume(not any(n.lower().startswith("x-amz-") for n in names))
        unsigned = case.unsigned and case.wire_url.startswith("https")
        headers = {"Content-Type": "image/png"} if content_type else {}
        body = (case.body or b"") if with_body else None
        signer = SigV4Signer(
            case.service,
            case.region,
            unsigned_payload=unsigned,
            sign_session_token=case.sign_token,
        )
        ours = signer.presign(
            case.method,
            case.url,
            case.credentials,
            expires=expires,
            now=case.now,
            headers=headers,
            body=body,
        )
        theirs = _botocore_presign(case, expires, headers, unsigned=unsigned, body=body)
        assert ours == theirs


class _BodyQueryAuth(SigV4QueryAuth):
    """botocore's presigner, signing a body: by itself it would move the body into the query.

    The body is put back after that step, so that botocore's own ``payload()`` hashes it.
    """

    body: bytes = b""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        super()._modify_request_before_signing(request)
        request.data = self.body


class _S3BodyQueryAuth(S3SigV4QueryAuth):
    """botocore's S3 presigner (the path as sent), signing a body as its generic signer does."""

    body: bytes = b""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        super()._modify_request_before_signing(request)
        request.data = self.body

    def payload(self, request: AWSRequest) -> str:
        digest: str = SigV4Auth.payload(self, request)
        return digest


def _botocore_presign(
    case: Case,
    expires: int,
    headers: dict[str, str],
    *,
    unsigned: bool = False,
    body: bytes | None = None,
) -> str:
    """botocore's presigned URL; a token kept outside the signature is appended after it."""
    request = AWSRequest(method=case.method, url=case.wire_url, headers=headers)
    credentials = _botocore_credentials(case.credentials, token=case.sign_token)
    s3 = case.service in S3_SERVICES
    auth: SigV4QueryAuth
    if body is None:
        cls = S3SigV4QueryAuth if s3 else SigV4QueryAuth
        auth = cls(credentials, case.service, case.region, expires=expires)
        if unsigned:
            request.context["payload_signing_enabled"] = False
    else:
        body_auth = (_S3BodyQueryAuth if s3 else _BodyQueryAuth)(
            credentials, case.service, case.region, expires=expires
        )
        body_auth.body = body
        auth = body_auth
    with _frozen_clock(case.now):
        auth.add_auth(request)
    url: str = request.url
    token = case.credentials.session_token
    if not case.sign_token and token is not None:
        url += f"&X-Amz-Security-Token={percent_encode(token)}"
    return url


class TestPresign:
    @pytest.mark.parametrize(
        ("service", "url", "wire"),
        [
            ("s3", "https://b.s3.amazonaws.com/photos/ü k.jpg",
             "https://b.s3.amazonaws.com/photos/%C3%BC%20k.jpg"),
            ("s3", "https://b.s3.amazonaws.com/k?versionId=a+b&acl",
             "https://b.s3.amazonaws.com/k?versionId=a%20b&acl="),
            ("execute-api", "https://api.example.com/a//b?x=1",
             "https://api.example.com/a//b?x=1"),
            ("s3", "http://127.0.0.1:9000/bucket/key", "http://127.0.0.1:9000/bucket/key"),
        ],
    )  # fmt: skip
    @pytest.mark.parametrize("credentials", [CREDS, SESSION], ids=["keys", "session"])
    def test_edge_cases(
        self, service: str, url: str, wire: str, credentials: ck.Credentials
    ) -> None:
        """Presigned URLs equal botocore's for encoded keys, subresources, tokens and ports."""
        case = Case(service, "GET", url, wire, credentials=credentials)
        ours = SigV4Signer(service, "us-west-2").presign("GET", url, credentials, now=NOW)
        assert ours == _botocore_presign(attrs.evolve(case, region="us-west-2"), 3600, {})

    def test_session_token_is_in_the_query(self) -> None:
        """Temporary credentials put X-Amz-Security-Token into the signed query string."""
        url = SigV4Signer("s3", "us-east-1").presign("GET", "https://b/k", SESSION, now=NOW)
        assert "X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2F%2FSESSION%2BTOKEN%3D%3D" in url

    def test_seven_days_is_the_limit(self) -> None:
        """expires accepts 1 s to 7 days and rejects anything else."""
        signer = SigV4Signer("s3", "us-east-1")
        assert "X-Amz-Expires=604800&" in signer.presign(
            "GET", "https://b/k", CREDS, expires=604800
        )
        for bad in (0, -1, 604801):
            with pytest.raises(ValueError, match="between 1 and 604800"):
                signer.presign("GET", "https://b/k", CREDS, expires=bad)
        for wrong in (True, 60.0, "60"):
            with pytest.raises(TypeError):
                signer.presign("GET", "https://b/k", CREDS, expires=wrong)  # type: ignore[arg-type]

    def test_repeated_parameters_are_kept(self) -> None:
        """A repeated query parameter stays repeated in the presigned URL."""
        url = SigV4Signer("sqs", "us-east-1").presign("GET", "https://q/?a=1&a=2", CREDS, now=NOW)
        assert url.startswith("https://q/?a=1&a=2&X-Amz-Algorithm=")

    @pytest.mark.parametrize("url", ["not a url", "/relative", "ftp://host/x", "https://", 42])
    def test_rejects_unusable_urls(self, url: object) -> None:
        """Only absolute http(s) URLs can be presigned."""
        with pytest.raises(ValueError, match="absolute"):
            SigV4Signer("s3", "us-east-1").presign("GET", url, CREDS)  # type: ignore[arg-type]

    def test_rejects_an_already_signed_url(self) -> None:
        """Presigning a presigned URL is refused instead of producing a broken one."""
        signer = SigV4Signer("s3", "us-east-1")
        signed = signer.presign("GET", "https://b/k", CREDS)
        with pytest.raises(ValueError, match="already signed") as info:
            signer.presign("GET", signed, CREDS)
        assert "X-Amz-Signature=" not in str(info.value)


JSON = b'{"name": "stage", "tags": {"team": "core"}}'


class TestPresignPayload:
    @pytest.mark.parametrize(
        "body", [b"", JSON, bytes(range(256))], ids=["empty", "json", "binary"]
    )
    @pytest.mark.parametrize(
        ("service", "url"),
        [("execute-api", "https://api.example.com/prod/stages"),
         ("sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/q?Action=SendMessage"),
         ("s3", "https://b.s3.amazonaws.com/a//k")],
    )  # fmt: skip
    @pytest.mark.parametrize("credentials", [CREDS, SESSION], ids=["keys", "session"])
    def test_body_is_signed(
        self, service: str, url: str, body: bytes, credentials: ck.Credentials
    ) -> None:
        """presign(body=...) signs the body's hash, as botocore's presigner does for a body."""
        headers = {"Content-Type": "application/json"}
        case = Case(service, "POST", url, url, credentials=credentials)
        ours = SigV4Signer(service, "us-east-1").presign(
            "POST", url, credentials, now=NOW, headers=headers, body=body
        )
        assert ours == _botocore_presign(case, 3600, headers, body=body)

    @pytest.mark.parametrize("service", ["s3", "execute-api"])
    def test_payload_hash_is_the_body_hash(self, service: str) -> None:
        """payload_hash= gives the same URL as the body it is the hash of."""
        signer = SigV4Signer(service, "us-east-1", unsigned_payload=True)
        by_body = signer.presign("PUT", "https://h/k", CREDS, now=NOW, body=JSON)
        by_hash = signer.presign(
            "PUT", "https://h/k", CREDS, now=NOW, payload_hash=hashlib.sha256(JSON).hexdigest()
        )
        assert by_body == by_hash
        assert by_body != signer.presign("PUT", "https://h/k", CREDS, now=NOW)

    def test_unsigned_payload_for_another_service(self) -> None:
        """payload_hash='UNSIGNED-PAYLOAD' equals botocore's presigner with payload signing off."""
        url = "https://api.example.com/prod/upload"
        ours = SigV4Signer("execute-api", "us-west-2").presign(
            "PUT", url, SESSION, now=NOW, payload_hash=UNSIGNED_PAYLOAD
        )
        case = Case("execute-api", "PUT", url, url, credentials=SESSION, region="us-west-2")
        assert ours == _botocore_presign(case, 3600, {}, unsigned=True)

    def test_defaults_are_unchanged(self) -> None:
        """Without body or payload_hash, S3 signs UNSIGNED-PAYLOAD and others the empty body."""
        for service in ("s3", "execute-api"):
            signer = SigV4Signer(service, "us-east-1")
            default = signer.presign("GET", "https://h/k", CREDS, now=NOW)
            expected = UNSIGNED_PAYLOAD if service == "s3" else EMPTY_SHA256
            assert default == signer.presign(
                "GET", "https://h/k", CREDS, now=NOW, payload_hash=expected
            )

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"body": b"x", "payload_hash": EMPTY_SHA256}, TypeError, "not both"),
            ({"body": "text"}, TypeError, "body must be bytes"),
            ({"body": bytearray(b"x")}, TypeError, "body must be bytes"),
            ({"payload_hash": 42}, TypeError, "payload_hash must be a str"),
            ({"payload_hash": EMPTY_SHA256.upper()}, ValueError, "lowercase hex"),
            ({"payload_hash": EMPTY_SHA256[:-1]}, ValueError, "lowercase hex"),
            ({"payload_hash": EMPTY_SHA256 + "\n"}, ValueError, "lowercase hex"),
            ({"payload_hash": SECRET}, ValueError, "lowercase hex"),
            ({"payload_hash": "unsigned-payload"}, ValueError, "lowercase hex"),
        ],
    )
    def test_rejects_unusable_payloads(
        self, kwargs: dict[str, object], error: type[Exception], match: str
    ) -> None:
        """A conflicting or malformed payload is refused, without quoting what was passed."""
        signer = SigV4Signer("s3", "us-east-1")
        with pytest.raises(error, match=match) as info:
            signer.presign("PUT", "https://b/k", SESSION, **kwargs)  # type: ignore[arg-type]
        assert SECRET not in str(info.value)
        assert TOKEN not in str(info.value)


class TestPresignSessionToken:
    @pytest.mark.parametrize(
        ("service", "url"),
        [("iotdevicegateway", "https://example-ats.iot.us-east-1.amazonaws.com/mqtt"),
         ("s3", "https://b.s3.amazonaws.com/k?versionId=1")],
    )  # fmt: skip
    def test_token_outside_the_signature(self, service: str, url: str) -> None:
        """sign_session_token=False appends the token after X-Amz-Signature, unsigned."""
        signer = SigV4Signer(service, "us-east-1", sign_session_token=False)
        ours = signer.presign("GET", url, SESSION, now=NOW)
        case = Case(service, "GET", url, url, credentials=SESSION, sign_token=False)
        assert ours == _botocore_presign(case, 3600, {})
        signature = ours.partition("&X-Amz-Signature=")[2]
        assert signature.endswith(
            "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2F%2FSESSION%2BTOKEN%3D%3D"
        )
        tokenless = signer.presign("GET", url, ck.Credentials("ASIAEXAMPLE", SECRET), now=NOW)
        assert ours.startswith(tokenless + "&")
        inside = SigV4Signer(service, "us-east-1").presign("GET", url, SESSION, now=NOW)
        assert inside.index("X-Amz-Security-Token=") < inside.index("X-Amz-Signature=")


class TestPathNormalisation:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(["a", "b", ".", "..", ""]), max_size=8), st.booleans())
    def test_dot_segments_resolve_like_botocore(self, segments: list[str], absolute: bool) -> None:
        """Dot and empty segments resolve exactly as botocore's remove_dot_segments does."""
        path = ("/" if absolute else "") + "/".join(segments)
        assert _remove_dot_segments(path) == remove_dot_segments(path)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=24) | st.text("abc./-_~%2E", max_size=24).map(str.encode))
    def test_plain_path_shortcut_changes_nothing(self, raw: bytes) -> None:
        """The shortcut for already-encoded paths gives what segment-by-segment encoding gives."""
        expected = "/".join(_encode_segment(segment) for segment in raw.split(b"/"))
        assert _encode_path(raw) == expected


# -- behaviour of the signer object ----------------------------------------------------------


class TestSigner:
    def test_satisfies_the_runtime_hook(self) -> None:
        """SigV4Signer is a RequestSigner: sign(request, credentials) with the current time."""
        signer: RequestSigner = SigV4Signer("s3", "us-east-1")
        assert isinstance(signer, RequestSigner)
        request = httpx.Request("GET", "https://b.s3.amazonaws.com/k")
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        signer.sign(request, CREDS)
        after = dt.datetime.now(dt.UTC)
        stamp = dt.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
        assert before <= stamp.replace(tzinfo=dt.UTC) <= after

    @pytest.mark.parametrize("sign_token", [True, False])
    def test_signing_again_replaces_the_signature(self, sign_token: bool) -> None:
        """A retry signs again: one of each header, the token dropped when credentials lose it."""
        signer = SigV4Signer("s3", "us-east-1", sign_session_token=sign_token)
        request = httpx.Request("PUT", "https://b.s3.amazonaws.com/k", content=b"x")
        signer.sign(request, SESSION, now=NOW)
        signer.sign(request, SESSION, now=NOW + dt.timedelta(seconds=5))
        names = [name for name, _ in request.headers.multi_items()]
        assert len(names) == len(set(names))
        fresh = httpx.Request("PUT", "https://b.s3.amazonaws.com/k", content=b"x")
        signer.sign(fresh, SESSION, now=NOW + dt.timedelta(seconds=5))
        assert request.headers == fresh.headers
        signer.sign(request, CREDS, now=NOW)
        assert "x-amz-security-token" not in request.headers
        assert "x-amz-security-token" not in request.headers["authorization"]

    def test_time_zone_of_now_is_respected(self) -> None:
        """An aware time in any zone signs as the same UTC instant."""
        paris = dt.timezone(dt.timedelta(hours=1))
        a = httpx.Request("GET", "https://b/k")
        b = httpx.Request("GET", "https://b/k")
        SigV4Signer("s3", "us-east-1").sign(a, CREDS, now=NOW)
        SigV4Signer("s3", "us-east-1").sign(b, CREDS, now=NOW.astimezone(paris))
        assert a.headers == b.headers

    def test_signing_key_cache_is_bounded(self) -> None:
        """Derived keys are reused per secret and day, and a few at most are kept."""
        signer = SigV4Signer("s3", "us-east-1")
        for _ in range(3):
            signer.sign(httpx.Request("GET", "https://b/k"), CREDS, now=NOW)
        assert len(signer._keys) == 1
        for n in range(50):
            creds = ck.Credentials("AKID", f"secret-{n}")
            signer.sign(httpx.Request("GET", "https://b/k"), creds, now=NOW)
        assert len(signer._keys) <= 8
        assert "secret-49" not in repr(signer._keys)

    def test_large_body_is_hashed_once_per_request(self) -> None:
        """A retry of a large body reuses its hash; other bytes are hashed for themselves."""
        signer = SigV4Signer("s3", "us-east-1")
        body, other = b"a" * (128 * 1024), b"b" * (128 * 1024)
        request = httpx.Request("PUT", "https://b/k", content=body)
        with mock.patch("cloudkit_trio.aws._sigv4.hashlib.sha256", wraps=hashlib.sha256) as spy:
            for _ in range(3):
                signer.sign(request, CREDS, now=NOW)
            second = httpx.Request("PUT", "https://b/k", content=other)
            signer.sign(second, CREDS, now=NOW)
        hashed = [call.args[0] for call in spy.call_args_list if len(call.args[0]) > 1000]
        assert hashed == [request.content, second.content]
        assert request.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
        assert second.headers["x-amz-content-sha256"] == hashlib.sha256(other).hexdigest()
        # The remembered hash goes with its request: no body outlives it here.
        del request, second
        gc.collect()
        assert len(signer._hashes) == 0

    def test_remembers_credentials_without_keeping_them(self) -> None:
        """The signer recognises the last credentials by a weak reference only."""
        signer = SigV4Signer("sqs", "us-east-1")
        credentials = ck.Credentials("AKID", "a-secret-of-its-own", "a-token-of-its-own")
        signer.sign(httpx.Request("GET", "https://q/"), credentials, now=NOW)
        assert signer._last is not None and signer._last[0]() is credentials
        for state in (signer._last, signer._keys, signer._stamp):
            assert "a-secret-of-its-own" not in repr(state)
        del credentials
        gc.collect()
        assert signer._last[0]() is None

    def test_current_time_is_read_on_every_signing(self) -> None:
        """now=None signs at the clock's current second, whatever was signed before."""
        signer = SigV4Signer("sqs", "us-east-1")
        stamps = []
        for seconds in (1709251198.2, 1709251198.9, 1709251199.0):
            request = httpx.Request("GET", "https://q/")
            with mock.patch("cloudkit_trio.aws._sigv4.time.time", return_value=seconds):
                signer.sign(request, CREDS)
            stamps.append(request.headers["x-amz-date"])
        assert stamps == ["20240229T235958Z", "20240229T235958Z", "20240229T235959Z"]

    def test_normalize_path_follows_the_service_unless_given(self) -> None:
        """S3-family services keep paths raw by default; normalize_path overrides."""
        assert "normalize_path=False" in repr(SigV4Signer("s3", "us-east-1"))
        assert "normalize_path=True" in repr(SigV4Signer("sqs", "us-east-1"))
        url = "https://api.example.com/a//b/c%20d/"
        forced = httpx.Request("GET", url)
        SigV4Signer("s3", "us-east-1", normalize_path=True).sign(forced, CREDS, now=NOW)
        # botocore's generic signer normalises whatever the service is called.
        reference = AWSRequest(method="GET", url=url)
        auth = SigV4Auth(_botocore_credentials(CREDS), "s3", "us-east-1")
        reference.headers["X-Amz-Content-SHA256"] = EMPTY_SHA256
        with _frozen_clock(NOW):
            auth.add_auth(reference)
        assert forced.headers["authorization"] == reference.headers["Authorization"]
        raw = httpx.Request("GET", url)
        SigV4Signer("s3", "us-east-1").sign(raw, CREDS, now=NOW)
        assert raw.headers["authorization"] != forced.headers["authorization"]

    def test_configuration_is_frozen(self) -> None:
        """Service and region cannot change under the signing-key cache."""
        signer = SigV4Signer("s3", "us-east-1")
        with pytest.raises(attrs.exceptions.FrozenAttributeError):
            signer.region = "eu-west-1"

    @pytest.mark.parametrize(
        ("service", "region"), [("", "us-east-1"), ("s3", ""), ("s 3", "x"), ("s3", "us/east")]
    )
    def test_rejects_bad_names(self, service: str, region: str) -> None:
        """Service and region must be plain names."""
        with pytest.raises(ValueError, match="must be a non-empty name"):
            SigV4Signer(service, region)


class TestSecrecy:
    def test_repr_and_str_show_no_secret(self) -> None:
        """The signer's repr and str carry configuration only, even after signing."""
        signer = SigV4Signer("s3", "us-east-1", unsigned_payload=True)
        signer.sign(httpx.Request("GET", "https://b/k"), SESSION, now=NOW)
        for text in (repr(signer), str(signer)):
            assert text == (
                "SigV4Signer(service='s3', region='us-east-1', unsigned_payload=True, "
                "normalize_path=False, sign_session_token=True)"
            )
        outside = SigV4Signer("sqs", "eu-west-1", sign_session_token=False)
        assert repr(outside) == (
            "SigV4Signer(service='sqs', region='eu-west-1', unsigned_payload=False, "
            "normalize_path=True, sign_session_token=False)"
        )

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.sign(httpx.Request("GET", "https://b/k"), SESSION, now=NOW.replace(tzinfo=None)),
            lambda s: s.sign(httpx.Request("GET", "https://b/k"), (SESSION.access_key, SECRET)),
            lambda s: s.sign(httpx.Request("GET", "https://b/k"), ck.Credentials("AK", SECRET, TOKEN + "é")),
            lambda s: s.sign(httpx.Request("GET", "https://b/k"), ck.Credentials("AK\n", SECRET, TOKEN)),
            lambda s: s.sign("https://b/k", SESSION),
            lambda s: s.presign("GET", "https://b/k", SESSION, expires=10**9),
            lambda s: s.presign("GET", "https://b/k", ck.Credentials("AK", SECRET, TOKEN + "\x00")),
            lambda s: s.presign("", "https://b/k", SESSION),
            lambda s: s.presign("GET", f"https://b/k?X-Amz-Security-Token={TOKEN}", SESSION),
        ],
    )  # fmt: skip
    def test_errors_show_no_secret(self, call: object) -> None:
        """Errors raised for bad input name the problem, never the secret or the token."""
        signer = SigV4Signer("s3", "us-east-1")
        with pytest.raises((TypeError, ValueError)) as info:
            call(signer)  # type: ignore[operator]
        error = info.value
        for text in (str(error), repr(error), *map(str, error.args)):
            assert SECRET not in text
            assert TOKEN not in text
        assert error.__cause__ is None
        assert error.__context__ is None
