"""Helpers for the tracing tests: a private provider with an in-memory exporter, and contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import httpx
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import cloudkit_trio as ck
from cloudkit_trio.testing import CapturingLogger
from cloudkit_trio.transport import NoAuthSigner

ENDPOINT = "http://127.0.0.1:9000"


class SlowTransport(httpx.AsyncBaseTransport):
    """Answers 200 after a second (of Trio's clock)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await trio.sleep(1.0)
        return httpx.Response(200)


class Recorder:
    """A private TracerProvider whose spans end up in memory, in the order they ended."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def operations(self) -> list[ReadableSpan]:
        """The runtime's operation spans."""
        return [s for s in self.spans if _is_runtime(s) and s.kind is SpanKind.INTERNAL]

    def operation(self) -> ReadableSpan:
        [span] = self.operations()
        return span

    def attempts(self, operation: ReadableSpan) -> list[ReadableSpan]:
        """The attempt spans under ``operation``, in the order they started."""
        assert operation.context is not None
        children = [
            s
            for s in self.spans
            if s.parent is not None and s.parent.span_id == operation.context.span_id
        ]
        assert all(s.kind is SpanKind.CLIENT for s in children)
        return sorted(children, key=lambda s: s.start_time or 0)


def _is_runtime(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name == "cloudkit_trio"


def seconds(ns: int | None, origin: int | None) -> float:
    """``ns`` as seconds after ``origin`` (both span timestamps)."""
    assert ns is not None and origin is not None
    return round((ns - origin) / 1e9, 6)


def events(span: ReadableSpan) -> list[tuple[str, dict[str, object]]]:
    return [(event.name, dict(event.attributes or {})) for event in span.events]


class Script:
    """A transport handler answering from a list of statuses, then 200."""

    def __init__(self, steps: Iterable[int | Callable[[httpx.Request], httpx.Response]] = ()):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else 200
        if callable(step):
            return step(request)
        return httpx.Response(step, content=b"")


def builder(
    handler: Callable[[httpx.Request], httpx.Response] | httpx.AsyncBaseTransport,
    *,
    endpoint: str = ENDPOINT,
) -> ck.CloudContextBuilder:
    transport = (
        handler if isinstance(handler, httpx.AsyncBaseTransport) else httpx.MockTransport(handler)
    )
    return (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint=endpoint, region="eu-west-1"))
        .transport(transport)
        .signer(NoAuthSigner())
        .logger(CapturingLogger())
    )


def traced(
    handler: Callable[[httpx.Request], httpx.Response] | httpx.AsyncBaseTransport,
    recorder: Recorder,
    **kw: object,
) -> ck.CloudContext:
    return builder(handler, **kw).tracing(recorder.provider).build()  # type: ignore[arg-type]


def get(name: str = "get_object", path: str = "/bucket/key", **kw: object) -> ck.Operation:
    return ck.Operation(service="s3", name=name, path=path, **kw)  # type: ignore[arg-type]


def names(spans: Sequence[ReadableSpan]) -> list[str]:
    return [span.name for span in spans]
