"""CloudContext: building, running, executing, retrying and shutting down."""

from __future__ import annotations

import gzip
import math
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.aws import AwsSigner
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner

from ._support import ENDPOINT, Script, context, op


class TestBuilder:
    def test_defaults(self) -> None:
        """Defaults: AWS's chain and signer, backoff with max_retries+1 attempts, a breaker."""
        ctx = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(max_retries=5))
            .build()
        )
        settings = ctx._settings
        assert isinstance(settings.auth_provider, ck.ChainAuthProvider)
        assert [type(p).__name__ for p in settings.auth_provider.providers] == [
            "EnvAuthProvider",
            "ProfileAuthProvider",
            "ContainerAuthProvider",
        ]
        assert isinstance(settings.signer, AwsSigner)
        assert isinstance(settings.retry_policy, ck.ExponentialBackoff)
        assert settings.retry_policy.max_attempts == 6
        assert isinstance(settings.breaker, ck.CircuitBreaker)
        assert isinstance(settings.collectors[0], ck.NoopMetrics)
        assert isinstance(settings.logger, ck.StdlibLogger)

    def test_circuit_breaker_as_retry_policy(self) -> None:
        """A CircuitBreaker policy sets the breaker settings and retries with its inner policy."""
        inner = ck.FixedDelay(0.5, 2)
        ctx = (
            ck.CloudContext.builder("aws")
            .retry_policy(ck.CircuitBreaker(inner, break_duration=9.0))
            .build()
        )
        assert ctx._settings.retry_policy is inner
        assert ctx._settings.breaker is not None and ctx._settings.breaker.break_duration == 9.0

    @pytest.mark.parametrize(
        ("method", "value"),
        [
            ("config", {"region": "x"}),
            ("auth_provider", "env"),
            ("retry_policy", 3),
            ("metrics_collector", object()),
            ("logger", print),
            ("transport", httpx.AsyncClient),
            ("signer", None),
            ("circuit_breaker", ck.ExponentialBackoff()),
        ],
    )
    def test_wrong_types_are_refused(self, method: str, value: object) -> None:
        """Each builder option checks what it is given."""
        with pytest.raises(TypeError):
            getattr(ck.CloudContext.builder("aws"), method)(value)

    def test_build_starts_nothing_and_context_is_not_constructible(self) -> None:
        """build() returns a context without running anything; contexts come from the builder."""
        ctx = ck.CloudContext.builder("gcp").build()
        assert ctx.provider is ck.ProviderType.GCP
        assert isinstance(ctx._settings.auth_provider, ck.EnvAuthProvider)
        with pytest.raises(TypeError):
            ck.CloudContext()
        with pytest.raises(TypeError):
            ck.Cloud()

    def test_bad_refresh_windows(self) -> None:
        """Refresh windows are validated."""
        with pytest.raises(ck.ConfigError, match="mandatory"):
            ck.CloudContext.builder("aws").credential_refresh(advisory=10, mandatory=20)


