"""Over real sockets on 127.0.0.1: the picture in the docs, and a traced submission."""

from __future__ import annotations

import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
import trio.testing
from opentelemetry.trace import SpanKind

import cloudkit_trio as ck
from cloudkit_trio.tracing import SpanEvent

from ._support import Recorder, events

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "snippets" / "trace_picture.py"
PICTURE = ROOT / "docs" / "images" / "retried-operation.svg"
SVG = "{http://www.w3.org/2000/svg}"


def structure(svg: Path) -> list[tuple[str, ...]]:
    """The spans and events an SVG timeline draws, from its data attributes, in order."""
    found = []
    for element in ET.parse(svg).getroot().iter(f"{SVG}g"):
        kind = element.get("class")
        data = {key[5:]: value for key, value in element.attrib.items() if key.startswith("data-")}
        found.append((kind or "", *(f"{key}={data[key]}" for key in sorted(data))))
    return found


def snippet() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT), run_name="trace_picture")


class TestThePicture:
    def test_the_script_draws_the_committed_picture(self, tmp_path: Path) -> None:
        """Run as the docs say, it draws the spans of the SVG in docs/images, and prints them."""
        out = tmp_path / "trace.svg"
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(out)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        drawn = structure(out)
        assert drawn == structure(PICTURE)
        assert [row[0] for row in drawn] == ["span", "event", "event", "span", "span", "span"]
        assert (
            "span",
            "depth=0",
            "end=0.3",
            "error=false",
            "name=s3.put_object",
            "start=0.0",
        ) in drawn
        assert done.stdout.splitlines()[0].startswith("s3.put_object")
        assert done.stdout.count("cloudkit.retry") == 2


class TestOverLoopback:
    async def test_a_submission_over_sockets_is_traced_under_its_producer(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The pooled transport, a real endpoint: 503 then 200, under the producer's span."""
        statuses_endpoint = snippet()["statuses_endpoint"]
        async with trio.open_nursery() as nursery:
            url = await nursery.start(statuses_endpoint([503]).serve)
            port = urlsplit(url).port
            context = (
                ck.CloudContext.builder(ck.ProviderType.AWS)
                .config(ck.CloudConfig(endpoint=url))
                .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
                .tracing(recorder.provider)
                .build()
            )
            async with context as cloud:
                with recorder.tracer.start_as_current_span("producer") as producer:
                    reply = await cloud.submit(ck.Operation(service="s3", name="get", path="/b/k"))
            nursery.cancel_scope.cancel()
        assert reply.ok and reply.response is not None and reply.response.attempts == 2
        operation = recorder.operation()
        assert operation.parent is not None
        assert operation.parent.span_id == producer.get_span_context().span_id
        attempts = recorder.attempts(operation)
        assert [a.kind for a in attempts] == [SpanKind.CLIENT] * 2
        assert [(a.attributes or {})["server.port"] for a in attempts] == [port, port]
        assert [(a.attributes or {})["http.response.status_code"] for a in attempts] == [503, 200]
        assert [name for name, _ in events(operation)] == [SpanEvent.RETRY]
