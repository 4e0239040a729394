"""The S3 client against moto's S3 server (a third-party implementation), authentication on."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Hashable
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import S3, Addressing, ListPage, ObjectSummary
from cloudkit_trio.transport import PooledTransport

from ._moto import REGION, MotoServer

if TYPE_CHECKING:
    import httpx


def make_context(
    server: MotoServer,
    *,
    credentials: ck.Credentials | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    endpoint: str | None = None,
    metrics: ck.MetricsCollector | None = None,
) -> ck.CloudContext:
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(region=REGION, endpoint=endpoint or server.url))
        .auth_provider(ck.StaticAuthProvider(credentials or server.credentials))
        .logger(ck.NoopLogger())
    )
    if transport is not None:
        builder = builder.transport(transport)
    if metrics is not None:
        builder = builder.metrics_collector(metrics)
    return builder.build()


def new_bucket_name() -> str:
    return f"ck-{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def s3(moto_server: MotoServer) -> AsyncIterator[S3]:
    """An S3 client over a running context, path-style, signed with the moto user's key."""
    async with make_context(moto_server) as cloud:
        yield S3(cloud)


@pytest.fixture
async def bucket(s3: S3) -> str:
    """A fresh, empty bucket for one test."""
    name = new_bucket_name()
    await s3.create_bucket(name)
    return name


async def put_all(s3: S3, bucket: str, keys: list[str]) -> None:
    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(s3.put_object, bucket, key, key.encode())


class TestBuckets:
    async def test_create_list_check_and_delete(self, s3: S3) -> None:
        """A created bucket is listed and exists; once deleted it no longer exists."""
        name = new_bucket_name()
        await s3.create_bucket(name)
        assert await s3.bucket_exists(name)
        listed = {b.name: b for b in await s3.list_buckets()}
        assert name in listed
        created = listed[name].created
        assert created is not None and created.tzinfo is not None
        await s3.delete_bucket(name)
        assert not await s3.bucket_exists(name)

    async def test_deleting_a_missing_bucket_is_not_found(self, s3: S3) -> None:
        """NoSuchBucket is NotFound, naming the bucket."""
        name = new_bucket_name()
        with pytest.raises(ck.NotFound) as caught:
            await s3.delete_bucket(name)
        assert caught.value.code == "NoSuchBucket"
        assert (caught.value.resource_type, caught.value.resource_id) == ("bucket", name)
        assert caught.value.operation == "delete_bucket" and caught.value.service == "s3"

    async def test_deleting_a_bucket_with_objects_is_refused(self, s3: S3, bucket: str) -> None:
        """BucketNotEmpty (HTTP 409) is a conflict: AlreadyExists, not retried."""
        await s3.put_object(bucket, "k", b"v")
        with pytest.raises(ck.AlreadyExists) as caught:
            await s3.delete_bucket(bucket)
        assert caught.value.code == "BucketNotEmpty"
        assert caught.value.attempt == 1

    async def test_invalid_bucket_name_fails_before_sending(self, s3: S3) -> None:
        """A bad bucket name is a ConfigError (a ValueError) naming the rule."""
        with pytest.raises(ck.ConfigError, match="lowercase"):
            await s3.create_bucket("Not_A_Bucket")
        # The builder raises, so nothing reached the runtime.
        with pytest.raises(ValueError, match="lowercase"):
            s3.operations.create_bucket("Not_A_Bucket")


