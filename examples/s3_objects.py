"""Upload, list and read S3 objects through the runtime, against a local S3 server.

Start a local S3 first; moto's server is the quickest:

    pip install 'moto[server]'
    moto_server -p 5000                 # or: python -m moto.server -p 5000

MinIO works too (``minio server /tmp/data`` listens on http://127.0.0.1:9000). Then run

    python examples/s3_objects.py [ENDPOINT]

ENDPOINT defaults to ``$AWS_ENDPOINT_URL``, else ``http://127.0.0.1:5000``. Credentials come
from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (``testing`` / ``testing`` when unset;
moto accepts any key unless its authentication is switched on). The example starts nothing
itself and talks to the endpoint only.
"""

from __future__ import annotations

import contextlib
import os
import sys

import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import S3

BUCKET = "cloudkit-example"
REGION = "us-east-1"
MONTHS = 12


async def upload_through_the_channel(cloud: ck.Cloud, s3: S3) -> tuple[int, int]:
    """Send one put_object Submission per month; count the replies."""
    send_replies, replies = trio.open_memory_channel[ck.Reply](MONTHS)
    async with cloud.submit_channel() as submit:
        for month in range(1, MONTHS + 1):
            key = f"reports/2024/{month:02d}.csv"
            body = f"month,total\n2024-{month:02d},{month * 100}\n".encode()
            operation = s3.operations.put_object(BUCKET, key, body, content_type="text/csv")
            await submit.send(ck.Submission(operation, reply_to=send_replies, correlation_id=key))
    ok = failed = 0
    for _ in range(MONTHS):
        reply = await replies.receive()
        if reply.ok:
            ok += 1
        else:
            failed += 1
            print(f"{reply.correlation_id}: {type(reply.error).__name__}: {reply.error}")
    return ok, failed


async def main(endpoint: str) -> None:
    credentials = ck.Credentials(
        os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        # The rest of the settings may come from CLOUD_* / AWS_* variables (AWS_MAX_ATTEMPTS, ...).
        .config(ck.CloudConfig.from_env(ck.ProviderType.AWS, region=REGION, endpoint=endpoint))
        # Every call is signed with SigV4 for "s3" in REGION: an AWS context's default.
        .auth_provider(ck.StaticAuthProvider(credentials))
        .logger(ck.NoopLogger())
        .build()
    )
    async with context as cloud:
        s3 = S3(cloud)  # path-style URLs for a custom endpoint
        with contextlib.suppress(ck.AlreadyExists):  # a second run finds it there
            await s3.create_bucket(BUCKET)
        print(f"bucket {BUCKET} ready at {endpoint}")

        ok, failed = await upload_through_the_channel(cloud, s3)
        print(f"uploaded {ok} objects through the channel ({failed} failed)")
        await s3.put_object(BUCKET, "reports/summary.txt", b"twelve months\n")

        async for page in s3.list_objects_v2(BUCKET, prefix="reports/", delimiter="/"):
            keys = [summary.key for summary in page.objects]
            print(f"reports/: folders {list(page.common_prefixes)}, files {keys}")

        pages = sizes = 0
        async for page in s3.list_objects_v2(BUCKET, prefix="reports/2024/", page_size=5):
            pages += 1
            sizes += sum(summary.size for summary in page.objects)
        print(f"reports/2024/: {MONTHS} objects, {sizes} bytes, listed in {pages} pages")

        march = await s3.get_object(BUCKET, "reports/2024/03.csv")
        print(f"read {march.info.key} ({march.info.content_type}): {march.body.decode()!r}")

        async with s3.open_object(BUCKET, "reports/2024/12.csv") as obj:
            chunks = [chunk async for chunk in obj.aiter_bytes()]
        print(f"streamed {obj.info.key}: {sum(map(len, chunks))} bytes of {obj.info.size}")

        try:
            await s3.head_object(BUCKET, "reports/2023/01.csv")
        except ck.NotFound as error:
            print(f"missing keys are NotFound: {error.resource_id}")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AWS_ENDPOINT_URL")
    url = url or "http://127.0.0.1:5000"
    try:
        trio.run(main, url)
    except ck.NetworkError as error:
        sys.exit(f"no S3 server answers at {url} ({type(error).__name__}); start one first")
