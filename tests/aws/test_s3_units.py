"""The S3 client's pieces without a server: names, URLs, XML, headers, and error mapping."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import httpx
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import (
    S3,
    Addressing,
    ListPage,
    ObjectStream,
    ObjectSummary,
    S3Operations,
    SigV4Signer,
)
from cloudkit_trio.aws._s3_names import check_bucket_name, check_key, encode_key
from cloudkit_trio.aws._s3_operations import object_info_from_headers
from cloudkit_trio.aws._s3_xml import parse_bucket_list, parse_list_page, parse_xml

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


class TestBucketNames:
    @pytest.mark.parametrize(
        "name", ["abc", "my-bucket", "my.bucket.name", "a" * 63, "0bucket9", "logs-2024.05"]
    )
    def test_valid_names(self, name: str) -> None:
        """Names that follow S3's rules pass unchanged."""
        assert check_bucket_name(name) == name

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("ab", "3 to 63"),
            ("a" * 64, "3 to 63"),
            ("My-Bucket", "lowercase"),
            ("under_score", "lowercase"),
            ("-start", "begin"),
            ("end-", "begin"),
            ("two..dots", "two dots"),
            ("dot.-hyphen", "dot next to a hyphen"),
            ("192.168.1.1", "IP address"),
            ("xn--punycode", "reserves"),
            ("bucket-s3alias", "reserves"),
            ("ünicode", "lowercase"),
        ],
    )
    def test_invalid_names(self, name: str, reason: str) -> None:
        """A bad name is a ConfigError (also a ValueError) saying which rule it breaks."""
        with pytest.raises(ck.ConfigError, match=reason) as caught:
            check_bucket_name(name)
        assert isinstance(caught.value, ValueError)
        assert caught.value.field == "bucket"

    def test_not_a_string(self) -> None:
        """A non-string bucket is a ConfigError naming the type."""
        with pytest.raises(ck.ConfigError, match="must be a str"):
            check_bucket_name(42)  # type: ignore[arg-type]


class TestKeys:
    @pytest.mark.parametrize(
        ("key", "encoded"),
        [
            ("plain.txt", "plain.txt"),
            ("a b", "a%20b"),
            ("a+b", "a%2Bb"),
            ("dir/sub/file", "dir/sub/file"),
            ("ü", "%C3%BC"),
            ("~tilde_-.", "~tilde_-."),
            ("100%", "100%25"),
            ("q?x#y", "q%3Fx%23y"),
            ("a//b/", "a//b/"),
            ("./x/../y", "%2E/x/%2E%2E/y"),
            ("..", "%2E%2E"),
            ("...", "..."),
        ],
    )
    def test_encoding(self, key: str, encoded: str) -> None:
        """Only unreserved characters and '/' stay literal; dot segments are kept as names."""
        assert encode_key(key) == encoded

    def test_encoded_path_survives_httpx(self) -> None:
        """httpx sends the encoded key byte for byte (no dot-segment removal, no re-encoding)."""
        path = "/bucket/" + encode_key("a/../b/./c d/%")
        assert httpx.URL("http://h" + path).raw_path == path.encode()

    @pytest.mark.parametrize(
        ("key", "message"),
        [("", "empty"), ("é" * 513, "1024"), ("\ud800", "surrogate"), (b"k", "must be a str")],
    )
    def test_invalid_keys(self, key: Any, message: str) -> None:
        """Empty, over-long (in UTF-8 bytes) and unencodable keys are ConfigErrors."""
        with pytest.raises(ck.ConfigError, match=message):
            check_key(key)

    def test_longest_key(self) -> None:
        """1024 bytes of UTF-8 is allowed."""
        assert check_key("é" * 512) == "é" * 512


