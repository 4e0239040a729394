"""The pooled transport with an httpx client, and on its own (docs/transport.md).

A fake endpoint of ``cloudkit_trio.testing`` on 127.0.0.1 plays the storage service.
"""

# docs-test: real-clock

from __future__ import annotations

import httpx
import trio

from cloudkit_trio.testing import FakeEndpoint
from cloudkit_trio.transport import PooledTransport


async def with_a_client(url: str) -> bytes:
    # --8<-- [start:client]
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        response = await client.get(url)  # e.g. "https://storage.example.com/bucket/key"
    # --8<-- [end:client]
    return response.content


async def on_its_own(url: str) -> bytes:
    # --8<-- [start:raw]
    timeouts = {"connect": 5.0, "read": 30.0, "write": 30.0, "pool": 30.0}
    async with PooledTransport(max_connections_per_endpoint=32) as transport:
        request = httpx.Request("GET", url, extensions={"timeout": timeouts})
        response = await transport.handle_async_request(request)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
    # --8<-- [end:raw]
    return body


async def main() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(FakeEndpoint("storage").serve) + "/bucket/key"
        assert await with_a_client(url) == b"storage: /bucket/key\n"
        assert await on_its_own(url) == b"storage: /bucket/key\n"
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
