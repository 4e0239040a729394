"""Helpers shared by the runtime tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.testing import CapturingLogger, RecordingMetrics

ENDPOINT = "http://127.0.0.1:9000"


def op(
    name: str = "get_object", *, method: str = "GET", path: str = "/bucket/key", **kw: object
) -> ck.Operation:
    return ck.Operation(service="s3", name=name, method=method, path=path, **kw)  # type: ignore[arg-type]


class Script:
    """A transport handler that answers from a script of statuses or exceptions, then 200."""

    def __init__(
        self, steps: Iterable[int | Exception | Callable[[httpx.Request], httpx.Response]] = ()
    ):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        # The runtime re-signs one request object per attempt: keep each attempt's headers.
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.headers.append(dict(request.headers))
        self.times.append(trio.current_time())
        if not self.steps:
            return httpx.Response(200, content=b"ok")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        headers = {"Retry-After": "2"} if step == 429 else {}
        return httpx.Response(step, headers=headers, content=b"")


class CountingAuth(ck.AuthProvider):
    """Credentials that expire ``lifetime`` seconds after each fetch; counts fetches."""

    def __init__(self, lifetime: float | None = None, *, fail: bool = False) -> None:
        self.lifetime = lifetime
        self.fetches = 0
        self.fail = fail
        self.gate: trio.Event | None = None

    async def get_credentials(self) -> ck.Credentials:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        else:
            await trio.sleep(0.01)
        if self.fail:
            raise ck.TokenRefreshFailed("vault is down")
        expires = (
            None
            if self.lifetime is None
            else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.lifetime)
        )
        return ck.Credentials(f"AKID{self.fetches}", "SECRET", expires_at=expires)


class KeyEcho:
    """A signer that writes the access key into a header (to observe which credentials were used)."""

    needs_credentials = True

    def sign(self, request: httpx.Request, credentials: ck.Credentials | None) -> None:
        assert credentials is not None
        request.headers["x-key"] = credentials.access_key


def context(
    handler: Callable[[httpx.Request], httpx.Response] | httpx.AsyncBaseTransport | None = None,
    *,
    config: ck.CloudConfig | None = None,
    policy: ck.RetryPolicy | None = None,
    breaker: ck.CircuitBreaker | str | None = "default",
    auth: ck.AuthProvider | None = None,
    signer: object | None = None,
    metrics: RecordingMetrics | None = None,
    logger: CapturingLogger | None = None,
) -> ck.CloudContext:
    transport = (
        handler
        if isinstance(handler, httpx.AsyncBaseTransport)
        else httpx.MockTransport(handler or Script())
    )
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(config or ck.CloudConfig(endpoint=ENDPOINT))
        .transport(transport)
        .logger(logger or CapturingLogger())
        .metrics_collector(metrics or RecordingMetrics())
        .auth_provider(auth or ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
    )
    if policy is not None:
        builder = builder.retry_policy(policy)
    if breaker != "default":
        builder = builder.circuit_breaker(breaker)  # type: ignore[arg-type]
    if signer is not None:
        builder = builder.signer(signer)  # type: ignore[arg-type]
    return builder.build()
