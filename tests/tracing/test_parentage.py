"""Whose child an operation's span is: the caller's span, wherever the operation runs."""

from __future__ import annotations

import httpx
import trio
import trio.testing
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

import cloudkit_trio as ck
from cloudkit_trio.tracing import SpanEvent

from ._support import Recorder, Script, SlowTransport, events, get, seconds, traced


def _child_of(span: object, parent: object) -> bool:
    parent_context = parent.get_span_context()  # type: ignore[attr-defined]
    return (
        span.parent is not None  # type: ignore[attr-defined]
        and span.parent.span_id == parent_context.span_id  # type: ignore[attr-defined]
        and span.context.trace_id == parent_context.trace_id  # type: ignore[attr-defined]
    )


class TestExecute:
    async def test_the_callers_span_is_the_parent(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """execute() inside a user's span: the operation's span is its child."""
        async with traced(Script([503]), recorder) as cloud:
            with recorder.tracer.start_as_current_span("handle-upload") as user:
                await cloud.execute(get())
            await cloud.execute(get(name="head_object"))  # outside: a root
        inside, outside = sorted(recorder.operations(), key=lambda s: s.start_time or 0)
        assert _child_of(inside, user)
        assert len(recorder.attempts(inside)) == 2
        assert outside.parent is None


class TestSubmissions:
    async def test_the_span_current_at_submission_is_the_parent(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A submission runs on a router worker; its span's parent is where it was submitted."""
        send, receive = trio.open_memory_channel[ck.Reply](4)
        # The context starts under a span of its own: its workers must not inherit it.
        with recorder.tracer.start_as_current_span("service-startup") as startup:
            async with traced(Script([503]), recorder) as cloud:
                submit = cloud.submit_channel()
                with recorder.tracer.start_as_current_span("producer") as producer:
                    await submit.send(ck.Submission(get(), send, correlation_id=1))
                await submit.send(ck.Submission(get(name="head_object"), send, correlation_id=2))
                token = otel_context.attach(otel_context.Context())  # no span at all
                try:
                    await submit.send(ck.Submission(get(name="list"), send, correlation_id=3))
                finally:
                    otel_context.detach(token)
                replies = {r.correlation_id: r for r in [await receive.receive() for _ in range(3)]}
                await submit.aclose()
        assert all(reply.ok for reply in replies.values())
        by_name = {span.name: span for span in recorder.operations()}
        submitted = by_name["s3.get_object"]
        assert _child_of(submitted, producer)
        assert not _child_of(submitted, startup)
        attempts = recorder.attempts(submitted)
        assert [a.kind for a in attempts] == [SpanKind.CLIENT] * 2
        assert [name for name, _ in events(submitted)] == [SpanEvent.RETRY]
        # Submitted under the startup span: its child; under no span at all: a root, not a
        # child of the span the runtime's tasks were started in.
        assert _child_of(by_name["s3.head_object"], startup)
        assert by_name["s3.list"].parent is None

    async def test_cloud_submit_and_submit_nowait_capture_too(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """cloud.submit() and submit_nowait() keep the caller's span as well."""
        send, receive = trio.open_memory_channel[ck.Reply](1)
        async with traced(Script(), recorder) as cloud:
            with recorder.tracer.start_as_current_span("caller") as caller:
                reply = await cloud.submit(get())
                cloud.submit_nowait(ck.Submission(get(name="head_object"), send))
            assert (await receive.receive()).ok
        assert reply.ok
        assert all(_child_of(span, caller) for span in recorder.operations())
        assert len(recorder.operations()) == 2

    async def test_a_queued_submission_starts_when_accepted(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Its span starts at acceptance, so the time it waited for a worker is in the span."""

        send, receive = trio.open_memory_channel[ck.Reply](2)
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000", max_concurrency=1))
            .transport(SlowTransport())
            .signer(ck.transport.NoAuthSigner())
            .tracing(recorder.provider)
            .build()
        )
        async with context as cloud:
            cloud.submit_nowait(ck.Submission(get(), send, correlation_id=1))
            cloud.submit_nowait(ck.Submission(get(), send, correlation_id=2))
            for _ in range(2):
                assert (await receive.receive()).ok
        durations = sorted(
            seconds(span.end_time, span.start_time) for span in recorder.operations()
        )
        assert durations == [1.0, 2.0]  # the second waited a second for the worker
        [second] = [span for span in recorder.operations() if span.end_time and
                    seconds(span.end_time, span.start_time) == 2.0]  # fmt: skip
        [attempt] = recorder.attempts(second)
        assert seconds(attempt.start_time, second.start_time) == 1.0


class TestStream:
    async def test_stream_is_one_operation_until_its_block_ends(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """stream(): the caller's child; attempts until the headers; it ends with the block."""
        script = Script([503, lambda request: httpx.Response(200, content=b"x" * 10)])
        async with traced(script, recorder) as cloud:
            with recorder.tracer.start_as_current_span("download") as user:
                async with cloud.stream(get()) as response:
                    await trio.sleep(2.0)  # reading the body takes a while
                    body = b"".join([chunk async for chunk in response.aiter_bytes()])
        assert body == b"x" * 10
        operation = recorder.operation()
        assert _child_of(operation, user)
        _first, second = recorder.attempts(operation)
        assert (second.attributes or {})["http.request.resend_count"] == 1
        assert (operation.attributes or {})["cloudkit.outcome"] == "success"
        # The operation lasts until the block exits; the attempt until its headers arrived.
        assert seconds(operation.end_time, operation.start_time) == 2.1
        assert seconds(second.end_time, operation.start_time) == 0.1
