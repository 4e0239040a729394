"""A tracer that fails costs an operation its trace, never its result; no tracing costs nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.testing
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

import cloudkit_trio as ck
from cloudkit_trio._submission import TRACE_CAPTURE
from cloudkit_trio.runtime._containment import Containment
from cloudkit_trio.runtime._tracing import TRACER, TracedOperation

from ._support import Recorder, Script, builder, get, traced

if TYPE_CHECKING:
    from opentelemetry import trace


class Raising(SpanProcessor):
    """A span processor that raises when a span starts, ends, or both."""

    def __init__(self, *, on_start: bool = False, on_end: bool = False) -> None:
        self.raise_on_start = on_start
        self.raise_on_end = on_end

    def on_start(self, span: Span, parent_context: object = None) -> None:
        if self.raise_on_start:
            raise RuntimeError("exporter is down")

    def on_end(self, span: ReadableSpan) -> None:
        if self.raise_on_end:
            raise RuntimeError("exporter is down")


class BrokenProvider(TracerProvider):
    def get_tracer(self, *args: object, **kwargs: object) -> trace.Tracer:
        raise RuntimeError("no tracer for you")


class TestContained:
    @pytest.mark.parametrize(
        ("processor", "method"),
        [
            (Raising(on_start=True), "start_operation"),
            (Raising(on_end=True), "end_attempt"),
        ],
    )
    async def test_a_raising_tracer_does_not_fail_the_operation(
        self,
        processor: Raising,
        method: str,
        autojump_clock: trio.testing.MockClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Spans that cannot start or end: the operation still succeeds, the failure is counted."""
        provider = TracerProvider()
        provider.add_span_processor(processor)
        context = builder(Script([503])).tracing(provider).build()
        async with context as cloud:
            response = await cloud.execute(get())
            reply = await cloud.submit(get())
            failures = cloud.snapshot().spi_failures
        assert response.attempts == 2 and reply.ok
        assert failures[TRACER] >= 2
        assert f"tracer.{method} raised RuntimeError" in capsys.readouterr().err

    async def test_a_provider_that_cannot_give_a_tracer(
        self, autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """get_tracer raising at start: the context runs untraced, and says so once."""
        async with builder(Script()).tracing(BrokenProvider()).build() as cloud:
            await cloud.execute(get())
            assert cloud._runtime.tracer is None
            assert cloud.snapshot().spi_failures == {TRACER: 1}
        assert "tracer.open raised RuntimeError" in capsys.readouterr().err

    @pytest.mark.parametrize("exc", [KeyboardInterrupt(), trio.Cancelled._create()])
    def test_cancellation_and_interrupts_pass_through(self, exc: BaseException) -> None:
        """Only Exception is contained: KeyboardInterrupt and trio.Cancelled propagate."""

        class Interrupting:
            def capture(self) -> object:
                return None

            def start_operation(self, start: object) -> object:
                raise exc

        class FakeFlight:
            operation = get()
            url = "http://127.0.0.1:9000/bucket/key"
            request = httpx.Request("GET", url)
            start = 0.0

        with pytest.raises(type(exc)):
            TracedOperation.start(
                Interrupting(),  # type: ignore[arg-type]
                Containment(),
                FakeFlight(),  # type: ignore[arg-type]
                provider=ck.ProviderType.AWS,
                region=None,
                parent=None,
            )


class TestUntraced:
    async def test_an_untraced_context_records_nothing_and_captures_nothing(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Without .tracing(): no tracer anywhere, no span, no context kept by submissions."""
        async with builder(Script([503])).build() as cloud:
            assert cloud._runtime.tracer is None and cloud._runtime.runner._tracer is None
            send, _receive = trio.open_memory_channel[ck.Reply](1)
            with recorder.tracer.start_as_current_span("user"):
                await cloud.execute(get())
                assert ck.Submission(get(), send)._trace_context is None
                assert (await cloud.submit(get())).ok
        assert [span.name for span in recorder.spans] == ["user"]

    async def test_capturing_stops_with_the_last_traced_context(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Submissions keep a context only while a traced context runs."""
        send, _receive = trio.open_memory_channel[ck.Reply](1)
        first, second = traced(Script(), recorder), traced(Script(), recorder)
        async with first:
            async with second:
                assert TRACE_CAPTURE.capture is not None
            assert ck.Submission(get(), send)._trace_context is not None
        assert TRACE_CAPTURE.capture is None
        assert ck.Submission(get(), send)._trace_context is None

    def test_the_runtime_never_imports_opentelemetry(self) -> None:
        """An untraced context loads no opentelemetry; .tracing() is what imports it."""
        code = textwrap.dedent(
            """
            import sys, httpx, trio
            import cloudkit_trio as ck
            from cloudkit_trio.transport import NoAuthSigner

            async def main():
                context = (
                    ck.CloudContext.builder("aws")
                    .transport(httpx.MockTransport(lambda request: httpx.Response(200)))
                    .signer(NoAuthSigner())
                    .build()
                )
                async with context as cloud:
                    await cloud.execute(ck.Operation(service="s3", name="get", url="http://h/k"))

            trio.run(main)
            loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
            assert not loaded, loaded
            ck.CloudContext.builder("aws").tracing()  # only now is it needed
            assert "opentelemetry.trace" in sys.modules
            """
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class TestBuilder:
    def test_the_provider_is_checked(self) -> None:
        """Anything but a TracerProvider or None is refused with a TypeError that says so."""
        with pytest.raises(TypeError, match=r"TracerProvider or None .* got str"):
            builder(Script()).tracing("jaeger")  # type: ignore[arg-type]

    async def test_none_follows_the_global_provider(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """tracing() with no provider traces with the global one (the API's no-op here)."""
        async with builder(Script()).tracing().build() as cloud:
            assert (await cloud.execute(get())).status_code == 200
            assert cloud._runtime.tracer is not None
            assert cloud.snapshot().spi_failures == {}
