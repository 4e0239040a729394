"""One span per operation, a CLIENT span per attempt, the runtime's decisions as events."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
from opentelemetry.trace import SpanKind, StatusCode

import cloudkit_trio as ck
from cloudkit_trio.tracing import SpanAttribute, SpanEvent

from ._support import (
    ENDPOINT,
    Recorder,
    Script,
    SlowTransport,
    builder,
    events,
    get,
    seconds,
    traced,
)

_EXPIRED = b"<Error><Code>ExpiredToken</Code><Message>token expired</Message></Error>"


class TestARetriedOperation:
    async def test_one_operation_span_with_an_attempt_span_per_attempt(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """503, 503, 200: three CLIENT children, resend counts 1 and 2, two retry events."""
        async with traced(Script([503, 503]), recorder) as cloud:
            response = await cloud.execute(get(path="/bucket/key?list-type=2"))
        assert response.attempts == 3
        operation = recorder.operation()
        assert operation.name == "s3.get_object"
        assert operation.kind is SpanKind.INTERNAL
        assert operation.parent is None
        assert dict(operation.attributes or {}) == {
            "rpc.system": "aws-api",
            "rpc.service": "s3",
            "rpc.method": "get_object",
            "cloud.provider": "aws",
            "cloud.region": "eu-west-1",
            "server.address": "127.0.0.1",
            "server.port": 9000,
            "cloudkit.outcome": "success",
            "cloudkit.attempts": 3,
            "http.response.status_code": 200,
        }
        assert operation.status.status_code is StatusCode.UNSET

        attempts = recorder.attempts(operation)
        assert [a.name for a in attempts] == ["GET"] * 3
        assert [a.kind for a in attempts] == [SpanKind.CLIENT] * 3
        first = dict(attempts[0].attributes or {})
        assert first == {
            "http.request.method": "GET",
            "server.address": "127.0.0.1",
            "server.port": 9000,
            "url.full": "http://127.0.0.1:9000/bucket/key",  # never the query string
            "cloudkit.attempt": 1,
            "http.response.status_code": 503,
            "error.type": "ServiceUnavailable",
        }
        assert [(a.attributes or {}).get("http.request.resend_count") for a in attempts] == [
            None,
            1,
            2,
        ]
        assert [(a.attributes or {})["http.response.status_code"] for a in attempts] == [
            503,
            503,
            200,
        ]
        assert [a.status.status_code for a in attempts] == [
            StatusCode.ERROR,
            StatusCode.ERROR,
            StatusCode.UNSET,
        ]
        assert "error.type" not in (attempts[2].attributes or {})

        # Trio's clock, placed on the wall clock: the backoffs the policy chose (100, 200 ms).
        origin = operation.start_time
        assert [seconds(a.start_time, origin) for a in attempts] == [0.0, 0.1, 0.3]
        assert seconds(operation.end_time, origin) == 0.3
        assert events(operation) == [
            (
                SpanEvent.RETRY,
                {
                    "cloudkit.attempt": 1,
                    "error.type": "ServiceUnavailable",
                    "cloudkit.retry.delay": 0.1,
                },
            ),
            (
                SpanEvent.RETRY,
                {
                    "cloudkit.attempt": 2,
                    "error.type": "ServiceUnavailable",
                    "cloudkit.retry.delay": 0.2,
                },
            ),
        ]
        assert [seconds(e.timestamp, origin) for e in operation.events] == [0.0, 0.1]


class TestFailures:
    async def test_a_failed_operation_is_an_error_with_its_type(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 404 is not retried: one attempt, both spans ERROR with error.type NotFound."""
        async with traced(Script([404]), recorder) as cloud:
            with pytest.raises(ck.NotFound):
                await cloud.execute(get())
        operation = recorder.operation()
        assert operation.status.status_code is StatusCode.ERROR
        assert operation.status.description == "NotFound"
        attributes = dict(operation.attributes or {})
        assert attributes["error.type"] == "NotFound"
        assert attributes["cloudkit.outcome"] == "failure"
        assert attributes["cloudkit.attempts"] == 1
        assert attributes["http.response.status_code"] == 404
        [attempt] = recorder.attempts(operation)
        assert attempt.status.status_code is StatusCode.ERROR
        assert (attempt.attributes or {})["error.type"] == "NotFound"
        assert events(operation) == []

    async def test_exhausted_retries_end_in_the_last_error(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Three 503s with max_attempts=3: two retry events, then ERROR ServiceUnavailable."""
        policy = ck.ExponentialBackoff(max_attempts=3)
        context = builder(Script([503] * 3)).retry_policy(policy).tracing(recorder.provider).build()
        async with context as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(get())
        operation = recorder.operation()
        assert operation.status.status_code is StatusCode.ERROR
        assert (operation.attributes or {})["error.type"] == "ServiceUnavailable"
        assert (operation.attributes or {})["cloudkit.attempts"] == 3
        assert len(recorder.attempts(operation)) == 3
        assert [name for name, _ in events(operation)] == [SpanEvent.RETRY] * 2

    async def test_a_transport_failure_has_no_status_code(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A connection refused is an attempt with error.type ConnectError and no status."""

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        context = builder(refuse).retry_policy(ck.NoRetry()).tracing(recorder.provider).build()
        async with context as cloud:
            with pytest.raises(ck.ConnectError):
                await cloud.execute(get())
        [attempt] = recorder.attempts(recorder.operation())
        attributes = dict(attempt.attributes or {})
        assert attributes["error.type"] == "ConnectError"
        assert "http.response.status_code" not in attributes


class TestDecisions:
    async def test_an_open_breaker_is_an_event_and_no_attempt(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """CircuitOpenError: a circuit_open event on the operation, zero attempt spans."""
        script = Script()
        async with traced(script, recorder) as cloud:
            cloud.force_open(ENDPOINT)
            with pytest.raises(ck.CircuitOpenError):
                await cloud.execute(get())
        assert script.requests == []
        operation = recorder.operation()
        assert recorder.attempts(operation) == []
        [(name, attributes)] = events(operation)
        assert name == SpanEvent.CIRCUIT_OPEN
        assert attributes["error.type"] == "CircuitOpenError"
        assert (operation.attributes or {})["error.type"] == "CircuitOpenError"
        assert (operation.attributes or {})["cloudkit.attempts"] == 0  # nothing sent
        assert operation.status.status_code is StatusCode.ERROR

    async def test_a_breaker_that_opens_between_attempts(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A retry the breaker refuses: one attempt span, a retry event, then circuit_open."""
        clouds: list[ck.Cloud] = []

        def fail_and_open(request: httpx.Request) -> httpx.Response:
            clouds[0].force_open(ENDPOINT)
            return httpx.Response(503)

        async with traced(Script([fail_and_open]), recorder) as cloud:
            clouds.append(cloud)
            with pytest.raises(ck.CircuitOpenError):
                await cloud.execute(get())
        operation = recorder.operation()
        assert len(recorder.attempts(operation)) == 1
        assert [name for name, _ in events(operation)] == [SpanEvent.RETRY, SpanEvent.CIRCUIT_OPEN]
        _, (_, refusal) = events(operation)
        assert refusal["cloudkit.attempt"] == 1  # attempts sent so far

    async def test_a_retry_the_budget_refuses(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The budget's one retry is spent: the next operation has a retry_suppressed event."""
        budget = ck.RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one retry
        context = (
            builder(Script([503] * 10))
            .retry_budget(budget)
            .circuit_breaker(None)
            .tracing(recorder.provider)
            .build()
        )
        async with context as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(get())  # its one retry uses up the budget
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(get())
        first, second = sorted(recorder.operations(), key=lambda s: s.start_time or 0)
        assert [name for name, _ in events(first)] == [SpanEvent.RETRY, SpanEvent.RETRY_SUPPRESSED]
        [(name, attributes)] = events(second)
        assert name == SpanEvent.RETRY_SUPPRESSED
        assert attributes == {"cloudkit.attempt": 1, "error.type": "ServiceUnavailable"}
        assert (second.attributes or {})["cloudkit.outcome"] == "retry_suppressed"
        assert len(recorder.attempts(second)) == 1

    async def test_a_rate_limit_refusal_is_a_throttled_event(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """RateLimit(wait=False) with no token left: Throttled, and a throttled event."""
        context = (
            builder(Script())
            .rate_limit(ck.RateLimit(1.0, burst=1, wait=False))
            .tracing(recorder.provider)
            .build()
        )
        async with context as cloud:
            await cloud.execute(get())
            with pytest.raises(ck.Throttled):
                await cloud.execute(get())
        _, refused = sorted(recorder.operations(), key=lambda s: s.start_time or 0)
        assert [name for name, _ in events(refused)] == [SpanEvent.THROTTLED]
        assert recorder.attempts(refused) == []
        assert (refused.attributes or {})["error.type"] == "Throttled"

    async def test_a_full_adaptive_limit_is_an_overloaded_event(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The third of three concurrent operations finds the limit of two full: overloaded."""

        settings = ck.AdaptiveConcurrency(initial_limit=2, min_limit=2, max_limit=2)
        context = (
            builder(SlowTransport())
            .adaptive_concurrency(settings)
            .tracing(recorder.provider)
            .build()
        )
        refused: list[ck.CloudError] = []

        async def call() -> None:
            try:
                await cloud.execute(get())
            except ck.Overloaded as error:
                refused.append(error)

        async with context as cloud, trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
                await trio.sleep(0.01)
        assert len(refused) == 1
        [overloaded] = [
            s
            for s in recorder.operations()
            if (s.attributes or {}).get("error.type") == "Overloaded"
        ]
        assert [name for name, _ in events(overloaded)] == [SpanEvent.OVERLOADED]
        assert recorder.attempts(overloaded) == []

    async def test_a_deadline_too_short_is_a_shed_event(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """0.5 s left for an endpoint that takes 1 s: refused unsent, with a shed event."""

        async with traced(SlowTransport(), recorder) as cloud:
            for _ in range(20):
                await cloud.execute(get())  # the endpoint's latency is learned
            with pytest.raises(ck.OperationTimeout):
                await cloud.execute(get(name="hurried", timeout=0.5))
        [shed] = [s for s in recorder.operations() if s.name == "s3.hurried"]
        [(name, attributes)] = events(shed)
        assert name == SpanEvent.SHED
        assert attributes == {"cloudkit.attempt": 1, "error.type": "OperationTimeout"}
        assert recorder.attempts(shed) == []
        assert (shed.attributes or {})["cloudkit.attempts"] == 0

    async def test_expired_credentials_are_refreshed_and_sent_again(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 401 ExpiredToken: a credentials_refresh event between the two attempt spans."""
        script = Script([lambda request: httpx.Response(401, content=_EXPIRED)])
        context = (
            builder(script)
            .signer(KeySigner())
            .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
            .tracing(recorder.provider)
            .build()
        )
        async with context as cloud:
            await cloud.execute(get())
        operation = recorder.operation()
        [(name, attributes)] = events(operation)
        assert name == SpanEvent.CREDENTIALS_REFRESH
        assert attributes == {"cloudkit.attempt": 1, "error.type": "ExpiredCredentials"}
        first, second = recorder.attempts(operation)
        assert (first.attributes or {})["error.type"] == "ExpiredCredentials"
        assert (second.attributes or {})["http.request.resend_count"] == 1
        assert (operation.attributes or {})["cloudkit.outcome"] == "success"


class KeySigner:
    """Puts the access key id on the request: an operation that needs credentials."""

    needs_credentials = True

    def sign(self, request: httpx.Request, credentials: ck.Credentials | None) -> None:
        assert credentials is not None
        request.headers["x-key"] = credentials.access_key


class TestNames:
    def test_event_and_attribute_names_are_namespaced(self) -> None:
        """Every event and own attribute is under cloudkit., each name once."""
        assert len(set(SpanEvent.ALL)) == len(SpanEvent.ALL) == 7
        assert all(name.startswith("cloudkit.") for name in SpanEvent.ALL)
        own = [v for k, v in vars(SpanAttribute).items() if k.isupper()]
        assert own and all(name.startswith("cloudkit.") for name in own)