class TestObjects:
    async def test_put_head_get_delete(self, s3: S3, bucket: str) -> None:
        """An object goes in with its type and metadata and comes back the same."""
        body = b"hello, world\n" * 100
        put = await s3.put_object(
            bucket, "docs/hello.txt", body, content_type="text/plain", metadata={"Owner": "ann"}
        )
        assert put.etag == hashlib.md5(body).hexdigest()

        info = await s3.head_object(bucket, "docs/hello.txt")
        assert (info.bucket, info.key, info.size, info.etag) == (
            bucket, "docs/hello.txt", len(body), put.etag,
        )  # fmt: skip
        assert info.content_type == "text/plain"
        assert dict(info.metadata) == {"owner": "ann"}
        assert info.last_modified is not None
        assert abs(info.last_modified - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)

        got = await s3.get_object(bucket, "docs/hello.txt")
        assert got.body == body
        assert got.info == info

        await s3.delete_object(bucket, "docs/hello.txt")
        with pytest.raises(ck.NotFound):
            await s3.head_object(bucket, "docs/hello.txt")

    @pytest.mark.parametrize(
        "key",
        [
            "with space.txt",
            "plus+sign",
            "ünïcödé/日本語/файл",
            "a/b//c/",
            "percent%20literal",
            "symbols !'()*&$@=;:,?#[]~",
            "dots/./and/../kept",
            "emoji 🎉",
        ],
    )
    async def test_awkward_keys_round_trip(self, s3: S3, bucket: str, key: str) -> None:
        """Keys with spaces, '+', Unicode, '//', '%', dot segments survive put, get and list."""
        await s3.put_object(bucket, key, key.encode())
        assert (await s3.get_object(bucket, key)).body == key.encode()
        assert (await s3.head_object(bucket, key)).size == len(key.encode())
        assert [o.key async for o in s3.iter_objects(bucket)] == [key]

    async def test_get_missing_key_is_not_found(self, s3: S3, bucket: str) -> None:
        """NoSuchKey is NotFound naming the object, not retried."""
        with pytest.raises(ck.NotFound) as caught:
            await s3.get_object(bucket, "missing")
        error = caught.value
        assert (error.code, error.status_code, error.attempt) == ("NoSuchKey", 404, 1)
        assert (error.resource_type, error.resource_id) == ("object", f"{bucket}/missing")

    async def test_head_missing_key_is_not_found(self, s3: S3, bucket: str) -> None:
        """A HEAD 404 (no body, so no code) is NotFound too."""
        with pytest.raises(ck.NotFound) as caught:
            await s3.head_object(bucket, "missing")
        assert caught.value.status_code == 404

    async def test_object_in_missing_bucket_is_not_found(self, s3: S3) -> None:
        """NoSuchBucket on an object call names the bucket."""
        name = new_bucket_name()
        with pytest.raises(ck.NotFound) as caught:
            await s3.get_object(name, "k")
        assert caught.value.code == "NoSuchBucket"
        assert (caught.value.resource_type, caught.value.resource_id) == ("bucket", name)

    async def test_byte_range(self, s3: S3, bucket: str) -> None:
        """A ranged get returns the slice; info.size is still the whole object's."""
        body = bytes(range(256)) * 4
        await s3.put_object(bucket, "bin", body)
        part = await s3.get_object(bucket, "bin", byte_range=(10, 19))
        assert part.body == body[10:20]
        assert part.info.size == len(body)
        tail = await s3.get_object(bucket, "bin", byte_range=(1000, None))
        assert tail.body == body[1000:]

    async def test_overwrite_replaces(self, s3: S3, bucket: str) -> None:
        """Putting the same key again replaces the object."""
        await s3.put_object(bucket, "k", b"one")
        await s3.put_object(bucket, "k", b"two")
        assert (await s3.get_object(bucket, "k")).body == b"two"


