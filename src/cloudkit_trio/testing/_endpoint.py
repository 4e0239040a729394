"""A fake endpoint: a loopback HTTP server that answers as its fault plan says.

Each request is judged the way a cloud service judges it: an endpoint that is down (a
window with ``share=1``) answers 503 before anything else; then, when a
:class:`~cloudkit_trio.testing.FakeVault` is given, the request must carry a session token
it issued and still honours (``400 ExpiredToken``, ``403 InvalidToken`` otherwise); then
the plan may inject a fault; else the app answers (``200`` and a line naming the path, by
default).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Final

import attrs
import trio

from ._faults import Fault
from ._http import App, FakeRequest, FakeResponse, serve_http
from ._plan import FaultPlan, Phase
from ._vault import CredentialState, FakeVault

__all__ = ["FakeEndpoint", "error_response"]

_ERRORS: Final[Mapping[Fault, tuple[int, str, str]]] = {
    Fault.SERVER_ERROR: (500, "InternalError", "We encountered an internal error. Try again."),
    Fault.UNAVAILABLE: (503, "ServiceUnavailable", "Service is unable to handle request."),
    Fault.RATE_LIMITED: (429, "Throttling", "Rate exceeded."),
}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> FakeResponse:
    """An error in the shape AWS services use: ``<Error><Code>…</Code><Message>…``.

    .. versionadded:: 0.2.0
    """
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return FakeResponse(
        status=status, body=body, headers={"content-type": "application/xml", **(headers or {})}
    )


def _default_key(request: FakeRequest) -> str:
    return f"{request.method} {request.path}"


@attrs.define(eq=False)
class FakeEndpoint:
    """An HTTP endpoint on a free port of 127.0.0.1 that fails as ``plan`` says for ``name``.

    Start it in your nursery, ``url = await nursery.start(endpoint.serve)``, and point the
    runtime at the URL. Each endpoint has its own port, so the runtime keeps a circuit
    breaker for each. The plan's windows count from :meth:`begin` (called by
    :meth:`serve` unless you call it first, to line several endpoints up).

    Args:
        name: The endpoint's name in ``plan``.
        plan: Which faults to inject, and when; healthy by default.
        app: Answers the requests that meet no fault; ``200`` naming the path by default.
            :class:`~cloudkit_trio.testing.FakeS3` is one.
        vault: When given, requests must carry a session token it issued (as a bearer
            token, or as SigV4's ``X-Amz-Security-Token``) and still honours.
        fault_key: Names a request for the plan (method and path by default); returning
            None exempts the request from faults (not from an outage).

    Attributes:
        requests: Requests received so far.
        injected: Faults injected so far, by kind (``expired_token`` counted as its own).
        url: Where it listens, once served.

    .. versionadded:: 0.2.0
    """

    name: str
    plan: FaultPlan = attrs.field(factory=FaultPlan)
    app: App | None = None
    vault: FakeVault | None = None
    fault_key: Callable[[FakeRequest], str | None] = _default_key
    requests: int = attrs.field(default=0, init=False)
    injected: Counter[str] = attrs.field(factory=Counter, init=False)
    url: str | None = attrs.field(default=None, init=False)
    _epoch: float | None = attrs.field(default=None, init=False)
    # Attempts per fault key so far; an entry goes when its request is answered.
    _attempts: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)

    def begin(self, now: float | None = None) -> None:
        """Start the plan's clock at ``now`` (``trio.current_time()`` by default)."""
        self._epoch = trio.current_time() if now is None else now

    def elapsed(self) -> float | None:
        """Seconds since :meth:`begin`, None before."""
        return None if self._epoch is None else trio.current_time() - self._epoch

    def phase(self) -> Phase:
        """What the plan has the endpoint doing now."""
        return self.plan.phase(self.name, self.elapsed())

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``nursery.start`` hands back the URL."""
        if self._epoch is None:
            self.begin()
        async with trio.open_nursery() as nursery:
            self.url = await nursery.start(serve_http, self._handle)
            task_status.started(self.url)

    async def _handle(self, request: FakeRequest) -> FakeResponse:
        self.requests += 1
        faults = self.plan.faults(self.name)
        elapsed = self.elapsed()
        if faults.latency:
            await trio.sleep(faults.latency)
        if self.plan.phase(self.name, elapsed) is Phase.DOWN:
            down = next(w.fault for w in faults.windows if elapsed in w)
            return await self._fault(down, request)
        refusal = self._check_credentials(request)
        if refusal is not None:
            return refusal
        key = self.fault_key(request)
        if key is not None:
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
            fault = self.plan.decide(self.name, f"{key} #{attempt}", elapsed)
            if fault is not None and fault is not Fault.SLOW:
                return await self._fault(fault, request)
            self._attempts.pop(key, None)
            if fault is Fault.SLOW:
                self.injected[fault.value] += 1
                await trio.sleep(faults.slow_delay)
        if self.app is None:
            await trio.lowlevel.checkpoint()
            return FakeResponse(body=f"{self.name}: {request.path}\n".encode())
        return await self.app(request)

    def _check_credentials(self, request: FakeRequest) -> FakeResponse | None:
        if self.vault is None:
            return None
        authorization = request.headers.get("authorization", "")
        token = request.headers.get("x-amz-security-token")
        if token is None and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
        state = self.vault.check(token)
        if state is CredentialState.EXPIRED:
            self.injected["expired_token"] += 1
            return error_response(400, "ExpiredToken", "The provided token has expired.")
        if state is CredentialState.UNKNOWN:
            return error_response(
                403, "InvalidToken", "The provided token is malformed or unknown."
            )
        return None

    async def _fault(self, fault: Fault, request: FakeRequest) -> FakeResponse:
        await trio.lowlevel.checkpoint()
        self.injected[fault.value] += 1
        faults = self.plan.faults(self.name)
        if fault is Fault.RESET:
            return FakeResponse(body=b"partial", reset=True)
        if fault is Fault.SLOW:
            await trio.sleep(faults.slow_delay)
            return FakeResponse(body=f"{self.name}: {request.path}\n".encode())
        status, code, message = _ERRORS[fault]
        headers: dict[str, str] = {}
        if fault is Fault.RATE_LIMITED:
            headers["retry-after"] = f"{faults.retry_after:g}"
            if faults.slow_down:
                status, code, message = 503, "SlowDown", "Please reduce your request rate."
        return error_response(status, code, message, headers)