class TestOperations:
    def test_default_endpoint_and_virtual_for_aws(self) -> None:
        """On AWS, AUTO addressing is virtual-hosted for names that are one DNS label."""
        ops = S3Operations(region="eu-west-1")
        assert ops.endpoint == "https://s3.eu-west-1.amazonaws.com"
        assert ops.head_object("photos", "a b").url == (
            "https://photos.s3.eu-west-1.amazonaws.com/a%20b"
        )
        assert ops.head_bucket("photos").url == "https://photos.s3.eu-west-1.amazonaws.com/"
        # A dotted name would not match AWS's wildcard certificate: path-style.
        assert ops.head_object("my.photos", "k").url == (
            "https://s3.eu-west-1.amazonaws.com/my.photos/k"
        )

    def test_custom_endpoint_defaults_to_path_style(self) -> None:
        """MinIO, moto and the like get path-style URLs, under the endpoint's own path."""
        ops = S3Operations(endpoint="http://127.0.0.1:9000/storage/")
        assert ops.get_object("bkt", "k/ü").url == "http://127.0.0.1:9000/storage/bkt/k/%C3%BC"
        assert ops.head_bucket("bkt").url == "http://127.0.0.1:9000/storage/bkt"
        assert ops.list_buckets().url == "http://127.0.0.1:9000/storage/"

    @pytest.mark.parametrize(
        ("addressing", "url"),
        [
            ("path", "http://minio.local:9000/bkt/k"),
            ("VIRTUAL", "http://bkt.minio.local:9000/k"),
            (Addressing.VIRTUAL, "http://bkt.minio.local:9000/k"),
        ],
    )
    def test_explicit_addressing(self, addressing: Any, url: str) -> None:
        """Addressing may be forced, as an enum or a case-insensitive string."""
        ops = S3Operations(endpoint="http://minio.local:9000", addressing=addressing)
        assert ops.get_object("bkt", "k").url == url
        assert ops.object_url("bkt", "k") == url

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"addressing": "dns"}, "addressing"),
            ({"endpoint": "ftp://host"}, "endpoint"),
            ({"endpoint": "http://user:pw@host"}, "endpoint"),
            ({"endpoint": "http://host/?q=1"}, "endpoint"),
            ({"endpoint": "http://host:port"}, "endpoint"),
            ({"region": "Not A Region"}, "region"),
        ],
    )
    def test_bad_configuration(self, kwargs: dict[str, Any], field: str) -> None:
        """Bad settings are ConfigErrors naming the field; user-info is never echoed."""
        with pytest.raises(ck.ConfigError) as caught:
            S3Operations(**kwargs)
        assert caught.value.field == field
        assert "pw" not in str(caught.value)

    def test_every_call_is_an_idempotent_s3_operation(self) -> None:
        """Each builder names its call; PUT, GET, HEAD and DELETE may all be retried."""
        ops = S3Operations(endpoint="http://127.0.0.1:9000")
        built = {
            "create_bucket": ops.create_bucket("bkt"),
            "delete_bucket": ops.delete_bucket("bkt"),
            "head_bucket": ops.head_bucket("bkt"),
            "list_buckets": ops.list_buckets(),
            "put_object": ops.put_object("bkt", "k", b"v"),
            "get_object": ops.get_object("bkt", "k"),
            "head_object": ops.head_object("bkt", "k"),
            "delete_object": ops.delete_object("bkt", "k"),
            "list_objects_v2": ops.list_objects_v2("bkt"),
        }
        methods = {name: op.method for name, op in built.items()}
        assert methods == {
            "create_bucket": "PUT", "delete_bucket": "DELETE", "head_bucket": "HEAD",
            "list_buckets": "GET", "put_object": "PUT", "get_object": "GET",
            "head_object": "HEAD", "delete_object": "DELETE", "list_objects_v2": "GET",
        }  # fmt: skip
        for name, operation in built.items():
            assert (operation.service, operation.name) == ("s3", name)
            assert operation.is_idempotent, name

    def test_create_bucket_location(self) -> None:
        """Outside us-east-1 the region goes into a CreateBucketConfiguration body."""
        assert S3Operations(region="us-east-1").create_bucket("bkt").body == b""
        body = S3Operations(region="eu-central-1").create_bucket("bkt").body
        root = parse_xml(body, what="test")
        assert root.tag == "CreateBucketConfiguration"
        assert root.text_of("LocationConstraint") == "eu-central-1"

    def test_put_headers(self) -> None:
        """Content type, metadata (prefixed, lowercased) and extra headers go on the request."""
        operation = S3Operations().put_object(
            "bkt",
            "k",
            bytearray(b"data"),
            content_type="image/png",
            metadata={"Camera": "X100", "taken-at": "2024-05-01"},
            headers={"Cache-Control": "max-age=60"},
        )
        assert dict(operation.headers) == {
            "Cache-Control": "max-age=60",
            "Content-Type": "image/png",
            "x-amz-meta-camera": "X100",
            "x-amz-meta-taken-at": "2024-05-01",
        }
        assert operation.body == b"data"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"metadata": {"name": "café"}},
            {"metadata": {"bad name": "v"}},
            {"metadata": {"n": "line\nbreak"}},
            {"content_type": "text/plain\r\nX-Injected: 1"},
            {"headers": {"X-Ok": 5}},
            {"headers": {"Bad Header": "v"}},
        ],
    )
    def test_unsendable_headers(self, kwargs: dict[str, Any]) -> None:
        """Header values that are not printable ASCII, or bad names, are ConfigErrors."""
        with pytest.raises(ck.ConfigError):
            S3Operations().put_object("bkt", "k", b"", **kwargs)

    def test_body_must_be_bytes(self) -> None:
        """A str body is refused rather than guessed at."""
        with pytest.raises(ck.ConfigError, match="body must be bytes"):
            S3Operations().put_object("bkt", "k", "text")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("byte_range", "header"),
        [((0, 0), "bytes=0-0"), ((5, 9), "bytes=5-9"), ((7, None), "bytes=7-")],
    )
    def test_byte_range(self, byte_range: Any, header: str) -> None:
        """byte_range becomes a Range header with both ends included."""
        assert (
            S3Operations().get_object("bkt", "k", byte_range=byte_range).headers["Range"] == header
        )

    @pytest.mark.parametrize("byte_range", [(5, 4), (-1, 3), (True, 2), (1,), "0-9", (0, 1.5)])
    def test_bad_byte_range(self, byte_range: Any) -> None:
        """Reversed, negative or malformed ranges are ConfigErrors."""
        with pytest.raises(ck.ConfigError, match="byte_range"):
            S3Operations().get_object("bkt", "k", byte_range=byte_range)

    def test_list_query(self) -> None:
        """The listing query is sorted and encoded the AWS way (space %20, plus %2B)."""
        operation = S3Operations(endpoint="http://127.0.0.1:9000").list_objects_v2(
            "bkt",
            prefix="a b+c/ü",
            delimiter="/",
            page_size=50,
            start_after="a b",
            continuation_token="tok/en==",
        )
        assert operation.url == (
            "http://127.0.0.1:9000/bkt?continuation-token=tok%2Fen%3D%3D&delimiter=%2F"
            "&encoding-type=url&list-type=2&max-keys=50&prefix=a%20b%2Bc%2F%C3%BC"
            "&start-after=a%20b"
        )

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"page_size": 0}, "page_size"),
            ({"page_size": True}, "page_size"),
            ({"prefix": 3}, "prefix"),
        ],
    )
    def test_bad_list_arguments(self, kwargs: dict[str, Any], field: str) -> None:
        """Out-of-range page sizes and non-string filters are ConfigErrors."""
        with pytest.raises(ck.ConfigError) as caught:
            S3Operations().list_objects_v2("bkt", **kwargs)
        assert caught.value.field == field

    def test_signed_url_is_sent_unchanged(self) -> None:
        """The signer finds nothing to re-encode: what is built is what is signed and sent."""
        operation = S3Operations(endpoint="http://127.0.0.1:9000").list_objects_v2(
            "bkt", prefix="ü +/%"
        )
        request = httpx.Request("GET", operation.url or "")
        before = request.url.raw_path
        SigV4Signer("s3", "us-east-1").sign(request, ck.Credentials("AKID", "SECRET"))
        assert request.url.raw_path == before