class TestListing:
    async def test_pages_follow_the_continuation_token(self, s3: S3, bucket: str) -> None:
        """25 keys at 10 a page: three requests, every key once, in order."""
        keys = [f"k{n:03d}" for n in range(25)]
        await put_all(s3, bucket, keys)
        pages: list[ListPage] = [p async for p in s3.list_objects_v2(bucket, page_size=10)]
        assert [len(p.objects) for p in pages] == [10, 10, 5]
        assert [p.is_truncated for p in pages] == [True, True, False]
        assert [p.key_count for p in pages] == [10, 10, 5]
        assert pages[-1].next_continuation_token is None
        assert [o.key for p in pages for o in p.objects] == keys
        assert all(p.bucket == bucket for p in pages)
        summaries: list[ObjectSummary] = [o async for o in s3.iter_objects(bucket, page_size=7)]
        assert [o.key for o in summaries] == keys
        assert all(o.size == 4 and o.etag and o.last_modified for o in summaries)

    async def test_stopping_early_requests_no_more_pages(self, s3: S3, bucket: str) -> None:
        """Breaking out after the first of several pages is clean: nothing is left to the GC."""
        await put_all(s3, bucket, [f"k{n}" for n in range(6)])
        async for summary in s3.iter_objects(bucket, page_size=2):
            assert summary.key == "k0"
            break
        pages = s3.list_objects_v2(bucket, page_size=2)
        first = await pages.__anext__()
        assert first.is_truncated and [o.key for o in first.objects] == ["k0", "k1"]

    async def test_prefix_delimiter_and_start_after(self, s3: S3, bucket: str) -> None:
        """A delimiter rolls keys up into common prefixes; start_after skips keys."""
        await put_all(s3, bucket, ["a/1", "a/2", "b/1", "c", "d e/f"])
        [page] = [p async for p in s3.list_objects_v2(bucket, delimiter="/")]
        assert [o.key for o in page.objects] == ["c"]
        assert page.common_prefixes == ("a/", "b/", "d e/")
        [page] = [p async for p in s3.list_objects_v2(bucket, prefix="a/")]
        assert page.prefix == "a/"
        assert [o.key for o in page.objects] == ["a/1", "a/2"]
        after = [o.key async for o in s3.iter_objects(bucket, start_after="b/1")]
        assert after == ["c", "d e/f"]

    async def test_empty_bucket_lists_one_empty_page(self, s3: S3, bucket: str) -> None:
        """An empty bucket is one request and one empty, final page."""
        pages = [p async for p in s3.list_objects_v2(bucket)]
        assert len(pages) == 1
        assert pages[0].objects == () and not pages[0].is_truncated

    async def test_bad_page_size_fails_at_the_call(self, s3: S3, bucket: str) -> None:
        """Arguments are checked when the iterator is made, before any request."""
        with pytest.raises(ck.ConfigError, match="page_size"):
            s3.list_objects_v2(bucket, page_size=1001)


async def _open_loopback(host: str, port: int) -> trio.abc.Stream:
    # Virtual-hosted names under "localhost" are loopback names (RFC 6761): connect to
    # 127.0.0.1 whatever the system resolver thinks of them.
    assert host == "localhost" or host.endswith(".localhost"), host
    return await trio.open_tcp_stream("127.0.0.1", port)


class TestAddressing:
    async def test_virtual_hosted(self, moto_server: MotoServer) -> None:
        """Virtual-hosted calls put the bucket in the host name, and moto routes them by it."""
        hosts: list[str] = []

        async def opener(host: str, port: int) -> trio.abc.Stream:
            hosts.append(host)
            return await _open_loopback(host, port)

        context = make_context(
            moto_server,
            transport=PooledTransport(open_stream=opener),
            endpoint=f"http://localhost:{moto_server.port}",
        )
        async with context as cloud:
            s3 = S3(cloud, addressing=Addressing.VIRTUAL)
            name = new_bucket_name()
            await s3.create_bucket(name)
            await s3.put_object(name, "dir/ü k", b"virtual")
            operation = s3.operations.get_object(name, "dir/ü k")
            assert operation.url == f"http://{name}.localhost:{moto_server.port}/dir/%C3%BC%20k"
            response = await cloud.execute(operation)
            assert response.content == b"virtual"
            assert [o.key async for o in s3.iter_objects(name)] == ["dir/ü k"]
            assert name in {b.name for b in await s3.list_buckets()}
        assert f"{name}.localhost" in hosts and "localhost" in hosts

    async def test_path_style(self, s3: S3, bucket: str) -> None:
        """Path-style calls (the default for a custom endpoint) name the bucket in the path."""
        await s3.put_object(bucket, "p", b"path")
        operation = s3.operations.get_object(bucket, "p")
        assert operation.url == f"{s3.operations.endpoint}/{bucket}/p"
        response = await s3.cloud.execute(operation)
        assert response.content == b"path"


