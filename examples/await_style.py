"""Await an operation: ``response = await cloud.execute(op)``.

A flaky in-memory service answers 503 twice, then 200: the runtime retries with backoff and
returns the response. Run it with ``python examples/await_style.py``; no network needed.
"""

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck

answers = [503, 503]


def flaky_service(request: httpx.Request) -> httpx.Response:
    status = answers.pop(0) if answers else 200
    return httpx.Response(status, content=f"{request.method} {request.url.path}".encode())


async def main() -> None:
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .transport(httpx.MockTransport(flaky_service))
        .logger(ck.NoopLogger())
        .build()
    )
    async with context as cloud:
        operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
        response = await cloud.execute(operation)
        print(
            f"{response.status_code} {response.content.decode()} after {response.attempts} attempts"
        )
        try:
            await cloud.execute(ck.Operation(service="s3", name="get_object", url="ftp://x/"))
        except ck.ConfigError as error:
            print(f"bad input is a typed error: {type(error).__name__}")


if __name__ == "__main__":
    trio.run(main)