def listing(*contents: str, extra: str = "", encoding: str = "url") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult {NS}><Name>bkt</Name>'
        f"<Prefix></Prefix><KeyCount>{len(contents)}</KeyCount><MaxKeys>1000</MaxKeys>"
        f"<EncodingType>{encoding}</EncodingType>{extra}{''.join(contents)}</ListBucketResult>"
    ).encode()


def item(key: str, size: int = 3) -> str:
    return (
        f"<Contents><Key>{key}</Key><LastModified>2024-05-01T12:30:00.000Z</LastModified>"
        f"<ETag>&quot;abc&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass>"
        "</Contents>"
    )


class TestXml:
    def test_list_page(self) -> None:
        """A ListBucketResult becomes a ListPage with decoded keys and aware timestamps."""
        body = listing(
            item("a%20b%2Bc"),
            item("d+e/%C3%BC", size=10),
            extra="<IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>"
            "<CommonPrefixes><Prefix>dir%2F</Prefix></CommonPrefixes>",
        )
        page = parse_list_page(body)
        assert page == ListPage(
            bucket="bkt",
            prefix="",
            objects=(
                ObjectSummary(
                    key="a b+c",
                    size=3,
                    etag="abc",
                    last_modified=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
                    storage_class="STANDARD",
                ),
                ObjectSummary(
                    key="d e/ü",
                    size=10,
                    etag="abc",
                    last_modified=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
                    storage_class="STANDARD",
                ),
            ),
            common_prefixes=("dir/",),
            is_truncated=True,
            next_continuation_token="t1",
            key_count=2,
        )

    def test_keys_are_literal_without_url_encoding(self) -> None:
        """Without EncodingType=url, keys are taken as written."""
        page = parse_list_page(listing(item("a%20b+c"), encoding=""))
        assert [o.key for o in page.objects] == ["a%20b+c"]

    def test_truncated_without_token(self) -> None:
        """A truncated page without a token could not be continued: SerializationError."""
        with pytest.raises(ck.SerializationError, match="NextContinuationToken"):
            parse_list_page(listing(extra="<IsTruncated>true</IsTruncated>"))

    @pytest.mark.parametrize(
        "body",
        [
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
            b'"&lol;&lol;&lol;&lol;">]><ListBucketResult><Name>&lol2;</Name></ListBucketResult>',
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
            b"<ListBucketResult><Name>&ext;</Name></ListBucketResult>",
            b'<!DOCTYPE ListBucketResult SYSTEM "http://127.0.0.1:1/evil.dtd"><ListBucketResult/>',
        ],
    )
    def test_entities_and_dtds_are_refused(self, body: bytes) -> None:
        """Entity declarations and DTDs are refused before anything is expanded or fetched."""
        with pytest.raises(ck.SerializationError, match="DTD or entities"):
            parse_list_page(body)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"<ListBucketResult><Name>x</Name>", "not well-formed"),
            (b"", "not well-formed"),
            (b"<Error><Code>X</Code></Error>", "expected a ListBucketResult"),
            (listing(item("k").replace("<Size>3", "<Size>three")), "Size is not an integer"),
            (listing(item("k").replace("2024-05-01T12:30:00.000Z", "yesterday")), "ISO 8601"),
        ],
    )
    def test_malformed_documents(self, body: bytes, message: str) -> None:
        """Broken or unexpected documents are SerializationErrors saying what was wrong."""
        with pytest.raises(ck.SerializationError, match=message):
            parse_list_page(body)

    def test_bucket_list(self) -> None:
        """A ListAllMyBucketsResult becomes BucketSummary records."""
        body = (
            f"<ListAllMyBucketsResult {NS}><Owner><ID>o</ID></Owner><Buckets>"
            "<Bucket><Name>one</Name><CreationDate>2024-01-02T03:04:05Z</CreationDate></Bucket>"
            "<Bucket><Name>two</Name><CreationDate>2024-01-02T03:04:05.123+00:00</CreationDate>"
            "</Bucket></Buckets></ListAllMyBucketsResult>"
        ).encode()
        buckets = parse_bucket_list(body)
        assert [b.name for b in buckets] == ["one", "two"]
        assert buckets[0].created == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        empty = f"<ListAllMyBucketsResult {NS}><Owner/></ListAllMyBucketsResult>".encode()
        assert parse_bucket_list(empty) == ()