class TestAuthentication:
    async def test_wrong_secret_is_signature_does_not_match(self, moto_server: MotoServer) -> None:
        """moto checks the signature: a wrong secret is InvalidCredentials, not retried."""
        wrong = ck.Credentials(moto_server.access_key, "not-the-secret-at-all")
        async with make_context(moto_server, credentials=wrong) as cloud:
            s3 = S3(cloud)
            with pytest.raises(ck.InvalidCredentials) as caught:
                await s3.list_buckets()
            with pytest.raises(ck.InvalidCredentials):
                await s3.put_object("any-bucket", "k", b"v")
        error = caught.value
        assert (error.code, error.status_code, error.attempt) == ("SignatureDoesNotMatch", 403, 1)
        assert "not-the-secret-at-all" not in str(error) + repr(error)

    async def test_unknown_access_key_is_invalid_access_key_id(
        self, moto_server: MotoServer
    ) -> None:
        """An access key moto never issued is InvalidAccessKeyId, as InvalidCredentials."""
        unknown = ck.Credentials("AKIAUNKNOWNKEY000000", "whatever")
        async with make_context(moto_server, credentials=unknown) as cloud:
            with pytest.raises(ck.InvalidCredentials) as caught:
                await S3(cloud).list_buckets()
        assert caught.value.code == "InvalidAccessKeyId"

    async def test_head_with_wrong_secret_is_a_plain_403(
        self, moto_server: MotoServer, bucket: str
    ) -> None:
        """A HEAD error has no body to name its code: a bad signature reads as a 403."""
        wrong = ck.Credentials(moto_server.access_key, "not-the-secret-at-all")
        async with make_context(moto_server, credentials=wrong) as cloud:
            with pytest.raises(ck.InsufficientPermissions) as caught:
                await S3(cloud).head_object(bucket, "k")
        assert caught.value.status_code == 403 and caught.value.code is None


@attrs.frozen
class _Tag:
    kind: str
    key: str


class TestChannel:
    async def test_thousand_objects_round_trip(self, moto_server: MotoServer) -> None:
        """1,000 puts as Submissions, listed back, a sample read: one reply per submission."""
        total = 1000
        async with make_context(moto_server) as cloud:
            s3 = S3(cloud)
            name = new_bucket_name()
            await s3.create_bucket(name)
            keys = [f"batch/{n:04d} ü" for n in range(total)]
            replies: dict[Hashable, ck.Reply] = {}
            duplicates: list[Hashable] = []
            puts_answered = trio.Event()
            reply_send, reply_receive = trio.open_memory_channel[ck.Reply](64)

            async def collect(expected: int) -> None:
                async with reply_receive:
                    for _ in range(expected):
                        reply = await reply_receive.receive()
                        if reply.correlation_id in replies:
                            duplicates.append(reply.correlation_id)
                        replies[reply.correlation_id] = reply
                        if len(replies) == total:
                            puts_answered.set()

            sample = keys[::100]
            # The runtime replies on reply_send itself: it stays open until every reply is in.
            async with reply_send, trio.open_nursery() as nursery:
                nursery.start_soon(collect, total + len(sample))
                async with cloud.submit_channel() as submit:
                    for key in keys:
                        operation = s3.operations.put_object(name, key, key.encode())
                        await submit.send(ck.Submission(operation, reply_send, _Tag("put", key)))
                    # Every put answered before any object is read back.
                    await puts_answered.wait()
                    for key in sample:
                        operation = s3.operations.get_object(name, key)
                        await submit.send(ck.Submission(operation, reply_send, _Tag("get", key)))

            assert duplicates == []
            assert len(replies) == total + len(sample)
            for tag, reply in replies.items():
                assert isinstance(tag, _Tag)
                response = reply.result()
                if tag.kind == "put":
                    put = s3.operations.parse_put_object(response, bucket=name, key=tag.key)
                    assert put.etag == hashlib.md5(tag.key.encode()).hexdigest()
                else:
                    got = s3.operations.parse_get_object(response, bucket=name, key=tag.key)
                    assert got.body == tag.key.encode()

            listed = [o.key async for o in s3.iter_objects(name, prefix="batch/")]
            assert listed == sorted(keys)
            assert cloud.statistics().router.replied == total + len(sample)


