"""One retried operation, traced: the spans as text and as an SVG timeline.

An endpoint on 127.0.0.1 answers 503, 503, then 200; the operation is traced to an
in-memory exporter, on Trio's mock clock, so the times are the
runtime's own choices (100 ms, then 200 ms of backoff). Run it to redraw the picture in
the docs:

    python docs/snippets/trace_picture.py docs/images/retried-operation.svg
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import attrs
import trio
import trio.testing

# --8<-- [start:enable]
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cloudkit_trio as ck
from cloudkit_trio.testing import FakeEndpoint, FakeRequest, FakeResponse


def traced_context(endpoint: str, provider: TracerProvider) -> ck.CloudContext:
    return (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint=endpoint, region="eu-west-1"))
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .tracing(provider)  # or .tracing() for the global TracerProvider
        .build()
    )


# --8<-- [end:enable]


def statuses_endpoint(statuses: list[int]) -> FakeEndpoint:
    """A fake endpoint on 127.0.0.1 that answers ``statuses`` in turn, then 200."""

    async def answer(request: FakeRequest) -> FakeResponse:
        status = statuses.pop(0) if statuses else 200
        return FakeResponse(status=status, body=b"ok" if status == 200 else b"busy")

    return FakeEndpoint("storage", app=answer)


@attrs.frozen
class Row:
    """One span of the trace, in seconds from the trace's start."""

    depth: int
    name: str
    start: float
    end: float
    error: bool
    detail: str
    #: (seconds, event name, what it says)
    events: tuple[tuple[float, str, str], ...] = ()


def rows(spans: Sequence[ReadableSpan]) -> list[Row]:
    """The spans as a tree, parents first and children in the order they started."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent, []).append(span)
    origin = min(span.start_time or 0 for span in spans)

    def at(ns: int | None) -> float:
        return round(((ns or origin) - origin) / 1e9, 3)

    found: list[Row] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time or 0):
            attributes = dict(span.attributes or {})
            shown = [
                f"{key}={attributes[key]}"
                for key in (
                    "rpc.method",
                    "cloudkit.attempts",
                    "cloudkit.outcome",
                    "http.request.resend_count",
                    "http.response.status_code",
                    "error.type",
                )
                if key in attributes
            ]
            events = tuple(
                (
                    at(event.timestamp),
                    event.name,
                    f"{(event.attributes or {}).get('error.type')}, "
                    f"backoff {(event.attributes or {}).get('cloudkit.retry.delay')} s",
                )
                for event in span.events
            )
            found.append(
                Row(
                    depth,
                    span.name,
                    at(span.start_time),
                    at(span.end_time),
                    span.status.status_code.name == "ERROR",
                    " ".join(shown),
                    events,
                )
            )
            assert span.context is not None
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return found


def render_text(trace: list[Row]) -> str:
    lines = []
    for row in trace:
        indent = "  " * row.depth
        timing = f"{row.start:.3f}-{row.end:.3f} s"
        lines.append(f"{indent}{row.name:<{30 - len(indent)}} {timing:<14} {row.detail}")
        for when, name, said in row.events:
            lines.append(f"{indent}  * {when:.3f} s  {name} ({said})")
    return "\n".join(lines) + "\n"


def render_svg(trace: list[Row]) -> str:
    """A timeline: one bar per span, a diamond per event, an axis in milliseconds."""
    left, right, top, height = 190, 700, 40, 34
    total = max(row.end for row in trace) or 1.0
    width = right + 20

    def x(seconds: float) -> float:
        return round(left + (right - left) * seconds / total, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{top + height * len(trace) + 30}" font-family="sans-serif" font-size="12">',
        "<title>One retried operation: an operation span, three attempt spans</title>",
        f'<rect width="{width}" height="{top + height * len(trace) + 30}" fill="#ffffff"/>',
    ]
    steps = 6
    for step in range(steps + 1):
        seconds = total * step / steps
        parts.append(
            f'<line x1="{x(seconds)}" y1="{top - 8}" x2="{x(seconds)}" '
            f'y2="{top + height * len(trace)}" stroke="#e0e0e0"/>'
            f'<text x="{x(seconds)}" y="{top - 14}" text-anchor="middle" fill="#666">'
            f"{seconds * 1000:.0f} ms</text>"
        )
    for index, row in enumerate(trace):
        y = top + index * height
        colour = "#d9534f" if row.error else ("#5b8def" if row.depth == 0 else "#4cae4c")
        start, end = x(row.start), max(x(row.end), x(row.start) + 4)
        parts.append(
            f'<g class="span" data-name="{escape(row.name)}" data-depth="{row.depth}" '
            f'data-start="{row.start}" data-end="{row.end}" data-error="{str(row.error).lower()}">'
            f'<text x="{8 + 14 * row.depth}" y="{y + 16}">{escape(row.name)}</text>'
            f'<rect x="{start}" y="{y + 4}" width="{round(end - start, 1)}" height="16" '
            f'rx="3" fill="{colour}"/>'
            f'<text x="{8 + 14 * row.depth}" y="{y + 29}" font-size="9" fill="#666">'
            f"{escape(row.detail)}</text>"
        )
        for when, name, said in row.events:
            cx, cy = x(when), y + 12
            parts.append(
                f'<g class="event" data-name="{escape(name)}" data-at="{when}">'
                f'<path d="M{cx} {cy - 7} L{cx + 7} {cy} L{cx} {cy + 7} L{cx - 7} {cy} Z" '
                f'fill="#f0ad4e" stroke="#8a6d3b"/>'
                f"<title>{escape(name)}: {escape(said)}</title></g>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


async def main(out: Path | None = None) -> list[Row]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(statuses_endpoint([503, 503]).serve)
        async with traced_context(url, provider) as cloud:
            await cloud.execute(
                ck.Operation(service="s3", name="put_object", method="PUT",
                             path="/reports/today.csv", body=b"a,b\n1,2\n")
            )  # fmt: skip
        nursery.cancel_scope.cancel()
    trace = rows(exporter.get_finished_spans())
    assert [(row.depth, row.name) for row in trace] == [
        (0, "s3.put_object"),
        (1, "PUT"),
        (1, "PUT"),
        (1, "PUT"),
    ]
    assert [when for when, _, _ in trace[0].events] == [0.0, 0.1]
    print(render_text(trace), end="")
    if out is not None:
        await trio.Path(out).write_text(render_svg(trace), encoding="utf-8")
    return trace


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    trio.run(main, target, clock=trio.testing.MockClock(autojump_threshold=0))
