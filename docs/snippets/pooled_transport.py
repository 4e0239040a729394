"""The pooled transport with an httpx client, and on its own (docs/transport.md).

A tiny HTTP/1.1 server on 127.0.0.1 plays the endpoint.
"""

# docs-test: real-clock

from __future__ import annotations

import functools

import httpx
import trio

from cloudkit_trio.transport import PooledTransport


async def answer_ok(stream: trio.SocketStream) -> None:
    """Answer every request on the connection with a three-byte body."""
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            _, _, buffer = buffer.partition(b"\r\n\r\n")
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    except trio.BrokenResourceError:
        return


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
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, answer_ok, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        url = f"http://127.0.0.1:{port}/bucket/key"
        assert await with_a_client(url) == b"ok\n"
        assert await on_its_own(url) == b"ok\n"
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
