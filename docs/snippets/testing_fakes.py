"""A fake endpoint over real loopback HTTP, failing on a seeded plan (docs/testing.md)."""

# docs-test: real-clock

from __future__ import annotations

import contextlib

import trio

import cloudkit_trio as ck
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.testing import EndpointFaults, FakeEndpoint, FaultPlan, FaultWindow
from cloudkit_trio.transport import NoAuthSigner


# --8<-- [start:outage]
async def test_the_breaker_opens_in_an_outage_and_closes_after() -> None:
    # "store" is down for its first half second, then healthy.
    plan = FaultPlan(
        seed=1, endpoints={"store": EndpointFaults(windows=[FaultWindow(start=0.0, end=0.5)])}
    )
    endpoint = FakeEndpoint("store", plan)
    policy = ck.CircuitBreaker(
        ck.NoRetry(), minimum_throughput=5, failure_ratio=0.5, break_duration=0.6
    )
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(endpoint.serve)  # a free port of 127.0.0.1
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=url))
            .signer(NoAuthSigner())
            .retry_policy(policy)
            .logger(ck.NoopLogger())
            .build()
        )
        async with context as cloud:
            with trio.fail_after(5):
                while cloud.breaker(url).state is not BreakerState.OPEN:
                    with contextlib.suppress(ck.ServiceUnavailable):  # the outage
                        await cloud.execute(operation)
            await trio.sleep(0.7)  # the break; the outage is over by now
            response = await cloud.execute(operation)  # the probe closes the breaker
            assert response.status_code == 200
            assert cloud.breaker(url).state is BreakerState.CLOSED
        nursery.cancel_scope.cancel()
    assert endpoint.injected  # the faults it served, by kind


# --8<-- [end:outage]


async def main() -> None:
    await test_the_breaker_opens_in_an_outage_and_closes_after()


if __name__ == "__main__":
    trio.run(main)