class TestExecute:
    async def test_success(self, autojump_clock: trio.testing.MockClock) -> None:
        """execute() sends the operation and returns the response."""
        script = Script()
        async with context(script) as cloud:
            response = await cloud.execute(op(headers={"x-a": "1"}, params={"q": "v"}))
        assert response.status_code == 200 and response.content == b"ok" and response.attempts == 1
        [request] = script.requests
        assert str(request.url) == f"{ENDPOINT}/bucket/key?q=v"
        assert request.headers["x-a"] == "1"

    async def test_bodies_in_memory_streamed_or_encoded_arrive_decoded(self) -> None:
        """Whatever form the transport hands a body over in, content is the decoded bytes."""
        payload = b"cloudkit " * 1_000

        async def chunks() -> AsyncIterator[bytes]:
            for n in range(0, len(payload), 1_000):
                yield payload[n : n + 1_000]

        script = Script(
            [
                lambda request: httpx.Response(200, content=payload),
                lambda request: httpx.Response(200, content=chunks()),
                lambda request: httpx.Response(
                    200, content=gzip.compress(payload), headers={"Content-Encoding": "gzip"}
                ),
            ]
        )
        async with context(script) as cloud:
            for _ in range(3):
                assert (await cloud.execute(op())).content == payload

    async def test_requests_are_framed_as_httpx_frames_them(self) -> None:
        """Host, Content-Length, params and caller headers match what httpx.Request builds."""
        cases = [
            op(),
            op(method="POST", body=b"payload", headers={"Content-Type": "application/json"}),
            op(method="PUT"),
            op(method="DELETE", params={"versionId": "3", "q": "a b"}),
            op(headers={"Host": "bucket.example.com", "X-Amz-Meta-A": "1"}),
            op(method="POST", body=b"xyz", headers={"Content-Length": "3"}),
        ]
        script = Script()
        # Unsigned: what a signer adds (and how it encodes the URL) is its own business.
        async with context(script, breaker=None, signer=NoAuthSigner()) as cloud:
            for operation in cases:
                await cloud.execute(operation)
        for operation, sent in zip(cases, script.requests, strict=True):
            expected = httpx.Request(
                operation.method,
                f"{ENDPOINT}{operation.path}",
                params=operation.params or None,
                headers=operation.headers or None,
                content=operation.body or None,
            )
            assert sent.url == expected.url
            assert sorted(sent.headers.multi_items()) == sorted(expected.headers.multi_items())
            assert sent.content == operation.body

    async def test_relative_path_needs_an_endpoint(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A path operation without a configured endpoint is a clear ConfigError."""
        async with context(config=ck.CloudConfig()) as cloud:
            with pytest.raises(ck.ConfigError, match="endpoint"):
                await cloud.execute(op())

    async def test_errors_carry_context(self, autojump_clock: trio.testing.MockClock) -> None:
        """A final error names the provider, service, operation, endpoint and attempt."""
        async with context(Script([404])) as cloud:
            with pytest.raises(ck.NotFound) as info:
                await cloud.execute(op())
        error = info.value
        assert (error.provider, error.service, error.operation) == ("aws", "s3", "get_object")
        assert error.endpoint == ENDPOINT and error.attempt == 1 and error.status_code == 404

    async def test_bad_arguments(self, autojump_clock: trio.testing.MockClock) -> None:
        """execute() refuses non-operations and bad timeouts."""
        async with context() as cloud:
            with pytest.raises(TypeError):
                await cloud.execute("GET /")  # type: ignore[arg-type]
            with pytest.raises(ck.ConfigError, match="timeout"):
                await cloud.execute(op(), timeout=-1)


class TestRetries:
    async def test_retries_follow_the_policy(self, autojump_clock: trio.testing.MockClock) -> None:
        """Two 503s then success: three attempts, 100 ms then 200 ms apart."""
        script = Script([503, 503])
        metrics = RecordingMetrics()
        async with context(script, metrics=metrics) as cloud:
            response = await cloud.execute(op())
        assert response.attempts == 3
        gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
        assert gaps == pytest.approx([0.1, 0.2])
        assert metrics.counter_total("retries", service="s3") == 2
        [record] = metrics.operations
        assert record.outcome is ck.OperationOutcome.SUCCESS and record.retry_count == 2

    async def test_gives_up_after_max_attempts(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The last error is raised once max_attempts attempts failed."""
        script = Script([500, 500, 500, 500])
        async with context(
            script, config=ck.CloudConfig(endpoint=ENDPOINT, max_retries=2)
        ) as cloud:
            with pytest.raises(ck.ProviderError) as info:
                await cloud.execute(op())
        assert len(script.requests) == 3 and info.value.attempt == 3

    async def test_retry_after_is_honoured(self, autojump_clock: trio.testing.MockClock) -> None:
        """A 429 with Retry-After: 2 delays the retry by two seconds."""
        script = Script([429])
        async with context(script) as cloud:
            await cloud.execute(op())
        assert script.times[1] - script.times[0] == pytest.approx(2.0)

    async def test_final_errors_are_not_retried(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 403 is final at once."""
        script = Script([403])
        async with context(script) as cloud:
            with pytest.raises(ck.InsufficientPermissions):
                await cloud.execute(op())
        assert len(script.requests) == 1

    async def test_non_idempotent_only_retried_when_never_sent(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A POST is not retried after a 503, but is after a connect failure."""
        script = Script([503])
        async with context(script) as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op(method="POST"))
            assert len(script.requests) == 1
            script.steps = [httpx.ConnectError("refused")]
            response = await cloud.execute(op(method="POST"))
        assert response.attempts == 2
        forced = Script([503])
        async with context(forced) as cloud:
            await cloud.execute(op(method="POST", idempotent=True))
        assert len(forced.requests) == 2

    async def test_retry_never_scheduled_past_the_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With 1 s left and a 2 s Retry-After, the error is raised now instead of retrying."""
        script = Script([429])
        async with context(script) as cloud:
            start = trio.current_time()
            with pytest.raises(ck.RateLimited):
                await cloud.execute(op(), timeout=1.0)
            assert trio.current_time() - start < 1.0
        assert len(script.requests) == 1


class _Hang(httpx.AsyncBaseTransport):
    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await trio.sleep(self.delays.pop(0) if self.delays else 0)
        return httpx.Response(200, content=b"late")


class TestTimeouts:
    async def test_attempt_timeout_is_retried(self, autojump_clock: trio.testing.MockClock) -> None:
        """An attempt slower than config.timeout times out and is retried."""
        transport = _Hang([50.0])
        async with context(
            transport, config=ck.CloudConfig(endpoint=ENDPOINT, timeout=5.0)
        ) as cloud:
            response = await cloud.execute(op())
        assert response.content == b"late" and transport.calls == 2

    async def test_operation_deadline(self, autojump_clock: trio.testing.MockClock) -> None:
        """An operation past its own timeout raises OperationTimeout at the deadline."""
        transport = _Hang([50.0, 50.0])
        async with context(transport) as cloud:
            start = trio.current_time()
            with pytest.raises(ck.OperationTimeout, match="deadline"):
                await cloud.execute(op(timeout=3.0))
            assert trio.current_time() - start == pytest.approx(3.0)

    async def test_caller_cancellation_propagates(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A caller's own cancel scope cancels the operation with trio.Cancelled, not an error."""
        async with context(_Hang([50.0])) as cloud:
            with trio.move_on_after(1.0) as scope:
                await cloud.execute(op())
            assert scope.cancelled_caught
            assert cloud.statistics().runner.inflight == 0


class TestChannel:
    async def test_exactly_one_reply_per_submission(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Each submission gets one reply carrying its correlation id."""
        script = Script([503, 404])
        async with context(script) as cloud:
            send, receive = trio.open_memory_channel[ck.Reply](10)
            async with cloud.submit_channel() as submit:
                for n in range(5):
                    await submit.send(ck.Submission(op(), send, correlation_id=n))
            replies = [await receive.receive() for _ in range(5)]
        assert sorted(r.correlation_id for r in replies) == [0, 1, 2, 3, 4]
        errors = [r.error for r in replies if r.error is not None]
        assert len(errors) == 1 and isinstance(errors[0], ck.NotFound)
        assert all(r.response is not None for r in replies if r.error is None)

    async def test_submit_nowait_raises_overloaded(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A full queue makes submit_nowait raise Overloaded; nothing is lost."""
        config = ck.CloudConfig(endpoint=ENDPOINT, queue_size=2, max_concurrency=1)
        async with context(_Hang([10.0]), config=config) as cloud:
            send, receive = trio.open_memory_channel[ck.Reply](10)
            accepted = 0
            for n in range(3):
                cloud.submit_nowait(ck.Submission(op(), send, correlation_id=n))
                accepted += 1
                await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(ck.Overloaded, match="queue is full"):
                cloud.submit_nowait(ck.Submission(op(), send, correlation_id=99))
            replies = [await receive.receive() for _ in range(accepted)]
        assert accepted == 3  # one running, two queued
        assert all(r.ok for r in replies)

    def test_reply_carries_one_of_response_and_error(self) -> None:
        """A Reply is a response or an error, never both or neither."""
        with pytest.raises(ValueError, match="exactly one"):
            ck.Reply(1)
        reply = ck.Reply(1, error=ck.NotFound("x"))
        with pytest.raises(ck.NotFound):
            reply.result()

    def test_submission_validates(self) -> None:
        """A Submission needs an Operation and a memory send channel."""
        send, _ = trio.open_memory_channel[ck.Reply](1)
        with pytest.raises(TypeError):
            ck.Submission("op", send)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ck.Submission(op(), print)  # type: ignore[arg-type]


class TestShutdown:
    async def test_in_flight_work_finishes_within_grace(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Leaving the block lets running and queued operations finish inside the grace period."""
        config = ck.CloudConfig(endpoint=ENDPOINT, shutdown_grace=10.0, max_concurrency=2)
        send, receive = trio.open_memory_channel[ck.Reply](10)
        async with context(_Hang([1.0] * 6), config=config) as cloud:
            for n in range(6):
                cloud.submit_nowait(ck.Submission(op(), send, correlation_id=n))
        replies = [receive.receive_nowait() for _ in range(6)]
        assert [r.error for r in replies] == [None] * 6

    async def test_past_grace_everything_gets_context_closed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Work that cannot finish in the grace period is answered with ContextClosed."""
        config = ck.CloudConfig(
            endpoint=ENDPOINT, shutdown_grace=1.0, max_concurrency=2, timeout=1000
        )
        send, receive = trio.open_memory_channel[ck.Reply](10)
        results: list[BaseException | ck.Response] = []

        async def caller(cloud: ck.Cloud) -> None:
            try:
                results.append(await cloud.execute(op()))
            except ck.CloudError as error:
                results.append(error)

        async with trio.open_nursery() as nursery:
            async with context(_Hang([100.0] * 10), config=config) as cloud:
                nursery.start_soon(caller, cloud)
                for n in range(5):
                    cloud.submit_nowait(ck.Submission(op(), send, correlation_id=n))
                await trio.testing.wait_all_tasks_blocked()
                start = trio.current_time()
            assert trio.current_time() - start == pytest.approx(1.0, abs=0.2)
        replies = [receive.receive_nowait() for _ in range(5)]
        assert all(isinstance(r.error, ck.ContextClosed) for r in replies)
        assert len(results) == 1 and isinstance(results[0], ck.ContextClosed)

    async def test_closed_context_refuses_new_work(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After shutdown, execute and submit_nowait raise ContextClosed."""
        async with context() as cloud:
            pass
        with pytest.raises(ck.ContextClosed):
            await cloud.execute(op())
        send, _ = trio.open_memory_channel[ck.Reply](1)
        with pytest.raises(ck.ContextClosed):
            cloud.submit_nowait(ck.Submission(op(), send))

    async def test_serve_in_a_nursery_and_aclose(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """serve() embeds the runtime in the caller's nursery; aclose() stops it gracefully."""
        async with trio.open_nursery() as nursery:
            cloud = await nursery.start(context().serve)
            assert (await cloud.execute(op())).status_code == 200
            await cloud.aclose()
            await cloud.aclose()  # idempotent

    async def test_body_exception_propagates_unwrapped(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An exception in the async-with body comes out as itself, not in a group."""
        with pytest.raises(KeyError):
            async with context():
                raise KeyError("mine")

    async def test_metrics_are_drained_on_shutdown(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Every operation's metrics reach the collector by the time the context exits."""
        metrics = RecordingMetrics()
        async with context(metrics=metrics) as cloud:
            for _ in range(20):
                await cloud.execute(op())
        assert metrics.outcomes()["success"] == 20


class TestLogging:
    async def test_retries_are_logged_without_secrets(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A retry logs one INFO line with structured fields and no secret."""
        logger = CapturingLogger()
        async with context(Script([503]), logger=logger) as cloud:
            await cloud.execute(op())
        [entry] = [e for e in logger.entries if e.message == "operation retried"]
        assert entry.fields["attempt"] == 1 and entry.fields["delay"] == 0.1
        assert entry.fields["error"] == "ServiceUnavailable"
        assert "SECRET" not in repr(logger.entries)
        assert not math.isnan(entry.fields["delay"])  # type: ignore[arg-type]
