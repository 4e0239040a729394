"""One lifecycle: exactly one reply and bounded time under shutdown, faults and cancellation."""

from __future__ import annotations

import math
from collections import Counter

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.actors import ChildSpec
from cloudkit_trio.runtime._lifecycle import ContextState, Lifecycle, LifecycleError
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner

from ._support import ENDPOINT, KeyEcho, Script, context, op


class _Slow(httpx.AsyncBaseTransport):
    """Answers 200 after ``delay`` seconds (trio time)."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await trio.sleep(self.delay)
        return httpx.Response(200, content=b"ok")


class _GatedAuth(ck.AuthProvider):
    """An auth provider that answers only once ``gate`` is set (never, by default)."""

    def __init__(self, delay: float | None = None) -> None:
        self.gate = trio.Event()
        self.delay = delay
        self.calls = 0

    async def get_credentials(self) -> ck.Credentials:
        self.calls += 1
        if self.delay is not None:
            await trio.sleep(self.delay)
        else:
            await self.gate.wait()
        return ck.Credentials("AKID", "SECRET")


class _RaisingLogger(ck.Logger):
    """A Logger whose every call raises, as a StructuredLogger on a closed stream does."""

    def is_enabled(self, level: ck.LogLevel) -> bool:
        return True

    def log(self, entry: ck.LogEntry) -> None:
        raise ValueError("I/O operation on closed file")


async def _execute(cloud: ck.Cloud, results: list[object]) -> None:
    """Run one operation; record its response or its CloudError."""
    try:
        results.append(await cloud.execute(op()))
    except ck.CloudError as error:
        results.append(error)


async def _crasher(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A user's worker that crashes soon after it started, every time."""
    task_status.started()
    await trio.sleep(0.1)
    raise RuntimeError("worker bug")


class TestLifecycleTable:
    def test_moves(self) -> None:
        """starting → running → closing → closed; nothing else."""
        life = Lifecycle("aws")
        assert life.state is ContextState.STARTING
        life.move(ContextState.RUNNING)
        with pytest.raises(LifecycleError):
            life.move(ContextState.STARTING)
        with pytest.raises(LifecycleError):
            life.move(ContextState.CLOSED)
        assert life.begin_closing() is True
        assert life.begin_closing() is False
        life.finish()
        assert life.state is ContextState.CLOSED
        with pytest.raises(LifecycleError):
            life.move(ContextState.RUNNING)

    def test_check_open_answers_by_state(self) -> None:
        """Only RUNNING accepts work; every other state answers ContextClosed."""
        life = Lifecycle("aws")
        with pytest.raises(ck.ContextClosed, match="has not started"):
            life.check_open("x")
        life.move(ContextState.RUNNING)
        life.check_open("x")
        life.begin_closing()
        with pytest.raises(ck.ContextClosed, match="shutting down"):
            life.check_open("x")
        life.finish()
        with pytest.raises(ck.ContextClosed, match="has shut down"):
            life.check_open("x")

    async def test_scopes_opened_after_cancellation_are_born_cancelled(self) -> None:
        """cancel_operations reaches scopes that exist and scopes opened later."""
        life = Lifecycle("aws")
        before = life.open_scope(math.inf)
        life.cancel_operations()
        after = life.open_scope(math.inf)
        assert before.cancel_called and after.cancel_called
        with after:
            await trio.sleep_forever()
        assert after.cancelled_caught


