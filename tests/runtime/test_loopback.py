"""End to end over real loopback sockets, against a real HTTP server (hypercorn) that injects faults."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

import cloudkit_trio as ck
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.testing import RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner, PooledTransport

from ._support import CountingAuth, KeyEcho


class FaultApp:
    """An ASGI app whose answers per path come from a script; each path then answers 200."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[str]] = {}
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        headers = dict(scope["headers"])
        self.seen.append((path, headers.get(b"x-key", b"").decode() or None))
        step = self.scripts.get(path, []).pop(0) if self.scripts.get(path) else "200"
        if step == "reset":
            # Start a response and die mid-body: the client sees the connection break.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"100")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("injected reset")
        if step.startswith("slow"):
            await trio.sleep(float(step.split(":")[1]))
            step = "200"
        status = int(step)
        extra = [(b"retry-after", b"1")] if status == 429 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": f"{status} {path}".encode()})


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[str, FaultApp]]:
    app = FaultApp()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.loglevel = "CRITICAL"
    shutdown = trio.Event()
    await nursery.start(partial(serve, app, config, shutdown_trigger=shutdown.wait))  # type: ignore[arg-type]
    yield f"http://127.0.0.1:{port}", app
    shutdown.set()


def build(base: str, metrics: RecordingMetrics | None = None, **kw: Any) -> ck.CloudContext:
    builder = (
        ck.CloudContext.builder("aws")
        .config(ck.CloudConfig(endpoint=base, timeout=1.0))
        .auth_provider(kw.pop("auth", ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET"))))
        .metrics_collector(metrics or RecordingMetrics())
        .retry_policy(kw.pop("policy", ck.ExponentialBackoff(initial_delay=0.01, max_attempts=4)))
    )
    if "signer" in kw:
        builder = builder.signer(kw.pop("signer"))
    return builder.build()


def get(path: str) -> ck.Operation:
    return ck.Operation(service="demo", name="get", path=path)


class TestOverLoopback:
    async def test_faults_are_retried(self, server: tuple[str, FaultApp]) -> None:
        """500, 503, 429 (Retry-After 1 s), a broken connection and a slow answer are all retried."""
        base, app = server
        app.scripts = {"/a": ["500", "503"], "/b": ["429"], "/c": ["reset"], "/d": ["slow:3"]}
        metrics = RecordingMetrics()
        async with build(base, metrics) as cloud:
            assert (await cloud.execute(get("/a"))).attempts == 3
            start = trio.current_time()
            assert (await cloud.execute(get("/b"))).attempts == 2
            assert trio.current_time() - start >= 1.0  # Retry-After honoured
            assert (await cloud.execute(get("/c"))).content == b"200 /c"
            assert (await cloud.execute(get("/d"))).attempts == 2  # timed out after 1 s, retried
        assert metrics.counter_total("retries") == 5

    async def test_channel_api_over_sockets(self, server: tuple[str, FaultApp]) -> None:
        """Submissions through the channel get one reply each over real HTTP."""
        base, app = server
        app.scripts = {"/x/3": ["503"], "/x/7": ["404"]}
        send, receive = trio.open_memory_channel[ck.Reply](20)
        async with build(base) as cloud:
            async with cloud.submit_channel() as submit:
                for n in range(10):
                    await submit.send(ck.Submission(get(f"/x/{n}"), send, correlation_id=n))
            replies = {r.correlation_id: r for r in [await receive.receive() for _ in range(10)]}
        assert set(replies) == set(range(10))
        assert isinstance(replies[7].error, ck.NotFound)
        assert replies[3].response is not None and replies[3].response.attempts == 2

    async def test_breaker_opens_half_opens_and_closes(self, server: tuple[str, FaultApp]) -> None:
        """A failing endpoint opens its breaker; after the break a probe closes it."""
        base, app = server
        app.scripts = {"/down": ["503"] * 4}
        policy = ck.CircuitBreaker(ck.NoRetry(), minimum_throughput=4, break_duration=0.3)
        async with build(base, policy=policy) as cloud:
            for _ in range(4):
                with pytest.raises(ck.ServiceUnavailable):
                    await cloud.execute(get("/down"))
            with pytest.raises(ck.CircuitOpenError):
                await cloud.execute(get("/down"))
            assert len(app.seen) == 4
            await trio.sleep(0.35)
            assert cloud.breaker(base).state is BreakerState.HALF_OPEN
            await cloud.execute(get("/down"))
            assert cloud.breaker(base).state is BreakerState.CLOSED

    async def test_credentials_refresh_once_under_concurrency(
        self, server: tuple[str, FaultApp]
    ) -> None:
        """Fifty concurrent operations over sockets share one credential fetch."""
        base, app = server
        auth = CountingAuth(lifetime=3600)
        async with (
            build(base, auth=auth, signer=KeyEcho()) as cloud,
            trio.open_nursery() as nursery,
        ):
            for n in range(50):
                nursery.start_soon(cloud.execute, get(f"/k/{n}"))
        assert auth.fetches == 1
        assert {key for _, key in app.seen} == {"AKID1"}


class TestTransportChoice:
    async def test_pooled_transport_is_the_default(self, server: tuple[str, FaultApp]) -> None:
        """Without .transport(), the runtime sends through PooledTransport over real sockets."""
        base, _app = server
        async with build(base) as cloud:
            assert isinstance(cloud._runtime.transport, PooledTransport)
            for n in range(5):
                await cloud.execute(get(f"/p/{n}"))
            stats = cloud._runtime.transport.statistics()
        assert stats.connections_created == 1  # keep-alive: one connection, reused

    async def test_cancelled_from_outside_it_still_closes_its_connections(
        self, server: tuple[str, FaultApp]
    ) -> None:
        """A runtime cancelled by its nursery (not closed) closes the transport it owns."""
        base, _app = server
        async with trio.open_nursery() as nursery:
            cloud = await nursery.start(build(base).serve)
            await cloud.execute(get("/c"))
            transport = cloud._runtime.transport
            assert transport.statistics().idle_connections == 1
            nursery.cancel_scope.cancel()
        assert transport.statistics().open_connections == 0

    async def test_plain_httpx_on_request(self, server: tuple[str, FaultApp]) -> None:
        """plain_httpx_transport() selects httpx's own pool, over the same pipeline."""
        base, _app = server
        context = (
            ck.CloudContext.builder("aws")
            .config(ck.CloudConfig(endpoint=base))
            .plain_httpx_transport()
            .signer(NoAuthSigner())
            .build()
        )
        async with context as cloud:
            assert isinstance(cloud._runtime.transport, httpx.AsyncHTTPTransport)
            assert (await cloud.execute(get("/h"))).content == b"200 /h"
