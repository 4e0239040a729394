"""The S3 client (docs/aws.md): objects, listings, streaming, and the channel API.

Reads its endpoint, region and credentials from the environment (AWS_ENDPOINT_URL,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): AWS itself, or a local moto or
MinIO server.
"""

# docs-test: moto

from __future__ import annotations

import contextlib
import hashlib

import trio

# --8<-- [start:basics]
import cloudkit_trio as ck
from cloudkit_trio.aws import S3

context = (
    ck.CloudContext.builder(ck.ProviderType.AWS)
    # AWS_REGION and AWS_ENDPOINT_URL (or CLOUD_*) when set; AWS in us-east-1 otherwise.
    .config(ck.CloudConfig.from_env(ck.ProviderType.AWS))
    .build()  # credentials: the default chain (environment, ~/.aws, container)
)


async def basics() -> None:
    async with context as cloud:
        s3 = S3(cloud)
        with contextlib.suppress(ck.AlreadyExists):  # a second run finds it there
            await s3.create_bucket("my-reports")
        await s3.put_object("my-reports", "2024/05.csv", b"a,b\n1,2\n", content_type="text/csv")
        obj = await s3.get_object("my-reports", "2024/05.csv")
        print(obj.info.size, obj.info.etag, obj.info.last_modified, obj.body)
        async for summary in s3.iter_objects("my-reports", prefix="2024/"):
            print(summary.key, summary.size)


# --8<-- [end:basics]


# --8<-- [start:folders]
async def folders(s3: S3) -> list[str]:
    found: list[str] = []
    async for page in s3.list_objects_v2("my-reports", prefix="2024/", delimiter="/"):
        found.extend(page.common_prefixes)  # "2024/01/", "2024/02/", ...
    return found


# --8<-- [end:folders]


# --8<-- [start:sha256]
async def sha256_of(s3: S3, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    async with s3.open_object(bucket, key) as obj:
        print(obj.info.size, obj.info.content_type)
        async for chunk in obj.aiter_bytes():
            digest.update(chunk)
    return digest.hexdigest()


# --8<-- [end:sha256]


# --8<-- [start:upload-all]
async def upload_all(cloud: ck.Cloud, s3: S3, files: dict[str, bytes]) -> int:
    send, replies = trio.open_memory_channel[ck.Reply](len(files))
    async with cloud.submit_channel() as submit:
        for key, body in files.items():
            operation = s3.operations.put_object("my-reports", key, body)
            await submit.send(ck.Submission(operation, reply_to=send, correlation_id=key))
    stored = 0
    for _ in files:
        reply = await replies.receive()
        result = s3.operations.parse_put_object(
            reply.result(), bucket="my-reports", key=str(reply.correlation_id)
        )
        stored += result.etag is not None
    return stored


# --8<-- [end:upload-all]


async def main() -> None:
    await basics()
    fresh = ck.CloudContext.builder(ck.ProviderType.AWS).config(
        ck.CloudConfig.from_env(ck.ProviderType.AWS)
    )
    async with fresh.build() as cloud:
        s3 = S3(cloud)
        files = {f"2024/{month:02d}/totals.csv": b"total\n%d\n" % month for month in (1, 2)}
        assert await upload_all(cloud, s3, files) == 2
        assert await folders(s3) == ["2024/01/", "2024/02/"]
        expected = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
        assert await sha256_of(s3, "my-reports", "2024/05.csv") == expected


if __name__ == "__main__":
    trio.run(main)