class TestShutdownReplies:
    async def test_channel_sends_while_closing_are_answered_or_refused(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Every send that returned gets one reply; sends after closing raise ContextClosed."""
        config = ck.CloudConfig(
            endpoint=ENDPOINT, max_concurrency=2, queue_size=4, shutdown_grace=0.5
        )
        reply_send, reply_receive = trio.open_memory_channel[ck.Reply](10_000)
        accepted: list[int] = []
        refused: list[BaseException] = []

        async def producer(channel: ck.SubmissionChannel, first: int) -> None:
            async with channel:
                for n in range(first, first + 200):
                    try:
                        await channel.send(ck.Submission(op(), reply_send, correlation_id=n))
                    except ck.ContextClosed as error:
                        refused.append(error)
                        return
                    accepted.append(n)

        async with trio.open_nursery() as nursery, context(_Slow(0.3), config=config) as cloud:
            for k in range(4):
                nursery.start_soon(producer, cloud.submit_channel(), k * 1000)
            await trio.sleep(1.0)
        replies = Counter()
        while True:
            try:
                replies[reply_receive.receive_nowait().correlation_id] += 1
            except trio.WouldBlock:
                break
        assert refused and all(isinstance(e, ck.ContextClosed) for e in refused)
        assert sorted(replies) == sorted(accepted)
        assert set(replies.values()) == {1}

    async def test_host_cancellation_answers_every_accepted_submission(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A hard stop answers running and queued submissions ContextClosed, once each."""
        config = ck.CloudConfig(endpoint=ENDPOINT, max_concurrency=2, queue_size=8)
        reply_send, reply_receive = trio.open_memory_channel[ck.Reply](100)
        accepted: list[int] = []

        async def producer(channel: ck.SubmissionChannel) -> None:
            for n in range(50):
                try:
                    await channel.send(ck.Submission(op(), reply_send, correlation_id=n))
                except ck.ContextClosed:
                    return
                accepted.append(n)

        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as host:
                cloud = await host.start(context(_Slow(100.0), config=config).serve)
                outer.start_soon(producer, cloud.submit_channel())
                await trio.sleep(1.0)
                host.cancel_scope.cancel()
            assert cloud.state is ck.ContextState.CLOSED
        replies = [reply_receive.receive_nowait() for _ in range(len(accepted))]
        assert sorted(r.correlation_id for r in replies) == sorted(accepted)
        assert all(isinstance(r.error, ck.ContextClosed) for r in replies)
        with pytest.raises(trio.WouldBlock):
            reply_receive.receive_nowait()


class TestAfterStop:
    async def test_entry_points_after_a_hard_stop(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After a hard stop every entry point raises ContextClosed and the snapshot says closed."""
        send, _ = trio.open_memory_channel[ck.Reply](1)
        async with trio.open_nursery() as host:
            cloud = await host.start(context().serve)
            channel = cloud.submit_channel()
            host.cancel_scope.cancel()
        snapshot = cloud.snapshot()
        assert snapshot.state is ck.ContextState.CLOSED and snapshot.closing
        with pytest.raises(ck.ContextClosed):
            cloud.submit_nowait(ck.Submission(op(), send))
        with pytest.raises(ck.ContextClosed):
            cloud.submit_channel()
        with pytest.raises(ck.ContextClosed):
            await cloud.submit(op())
        with pytest.raises(ck.ContextClosed):
            await channel.send(ck.Submission(op(), send))
        with pytest.raises(ck.ContextClosed):
            channel.send_nowait(ck.Submission(op(), send))
        with pytest.raises(ck.ContextClosed):
            await cloud.execute(op())
        with pytest.raises(ck.ContextClosed):
            async with cloud.stream(op()):
                pass  # pragma: no cover

    async def test_waiting_for_credentials_at_shutdown(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An operation waiting for credentials when the context closes ends with ContextClosed."""
        auth = _GatedAuth()
        results: list[object] = []

        async with (
            trio.open_nursery() as nursery,
            context(
                Script(),
                auth=auth,
                signer=KeyEcho(),
                config=ck.CloudConfig(endpoint=ENDPOINT, shutdown_grace=1.0),
            ) as cloud,
        ):
            nursery.start_soon(_execute, cloud, results)
            await trio.sleep(0.5)
        assert len(results) == 1 and isinstance(results[0], ck.ContextClosed)

    async def test_execute_after_the_tree_gave_up(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """RestartIntensityExceeded ends operations waiting for credentials, never hangs them."""
        auth = _GatedAuth()
        results: list[object] = []

        async def run_until_the_tree_gives_up() -> None:
            async with trio.open_nursery() as outer, trio.open_nursery() as host:
                cloud = await host.start(context(auth=auth, signer=KeyEcho()).serve)
                outer.start_soon(_execute, cloud, results)
                await cloud.supervisor.start_child(ChildSpec("crasher", _crasher))
                await trio.sleep_forever()

        with pytest.raises(BaseExceptionGroup) as raised:
            await run_until_the_tree_gives_up()
        assert raised.group_contains(ck.actors.RestartIntensityExceeded)
        assert len(results) == 1 and isinstance(results[0], ck.ContextClosed)

    async def test_giving_up_keeps_its_cause(self, autojump_clock: trio.testing.MockClock) -> None:
        """The RestartIntensityExceeded out of `async with` names the child's failure as cause."""

        async def run() -> None:
            async with context() as cloud:
                await cloud.supervisor.start_child(ChildSpec("crasher", _crasher))
                await trio.sleep_forever()

        with pytest.raises(ck.actors.RestartIntensityExceeded) as raised:
            await run()
        assert isinstance(raised.value.__cause__, RuntimeError)


class TestDeadlines:
    async def test_timeout_bounds_the_credential_wait(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """timeout= cuts a wait for a provider that never answers, and says which wait it was."""
        async with context(auth=_GatedAuth(), signer=KeyEcho()) as cloud:
            start = trio.current_time()
            with pytest.raises(ck.OperationTimeout) as raised:
                await cloud.execute(op(), timeout=0.2)
            assert trio.current_time() - start == pytest.approx(0.2)
            assert raised.value.waiting_for == "credentials"
            assert cloud.snapshot().deadlines_expired["credentials"] == 1

    async def test_timeout_bounds_a_slow_provider(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A provider slower than the operation's budget does not stretch it."""
        async with context(auth=_GatedAuth(delay=1.5), signer=KeyEcho()) as cloud:
            start = trio.current_time()
            with pytest.raises(ck.OperationTimeout):
                await cloud.execute(op(), timeout=0.2)
            assert trio.current_time() - start == pytest.approx(0.2)

    async def test_submission_timeout_counts_queue_wait(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A submission's Operation.timeout starts at acceptance and is answered when it passes,
        even while every worker is busy."""
        config = ck.CloudConfig(endpoint=ENDPOINT, max_concurrency=1, timeout=100.0)
        send, receive = trio.open_memory_channel[ck.Reply](10)
        metrics = RecordingMetrics()
        async with context(_Slow(5.0), config=config, metrics=metrics) as cloud:
            cloud.submit_nowait(ck.Submission(op(), send, correlation_id="busy"))
            accepted_at = trio.current_time()
            cloud.submit_nowait(ck.Submission(op(timeout=1.0), send, correlation_id="late"))
            late = await receive.receive()
            assert trio.current_time() - accepted_at == pytest.approx(1.0)
            busy = await receive.receive()
            assert cloud.snapshot().deadlines_expired["queue"] == 1
        assert late.correlation_id == "late"
        assert isinstance(late.error, ck.OperationTimeout)
        assert late.error.waiting_for == "queue"
        assert busy.correlation_id == "busy" and busy.ok
        assert sorted(str(m.error_code) for m in metrics.operations) == ["None", "OperationTimeout"]

    async def test_retries_planned_within_the_callers_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No retry is started that the caller's enclosing deadline would cut off."""
        script = Script([503] * 10)
        policy = ck.ExponentialBackoff(max_attempts=10)
        async with context(script, policy=policy, breaker=None) as cloud:
            with trio.fail_after(0.25):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(op())
        # Attempts at 0, 0.1 and (0.1 + 0.2 > 0.25: not started).
        assert len(script.requests) == 2

    async def test_caller_cancellation_is_reported_once(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A caller's own cancellation ends the operation with one metrics record."""
        metrics = RecordingMetrics()
        async with context(_Slow(10.0), metrics=metrics) as cloud:
            with trio.move_on_after(1.0):
                await cloud.execute(op())
        assert [m.error_code for m in metrics.operations] == ["Cancelled"]


class TestContainment:
    async def test_raising_logger_costs_nothing(
        self, autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A Logger that raises never replaces a result, an error or a reply, nor stops the tree."""
        script = Script([500] * 20 + [200] * 100)
        breaker = ck.CircuitBreaker(minimum_throughput=2, failure_ratio=0.5)
        metrics = RecordingMetrics()
        builder = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=ENDPOINT))
            .transport(httpx.MockTransport(script))
            .logger(_RaisingLogger())
            .metrics_collector(metrics)
            .retry_policy(breaker)
            .signer(NoAuthSigner())
        )
        async with builder.build() as cloud:
            errors = []
            for _ in range(5):
                try:
                    await cloud.execute(op())
                except ck.CloudError as error:
                    errors.append(error)
            assert errors and all(
                isinstance(e, ck.ProviderError | ck.CircuitOpenError) for e in errors
            )
            assert any(isinstance(e, ck.CircuitOpenError) for e in errors)
            reply = await cloud.submit(op())
            assert isinstance(reply.error, ck.CircuitOpenError)
            assert cloud.snapshot().spi_failures["logger"] > 0
        err = capsys.readouterr().err
        assert err.count("logger.") == 1 and "closed file" not in err

    async def test_raising_retry_policy_ends_retries(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A RetryPolicy that raises costs the operation its retries, and it gets its real error."""

        class Broken(ck.ExponentialBackoff):
            def should_retry(self, error: ck.CloudError, attempt: int) -> ck.RetryDecision:
                raise RuntimeError("policy bug")

        async with context(Script([503]), policy=Broken()) as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op())
            assert cloud.snapshot().spi_failures == {"retry_policy": 1}

    async def test_garbage_retry_decision_ends_retries(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A RetryPolicy that returns something else than a RetryDecision is contained."""

        class Garbage(ck.ExponentialBackoff):
            def should_retry(self, error: ck.CloudError, attempt: int) -> ck.RetryDecision:
                return "soon"  # type: ignore[return-value]

        async with context(Script([503]), policy=Garbage()) as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op())
            assert cloud.snapshot().spi_failures == {"retry_policy": 1}

    async def test_raising_signer_is_an_internal_error(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A signer that raises costs the operation an InternalError; nothing is sent."""

        class Broken:
            needs_credentials = False

            def sign(self, request: httpx.Request, credentials: ck.Credentials | None) -> None:
                raise KeyError("no such key")

        script = Script()
        async with context(script, signer=Broken()) as cloud:
            with pytest.raises(ck.InternalError, match="signer"):
                await cloud.execute(op())
            reply = await cloud.submit(op())
            assert isinstance(reply.error, ck.InternalError)
        assert script.requests == []

    async def test_raising_collector_is_counted(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A MetricsCollector that raises is counted; the other collectors get every event."""

        class Broken(RecordingMetrics):
            async def record(self, metrics: ck.OperationMetrics) -> None:
                raise RuntimeError("collector bug")

        good = RecordingMetrics()
        builder = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=ENDPOINT))
            .transport(httpx.MockTransport(Script()))
            .metrics_collector(Broken(), good)
            .logger(CapturingLogger())
            .signer(NoAuthSigner())
        )
        async with builder.build() as cloud:
            await cloud.execute(op())
            await trio.sleep(1.0)
            assert cloud.snapshot().spi_failures == {"metrics_collector": 1}
        assert len(good.operations) == 1
        assert good.counter_total("spi_failures", spi="metrics_collector") == 1


class TestStreamReports:
    async def test_failed_body_read_handled_in_the_block_is_one_failure(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A streamed body whose read fails is reported once, as a failure."""

        class Truncated(httpx.AsyncByteStream):
            async def __aiter__(self):  # type: ignore[override]
                yield b"partial"
                raise httpx.RemoteProtocolError("peer closed connection")

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, stream=Truncated())

        metrics = RecordingMetrics()
        async with context(handler, metrics=metrics) as cloud, cloud.stream(op()) as response:
            with pytest.raises(ck.NetworkError):
                async for _ in response.aiter_raw():
                    pass
        assert [m.outcome for m in metrics.operations] == [ck.OperationOutcome.FAILURE]


class TestMetricsAtShutdown:
    async def test_operations_cut_by_shutdown_are_reported(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Every operation shutdown cancels or refuses is in the metrics, once."""
        config = ck.CloudConfig(
            endpoint=ENDPOINT, max_concurrency=2, shutdown_grace=0.5, timeout=1000.0
        )
        metrics = RecordingMetrics()
        send, receive = trio.open_memory_channel[ck.Reply](10)
        errors: list[object] = []
        slow = context(_Slow(100.0), config=config, metrics=metrics)
        async with trio.open_nursery() as nursery, slow as cloud:
            nursery.start_soon(_execute, cloud, errors)
            await trio.sleep(0.1)
            for n in range(3):  # one runs, two wait in the queue
                cloud.submit_nowait(ck.Submission(op(), send, correlation_id=n))
            await trio.sleep(0.1)
        replies = [receive.receive_nowait() for _ in range(3)]
        assert all(isinstance(r.error, ck.ContextClosed) for r in replies)
        assert [type(e) for e in errors] == [ck.ContextClosed]
        assert sorted(str(m.error_code) for m in metrics.operations) == ["ContextClosed"] * 4

    async def test_an_event_interrupted_by_shutdown_still_reaches_every_collector(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Stopping the aggregator while a slow collector is awaited loses no event."""
        from cloudkit_trio.runtime._aggregator import MetricsAggregator
        from cloudkit_trio.runtime._containment import Containment

        class Slow(RecordingMetrics):
            async def record(self, metrics: ck.OperationMetrics) -> None:
                await trio.sleep(2.0)  # slow, but within the final drain's budget
                await super().record(metrics)

        slow, after = Slow(), RecordingMetrics()
        aggregator = MetricsAggregator(
            [slow, after], Containment(), capacity=10, flush_interval=0.1
        )
        event = ck.OperationMetrics(
            provider=ck.ProviderType.AWS,
            service="s3",
            operation="get",
            duration=0.0,
            outcome=ck.OperationOutcome.SUCCESS,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(aggregator.run)
            aggregator.emit(event)
            await trio.sleep(1.0)  # the flush is now awaiting the slow collector
            nursery.cancel_scope.cancel()
        assert after.operations == [event]
        assert slow.operations == [event]
