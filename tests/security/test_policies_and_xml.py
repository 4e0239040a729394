"""Hostile servers against the retry policies and the XML reader: bounded waits, bounded depth."""

from __future__ import annotations

import math
from functools import partial

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import cloudkit_trio as ck
from cloudkit_trio._xml import MAX_DEPTH, parse_xml
from cloudkit_trio.aws._s3_xml import parse_list_page
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.testing import RecordingMetrics
from cloudkit_trio.transport._classify import (
    ProviderCode,
    error_from_response,
    parse_provider_code,
)

from ..runtime._support import ENDPOINT, context, op
from ._raw import read_head

# 2,000 nested elements in about 12 KiB: deep enough to overflow any recursive reader.
DEEP = b"<a>" * 2000 + b"</a>" * 2000
YEARS = 1e12


def nested(depth: int) -> bytes:
    return b"<Error>" + b"<a>" * (depth - 1) + b"</a>" * (depth - 1) + b"</Error>"


class TestBoundedRetryAfter:
    @pytest.mark.parametrize(
        "policy",
        [
            ck.FixedDelay(1.0, 3),
            ck.ExponentialBackoff(),
            ck.CircuitBreaker(inner=ck.FixedDelay(1.0, 3)),
            ck.CircuitBreaker(inner=ck.ExponentialBackoff()),
        ],
        ids=repr,
    )
    @pytest.mark.parametrize("kind", [ck.RateLimited, ck.ServiceUnavailable])
    def test_every_built_in_policy_caps_the_server_hint(
        self, policy: ck.RetryPolicy, kind: type[ck.RateLimited | ck.ServiceUnavailable]
    ) -> None:
        """A Retry-After of 1e12 s is cut to 30 s by every built-in policy."""
        decision = policy.should_retry(kind("slow down", retry_after=YEARS), 1)
        assert isinstance(decision, ck.Retry)
        assert decision.delay == 30.0

    def test_fixed_delay_cap_is_configurable(self) -> None:
        """FixedDelay(max_delay=) sets the cap; a hint below it is still honoured in full."""
        policy = ck.FixedDelay(1.0, 3, max_delay=5.0)
        assert policy.should_retry(ck.RateLimited("x", retry_after=YEARS), 1) == ck.Retry(5.0)
        assert policy.should_retry(ck.RateLimited("x", retry_after=4.0), 1) == ck.Retry(4.0)
        assert "max_delay=5.0" in repr(policy)

    def test_fixed_delay_default_cap_never_shortens_its_own_delay(self) -> None:
        """With a delay above 30 s the default cap is the delay itself; a smaller cap is refused."""
        policy = ck.FixedDelay(60.0, 3)
        assert policy.max_delay == 60.0
        assert policy.should_retry(ck.RateLimited("x", retry_after=YEARS), 1) == ck.Retry(60.0)
        with pytest.raises(ck.ConfigError, match="max_delay") as info:
            ck.FixedDelay(60.0, 3, max_delay=10.0)
        assert info.value.field == "max_delay"

    @pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan, "30", True])
    def test_bad_caps_are_config_errors(self, bad: object) -> None:
        """max_delay takes finite seconds only."""
        with pytest.raises(ck.ConfigError, match="max_delay"):
            ck.FixedDelay(0.0, 3, max_delay=bad)  # type: ignore[arg-type]

    @given(hint=st.floats(min_value=0.0, max_value=1e300), attempt=st.integers(1, 10))
    def test_no_built_in_policy_waits_longer_than_its_cap(self, hint: float, attempt: int) -> None:
        """Whatever the hint, a Retry's delay stays within the policy's max_delay."""
        for policy in (ck.FixedDelay(0.5, 20), ck.ExponentialBackoff(max_attempts=20)):
            decision = policy.should_retry(ck.ServiceUnavailable("x", retry_after=hint), attempt)
            assert isinstance(decision, ck.Retry)
            assert decision.delay <= policy.max_delay

    async def test_an_operation_without_deadline_waits_at_most_the_cap(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """End to end: 429 with Retry-After 1e12 and no deadline costs 30 s, not 31,700 years."""
        answers = iter([httpx.Response(429, headers={"Retry-After": "1000000000000"})])

        def handler(request: httpx.Request) -> httpx.Response:
            return next(answers, httpx.Response(200, content=b"ok"))

        async with context(handler, policy=ck.FixedDelay(1.0, 2), breaker=None) as cloud:
            start = trio.current_time()
            response = await cloud.execute(op())
            assert response.attempts == 2
            assert trio.current_time() - start == pytest.approx(30.0, abs=1.0)


class TestXmlDepth:
    def test_a_deep_document_is_a_serialization_error(self) -> None:
        """2,000 nested elements raise SerializationError naming the limit, not RecursionError."""
        with pytest.raises(ck.SerializationError, match=f"deeper than {MAX_DEPTH}"):
            parse_xml(DEEP, what="error")

    def test_the_limit_itself_is_accepted_and_walked_without_recursion(self) -> None:
        """A document exactly MAX_DEPTH deep parses, and iter() visits every element in order."""
        root = parse_xml(nested(MAX_DEPTH), what="error")
        assert [element.tag for element in root.iter()] == ["Error"] + ["a"] * (MAX_DEPTH - 1)
        with pytest.raises(ck.SerializationError):
            parse_xml(nested(MAX_DEPTH + 1), what="error")

    def test_a_deep_error_body_is_unparsed_and_the_status_decides(self) -> None:
        """An error body refused for depth gives no provider code: a 500 stays a ProviderError."""
        assert parse_provider_code({}, DEEP) == ProviderCode(None, None)
        error = error_from_response(500, {"Content-Type": "application/xml"}, DEEP)
        assert isinstance(error, ck.ProviderError) and error.retryable

    def test_a_deep_listing_is_a_serialization_error(self) -> None:
        """S3's listing reader refuses a deep document with SerializationError."""
        body = b"<ListBucketResult>" + DEEP + b"</ListBucketResult>"
        with pytest.raises(ck.SerializationError, match="ListObjectsV2"):
            parse_list_page(body)

    async def test_execute_counts_a_deep_error_body_in_breaker_and_metrics(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Through cloud.execute, a 500 with a deep XML body is a typed error, counted and measured."""

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(500, content=DEEP, headers={"Content-Type": "application/xml"})

        metrics = RecordingMetrics()
        async with context(handler, policy=ck.NoRetry(), metrics=metrics) as cloud:
            with pytest.raises(ck.ProviderError) as info:
                await cloud.execute(op())
            assert info.value.status == 500
            breaker = cloud.breaker(ENDPOINT)
            assert breaker.calls_in_window == 1 and breaker.failure_ratio == 1.0
        [record] = metrics.operations
        assert record.status_code == 500 and str(record.outcome) == "failure"

    async def test_a_deep_error_body_over_a_real_socket(self, nursery: trio.Nursery) -> None:
        """Over loopback with the pooled transport: a typed error, the breaker counts it, metrics too."""
        listeners = await nursery.start(partial(trio.serve_tcp, _deep_500, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        metrics = RecordingMetrics()
        cloud = (
            ck.CloudContext.builder("aws")
            .config(ck.CloudConfig(endpoint=endpoint, timeout=5.0))
            .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
            .metrics_collector(metrics)
            .retry_policy(ck.NoRetry())
            .build()
        )
        async with cloud as running:
            with pytest.raises(ck.ProviderError) as info:
                await running.execute(op())
            assert info.value.status == 500
            breaker = running.breaker(endpoint)
            assert breaker.calls_in_window == 1 and breaker.state is BreakerState.CLOSED
        [record] = metrics.operations
        assert record.status_code == 500


async def _deep_500(stream: trio.SocketStream) -> None:
    """Read one request head, answer 500 with the deep XML body, close."""
    received = await read_head(stream)
    if received is None:
        return
    head = (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(DEEP)).encode() + b"\r\n\r\n"
    )
    await stream.send_all(head + DEEP)
    await stream.aclose()