class TestObjectHeaders:
    def test_head_headers(self) -> None:
        """Size, unquoted ETag, HTTP-date, content type, user metadata and version."""
        headers = httpx.Headers(
            {
                "Content-Length": "1234",
                "ETag": '"d41d8cd98f00b204e9800998ecf8427e"',
                "Last-Modified": "Wed, 01 May 2024 12:30:00 GMT",
                "Content-Type": "text/csv",
                "x-amz-meta-owner": "ann",
                "X-Amz-Meta-Team": "data",
                "x-amz-version-id": "v1",
            }
        )
        info = object_info_from_headers(200, headers, bucket="bkt", key="k")
        assert (info.size, info.etag, info.content_type, info.version_id) == (
            1234, "d41d8cd98f00b204e9800998ecf8427e", "text/csv", "v1",
        )  # fmt: skip
        assert info.last_modified == dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
        assert dict(info.metadata) == {"owner": "ann", "team": "data"}

    def test_partial_content_reports_the_whole_size(self) -> None:
        """For a 206, the size comes from Content-Range's total."""
        headers = httpx.Headers({"Content-Length": "10", "Content-Range": "bytes 0-9/5000"})
        assert object_info_from_headers(206, headers, bucket="b", key="k").size == 5000

    def test_odd_content_length_is_not_trusted(self) -> None:
        """A Content-Length that is not ASCII digits falls back to the body's length."""
        headers = httpx.Headers([(b"Content-Length", "²".encode("latin-1"))])
        assert object_info_from_headers(200, headers, bucket="b", key="k", body_length=3).size == 3

    def test_missing_sizes(self) -> None:
        """Without Content-Length the body's length is used; with neither, an error."""
        assert (
            object_info_from_headers(200, httpx.Headers(), bucket="b", key="k", body_length=7).size
            == 7
        )
        with pytest.raises(ck.SerializationError, match="Content-Length"):
            object_info_from_headers(200, httpx.Headers(), bucket="b", key="k")

    def test_bad_last_modified(self) -> None:
        """A Last-Modified that is not an HTTP date is a SerializationError."""
        headers = httpx.Headers({"Content-Length": "1", "Last-Modified": "soon"})
        with pytest.raises(ck.SerializationError, match="HTTP date"):
            object_info_from_headers(200, headers, bucket="b", key="k")


