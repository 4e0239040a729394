"""Errors that say why: an open circuit names what opened it, a skipped retry says so."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck

from ._support import ENDPOINT, Script, context, op

BREAKER = ck.CircuitBreaker(
    inner=ck.NoRetry(), failure_ratio=0.5, minimum_throughput=4, break_duration=5.0
)
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def failing(status: int, code: str) -> httpx.Response:
    # The server quotes the secret in its error body: nothing of it may reach the error.
    body = f"<Error><Code>{code}</Code><Message>{SECRET}</Message></Error>".encode()
    return httpx.Response(status, content=body, headers={"Content-Type": "application/xml"})


class TestCircuitOpenError:
    async def test_carries_when_it_opened_and_the_failures_that_opened_it(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        steps = [
            lambda r: failing(503, "SlowDown"),
            httpx.ConnectError("refused"),
            lambda r: failing(500, "InternalError"),
            lambda r: failing(503, "SlowDown"),
        ]
        auth = ck.StaticAuthProvider(ck.Credentials("AKID", SECRET))
        async with context(Script(steps), policy=BREAKER, auth=auth) as cloud:
            for _ in range(4):
                with pytest.raises(ck.CloudError):
                    await cloud.execute(op())
            opened = trio.current_time()
            await trio.sleep(1.5)
            with pytest.raises(ck.CircuitOpenError) as caught:
                await cloud.execute(op())
            snapshot = cloud.breaker(ENDPOINT)
        error = caught.value
        assert error.endpoint == ENDPOINT
        assert error.opened_at == pytest.approx(opened)
        assert [(f.error, f.status_code, f.code) for f in error.failures] == [
            ("RateLimited", 503, "SlowDown"),
            ("ConnectError", None, None),
            ("ProviderError", 500, "InternalError"),
            ("RateLimited", 503, "SlowDown"),
        ]
        text = str(error)
        assert "opened 1.5 s ago" in text
        assert "RateLimited 503 SlowDown" in text and "ConnectError" in text
        assert "probe is allowed in 3.5 s" in text
        assert SECRET not in text and SECRET not in repr(error.failures)
        assert snapshot.opened_at == pytest.approx(opened)
        assert snapshot.opened_by == error.failures

    async def test_a_circuit_that_closes_again_forgets_its_failures(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with context(Script([503] * 4), policy=BREAKER) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
            await trio.sleep(5.0)
            await cloud.execute(op())  # the probe succeeds
            snapshot = cloud.breaker(ENDPOINT)
        assert snapshot.state is ck.BreakerState.CLOSED
        assert snapshot.opened_at is None and snapshot.opened_by == ()

    async def test_forced_open_says_so(self, autojump_clock: trio.testing.MockClock) -> None:
        async with context(Script(), policy=BREAKER) as cloud:
            await cloud.execute(op())
            cloud.force_open(ENDPOINT)
            with pytest.raises(ck.CircuitOpenError, match="forced open") as caught:
                await cloud.execute(op())
        assert caught.value.failures == ()
        assert caught.value.opened_at is not None

    def test_is_built_from_a_message_alone(self) -> None:
        error = ck.CircuitOpenError("open")
        assert error.opened_at is None and error.failures == () and error.retry_at is None


class TestNotRetried:
    async def test_a_non_idempotent_operation_says_why_it_was_not_retried(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        script = Script([503, 503])
        async with context(script, breaker=None) as cloud:
            with pytest.raises(ck.ServiceUnavailable) as caught:
                await cloud.execute(op("create", method="POST", body=b"{}"))
        assert len(script.requests) == 1
        error = caught.value
        assert error.not_retried is not None
        assert "POST is not idempotent" in error.not_retried
        assert "idempotent=True" in str(error)

    async def test_the_same_operation_marked_idempotent_is_retried(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        script = Script([503, 503])
        async with context(script, breaker=None) as cloud:
            response = await cloud.execute(op("create", method="POST", body=b"{}", idempotent=True))
        assert response.attempts == 3

    async def test_nothing_is_said_when_the_policy_would_not_retry_anyway(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With NoRetry, or for a final error, no retry was skipped: nothing to explain."""
        async with context(Script([503, 400]), breaker=None, policy=ck.NoRetry()) as cloud:
            with pytest.raises(ck.ServiceUnavailable) as no_retry:
                await cloud.execute(op("create", method="POST"))
        async with context(Script([400]), breaker=None) as cloud:
            with pytest.raises(ck.ValidationError) as final:
                await cloud.execute(op("create", method="POST"))
        assert no_retry.value.not_retried is None
        assert final.value.not_retried is None
        assert "not retried" not in str(final.value)
