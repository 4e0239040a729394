"""Tests of your own code with cloudkit_trio.testing (docs/testing.md).

Written as pytest-trio tests; ``main()`` runs them in order, as the docs' test suite does,
on Trio's mock clock.
"""

from __future__ import annotations

import httpx
import pytest
import trio

# --8<-- [start:imports]
import cloudkit_trio as ck
from cloudkit_trio.testing import (
    CapturingLogger,
    Fault,
    FaultyTransport,
    RecordingMetrics,
    fast_retries,
    fast_retries_enabled,
    set_fast_retries,
)

# --8<-- [end:imports]


# --8<-- [start:context]
def context_for_tests(transport: httpx.AsyncBaseTransport, **spis: object) -> ck.CloudContext:
    """The context your code gets in tests: in-memory transport, static keys."""
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="https://storage.example.com"))
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .transport(transport)
    )
    if "metrics" in spis:
        builder = builder.metrics_collector(spis["metrics"])  # type: ignore[arg-type]
    if "logger" in spis:
        builder = builder.logger(spis["logger"])  # type: ignore[arg-type]
    return builder.build()


# --8<-- [end:context]


# --8<-- [start:faults]
async def test_retries_hide_a_flaky_endpoint() -> None:
    transport = FaultyTransport(rate=0.2, seed=1, weights={Fault.UNAVAILABLE: 1.0})
    metrics = RecordingMetrics()
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
    async with context_for_tests(transport, metrics=metrics) as cloud:
        for _ in range(20):
            response = await cloud.execute(operation)
            assert response.content == b"ok"
    # The context delivered every metric before it closed.
    assert metrics.outcomes()["success"] == 20
    assert transport.counts[Fault.UNAVAILABLE] > 0  # faults happened, retries hid them


# --8<-- [end:faults]


# --8<-- [start:slow]
async def test_a_slow_endpoint_times_out() -> None:
    transport = FaultyTransport(rate=1.0, weights={Fault.SLOW: 1.0}, slow_delay=60.0)
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key", timeout=5.0)
    async with context_for_tests(transport) as cloud:
        start = trio.current_time()
        try:
            await cloud.execute(operation)
        except ck.OperationTimeout:
            pass
        else:
            raise AssertionError("a 60 s answer beat a 5 s timeout")
        # On the autojump clock this took no real time at all.
        assert trio.current_time() - start == 5.0


# --8<-- [end:slow]


# --8<-- [start:logs]
async def test_what_gets_logged() -> None:
    answers = iter([503, 200])
    transport = httpx.MockTransport(lambda request: httpx.Response(next(answers)))
    logger = CapturingLogger(ck.LogLevel.INFO)
    async with context_for_tests(transport, logger=logger) as cloud:
        await cloud.execute(ck.Operation(service="s3", name="get_object", path="/bucket/key"))
    assert logger.messages() == ["operation retried"]  # at INFO, with the fields below
    retried = logger.entries[0]
    assert retried.fields["attempt"] == 1
    assert retried.fields["operation"] == "get_object"
    # Secrets never reach a log sink.
    assert not any("SECRET" in str(entry) for entry in logger.entries)


# --8<-- [end:logs]


# --8<-- [start:fast]
async def test_retries_happen_at_once() -> None:
    answers = iter([503, 503, 200])
    transport = httpx.MockTransport(lambda request: httpx.Response(next(answers)))
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
    async with context_for_tests(transport) as cloud:
        with fast_retries():  # every retry at once; attempts as the policy says
            start = trio.current_time()
            response = await cloud.execute(operation)
            assert trio.current_time() == start  # no backoff was waited for
    assert response.attempts == 3


async def test_no_more_than_two_attempts() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
    async with context_for_tests(transport) as cloud:
        with fast_retries(attempts=2), pytest.raises(ck.ServiceUnavailable) as caught:
            await cloud.execute(operation)
    assert caught.value.attempt == 2


# --8<-- [end:fast]


# --8<-- [start:suite]
# conftest.py: the whole suite, every context, channel submissions included.
def pytest_configure(config: object) -> None:
    set_fast_retries(True, attempts=3)


# --8<-- [end:suite]


async def main() -> None:
    await test_retries_hide_a_flaky_endpoint()
    await test_a_slow_endpoint_times_out()
    await test_what_gets_logged()
    await test_retries_happen_at_once()
    await test_no_more_than_two_attempts()
    pytest_configure(None)
    try:
        assert fast_retries_enabled()
        await test_retries_happen_at_once()
    finally:
        set_fast_retries(False)


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
