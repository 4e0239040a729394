"""A first real, signed S3 call: against a local moto server, AWS or MinIO.

Reads the endpoint, region and credentials from the environment (see the getting-started
page for moto's): AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""

# docs-test: moto

from __future__ import annotations

import contextlib

import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import S3


async def main() -> None:
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        # Region and endpoint from AWS_REGION and AWS_ENDPOINT_URL (or CLOUD_REGION, ...).
        .config(ck.CloudConfig.from_env(ck.ProviderType.AWS))
        # Every request is signed with SigV4; the keys come from the default chain:
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, then ~/.aws, then a container endpoint.
        .build()
    )
    async with context as cloud:
        s3 = S3(cloud)
        with contextlib.suppress(ck.AlreadyExists):  # a second run finds it there
            await s3.create_bucket("getting-started")
        await s3.put_object("getting-started", "hello.txt", b"hello, S3\n")
        obj = await s3.get_object("getting-started", "hello.txt")
        print(obj.info.key, obj.info.size, obj.body)

        # The same call as a plain operation: the runtime signs, retries and measures it.
        url = s3.operations.object_url("getting-started", "hello.txt")
        response = await cloud.execute(ck.Operation(service="s3", name="get_object", url=url))
        print(response.status_code, response.text, f"after {response.attempts} attempt(s)")
        assert response.content == obj.body == b"hello, S3\n"


if __name__ == "__main__":
    trio.run(main)