class TestStreaming:
    async def test_multi_megabyte_object_streams_in_chunks(self, s3: S3, bucket: str) -> None:
        """A 6 MiB object is read in many chunks, never whole, and arrives intact."""
        body = (hashlib.sha256(b"seed").digest() * (6 * 1024 * 1024 // 32))[: 6 * 1024 * 1024 + 7]
        await s3.put_object(bucket, "big/blob.bin", body, content_type="application/octet-stream")
        digest = hashlib.sha256()
        sizes: list[int] = []
        async with s3.open_object(bucket, "big/blob.bin") as obj:
            assert obj.info.size == len(body)
            assert obj.info.etag == hashlib.md5(body).hexdigest()
            assert obj.info.content_type == "application/octet-stream"
            assert obj.response.status_code == 200
            async for chunk in obj.aiter_bytes(256 * 1024):
                digest.update(chunk)
                sizes.append(len(chunk))
        assert digest.digest() == hashlib.sha256(body).digest()
        assert sum(sizes) == len(body)
        assert len(sizes) >= 20 and max(sizes) <= 256 * 1024

    async def test_leaving_unread_releases_the_connection(self, s3: S3, bucket: str) -> None:
        """Leaving the block without reading the body is fine; later calls still work."""
        await s3.put_object(bucket, "blob", bytes(2 * 1024 * 1024))
        async with s3.open_object(bucket, "blob") as obj:
            assert obj.info.size == 2 * 1024 * 1024
        assert s3.cloud.statistics().runner.inflight == 0
        async with s3.open_object(bucket, "blob", byte_range=(0, 99)) as obj:
            assert await obj.aread() == bytes(100)
            assert obj.info.size == 2 * 1024 * 1024
            assert obj.num_bytes_downloaded == 100

    async def test_leaving_partly_read(self, s3: S3, bucket: str) -> None:
        """Stopping after the first chunk releases everything without a warning."""
        await s3.put_object(bucket, "blob", bytes(2 * 1024 * 1024))
        async with s3.open_object(bucket, "blob") as obj:
            async for chunk in obj.aiter_raw(1024):
                assert chunk == bytes(1024)
                break
        assert s3.cloud.statistics().runner.inflight == 0

    async def test_missing_key_raises_on_entering(self, s3: S3, bucket: str) -> None:
        """NotFound comes from `async with`, naming the object; the block never runs."""
        entered = False
        with pytest.raises(ck.NotFound) as caught:
            async with s3.open_object(bucket, "nope"):
                entered = True
        assert not entered
        assert caught.value.code == "NoSuchKey"
        assert caught.value.resource_id == f"{bucket}/nope"

    async def test_errors_from_the_block_are_left_alone(self, s3: S3, bucket: str) -> None:
        """A NotFound raised by the caller's own code inside the block is not relabelled."""
        await s3.put_object(bucket, "k", b"v")
        with pytest.raises(ck.NotFound) as caught:
            async with s3.open_object(bucket, "k"):
                raise ck.NotFound("something else")
        assert caught.value.resource_type is None
