"""A rate limit that fails fast: the caller decides what to do with ``Throttled``."""

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.transport import NoAuthSigner


# --8<-- [start:fetch]
async def fetch(cloud: ck.Cloud, operation: ck.Operation) -> ck.Response | None:
    try:
        return await cloud.execute(operation)
    except ck.Throttled as error:
        await trio.sleep(error.retry_after or 0.0)  # or drop the work, or queue it
        return None


# --8<-- [end:fetch]


async def main() -> None:
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="https://storage.example.com"))
        .signer(NoAuthSigner())
        .transport(httpx.MockTransport(lambda request: httpx.Response(200)))
        .rate_limit(ck.RateLimit(2.0, wait=False))
        .build()
    )
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
    async with context as cloud:
        answers = [await fetch(cloud, operation) for _ in range(3)]
    # One token: the first call is sent, the second finds none, the third (half a second
    # later) finds the refilled one.
    assert [answer is not None for answer in answers] == [True, False, True], answers


if __name__ == "__main__":
    trio.run(main)
