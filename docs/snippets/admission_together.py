"""Every admission control of one context together (docs/admission.md)."""

# docs-test: real-clock

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.transport import NoAuthSigner


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


async def main() -> None:
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="https://storage.example.com"))
        .signer(NoAuthSigner())
        .transport(httpx.MockTransport(answer))
        .retry_budget(ck.RetryBudget(ratio=0.1))
        .rate_limit(ck.RateLimit(100.0, burst=10, adaptive=True, max_rate=500.0))
        # The 50 calls below start at once: those past the limit wait up to a second.
        .adaptive_concurrency(ck.AdaptiveConcurrency(max_limit=64, max_wait=1.0))
        .build()
    )
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
    async with context as cloud:
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(cloud.execute, operation)
        for endpoint in cloud.snapshot().admission:
            rate = endpoint.rate_limit.rate if endpoint.rate_limit else None
            balance = endpoint.budget.balance if endpoint.budget else None
            print(
                endpoint.endpoint,
                f"limit={endpoint.concurrency_limit}",
                f"rate={rate}/s",
                f"retries the budget allows={balance}",
                f"latency median={endpoint.latency.median}",
            )


if __name__ == "__main__":
    trio.run(main)