def s3_error(status: int, code: str, message: str = "msg", **headers: str) -> httpx.Response:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>r</RequestId></Error>"
    return httpx.Response(
        status, headers={"Content-Type": "application/xml", **headers}, content=body.encode()
    )


@attrs.define
class FakeS3:
    """An in-memory S3 stand-in answering from a list of scripted responses."""

    answers: list[httpx.Response] = attrs.Factory(list)
    requests: list[httpx.Request] = attrs.Factory(list)
    #: The runtime re-signs one request object per attempt: keep each attempt's signature.
    signatures: list[str] = attrs.Factory(list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.signatures.append(request.headers.get("authorization", ""))
        return self.answers.pop(0) if self.answers else httpx.Response(200)


class CountingAuth(ck.AuthProvider):
    def __init__(self) -> None:
        self.fetches = 0

    async def get_credentials(self) -> ck.Credentials:
        self.fetches += 1
        return ck.Credentials("AKID", f"secret-{self.fetches}")


def fake_context(fake: FakeS3, auth: ck.AuthProvider | None = None) -> ck.CloudContext:
    return (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(region="us-east-1", endpoint="http://127.0.0.1:9000"))
        .auth_provider(auth or ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .signer(S3.signer())
        .transport(httpx.MockTransport(fake))
        .logger(ck.NoopLogger())
        .build()
    )


class TestErrorsThroughTheRuntime:
    async def test_slow_down_is_rate_limited_and_retried(self, autojump_clock: Any) -> None:
        """SlowDown (503) is RateLimited: retried with backoff until it succeeds."""
        fake = FakeS3(
            [s3_error(503, "SlowDown"), s3_error(503, "SlowDown", **{"Retry-After": "1"})]
        )
        async with fake_context(fake) as cloud:
            result = await S3(cloud).put_object("bkt", "k", b"v")
        assert len(fake.requests) == 3
        assert result.key == "k"

    async def test_slow_down_exhausts_the_policy(self, autojump_clock: Any) -> None:
        """When SlowDown persists, the RateLimited error surfaces after the last attempt."""
        fake = FakeS3([s3_error(503, "SlowDown")] * 4)
        async with fake_context(fake) as cloud:
            with pytest.raises(ck.RateLimited) as caught:
                await S3(cloud).get_object("bkt", "k")
        assert caught.value.code == "SlowDown" and caught.value.attempt == 4

    async def test_expired_token_refreshes_once(self, autojump_clock: Any) -> None:
        """ExpiredToken (400) makes the runtime fetch fresh credentials and try again."""
        fake = FakeS3([s3_error(400, "ExpiredToken")])
        auth = CountingAuth()
        async with fake_context(fake, auth) as cloud:
            await S3(cloud).delete_object("bkt", "k")
        assert auth.fetches == 2
        assert len(fake.signatures) == 2
        assert fake.signatures[0] != fake.signatures[1]

    @pytest.mark.parametrize(
        ("status", "code", "kind"),
        [
            (404, "NoSuchKey", ck.NotFound),
            (404, "NoSuchBucket", ck.NotFound),
            (409, "BucketAlreadyOwnedByYou", ck.AlreadyExists),
            (409, "BucketAlreadyExists", ck.AlreadyExists),
            (403, "AccessDenied", ck.InsufficientPermissions),
            (403, "SignatureDoesNotMatch", ck.InvalidCredentials),
            (403, "InvalidAccessKeyId", ck.InvalidCredentials),
            (400, "InvalidArgument", ck.ValidationError),
            (412, "PreconditionFailed", ck.ProviderError),
        ],
    )
    async def test_s3_codes_map_to_the_error_tree(
        self, status: int, code: str, kind: type[ck.CloudError]
    ) -> None:
        """S3's error codes land on the documented branch of the tree, not retried."""
        fake = FakeS3([s3_error(status, code)])
        async with fake_context(fake) as cloud:
            with pytest.raises(kind) as caught:
                await S3(cloud).get_object("bkt", "k")
        assert (caught.value.code, caught.value.status_code) == (code, status)
        assert len(fake.requests) == 1

    async def test_bucket_already_owned_names_the_bucket(self) -> None:
        """AlreadyExists from create_bucket names the bucket."""
        fake = FakeS3([s3_error(409, "BucketAlreadyOwnedByYou")])
        async with fake_context(fake) as cloud:
            with pytest.raises(ck.AlreadyExists) as caught:
                await S3(cloud).create_bucket("bkt")
        assert (caught.value.resource_type, caught.value.resource_id) == ("bucket", "bkt")

    async def test_listing_that_never_ends_is_stopped(self) -> None:
        """A server repeating its continuation token cannot make the listing loop forever."""
        page = listing(
            item("k"),
            extra="<IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken>",
        )
        fake = FakeS3([httpx.Response(200, content=page) for _ in range(3)])
        async with fake_context(fake) as cloud:
            pages = S3(cloud).list_objects_v2("bkt")
            first = await pages.__anext__()
            assert first.next_continuation_token == "same"
            with pytest.raises(ck.SerializationError, match="continuation token twice"):
                await pages.__anext__()
            with pytest.raises(StopAsyncIteration):
                await pages.__anext__()
        assert "continuation-token=same" in str(fake.requests[1].url)
        assert len(fake.requests) == 2

    async def test_garbage_listing_is_a_serialization_error(self) -> None:
        """A 200 whose body is not a listing is a SerializationError."""
        fake = FakeS3([httpx.Response(200, content=b"<html>proxy login</html>")])
        async with fake_context(fake) as cloud:
            with pytest.raises(ck.SerializationError):
                [p async for p in S3(cloud).list_objects_v2("bkt")]


class TestClient:
    async def test_needs_a_running_cloud(self) -> None:
        """S3 is built over a running Cloud, not a context or anything else."""
        context = fake_context(FakeS3())
        with pytest.raises(TypeError, match="running Cloud"):
            S3(context)  # type: ignore[arg-type]

    async def test_defaults_from_the_context(self) -> None:
        """Region and endpoint default to the context's config; repr shows no secret."""
        async with fake_context(FakeS3()) as cloud:
            s3 = S3(cloud)
            assert s3.operations.region == "us-east-1"
            assert s3.operations.endpoint == "http://127.0.0.1:9000"
            assert repr(s3) == (
                "S3(region='us-east-1', endpoint='http://127.0.0.1:9000', addressing='auto')"
            )
            other = S3(cloud, region="eu-west-1", endpoint=None)
            assert other.operations.region == "eu-west-1"
            assert s3.cloud is cloud

    def test_signer(self) -> None:
        """S3.signer is SigV4 for the s3 service in the given region."""
        signer = S3.signer("ap-south-1")
        assert (signer.service, signer.region) == ("s3", "ap-south-1")

    async def test_operations_run_through_the_runtime(self) -> None:
        """Every call is an operation: the metrics see s3.<call> for each one."""
        from cloudkit_trio.testing import RecordingMetrics

        metrics = RecordingMetrics()
        fake = FakeS3()
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
            .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
            .signer(S3.signer())
            .transport(httpx.MockTransport(fake))
            .metrics_collector(metrics)
            .logger(ck.NoopLogger())
            .build()
        )
        async with context as cloud:
            s3 = S3(cloud)
            await s3.put_object("bkt", "k", b"v")
            await s3.delete_object("bkt", "k")
        await trio.lowlevel.checkpoint()
        names = [(m.service, m.operation) for m in metrics.operations]
        assert names == [("s3", "put_object"), ("s3", "delete_object")]
        assert len(fake.signatures) == 2
        assert all(s.startswith("AWS4-HMAC-SHA256 Credential=AKID/") for s in fake.signatures)

    async def test_open_object_over_a_mock_transport(self) -> None:
        """open_object hands over metadata first, then the body; ObjectStream is not built by hand."""
        fake = FakeS3(
            [httpx.Response(200, headers={"Content-Length": "5", "ETag": '"e"'}, content=b"hello")]
        )
        async with fake_context(fake) as cloud, S3(cloud).open_object("bkt", "k") as obj:
            assert repr(obj) == "<ObjectStream bkt/k (5 bytes)>"
            assert obj.info.etag == "e"
            assert b"".join([c async for c in obj.aiter_bytes()]) == b"hello"
        with pytest.raises(TypeError, match="open_object"):
            ObjectStream()
