"""A fault-injecting httpx transport for users' tests (and ours)."""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Mapping

import attrs
import httpx
import trio

__all__ = ["Fault", "FaultyTransport"]


class Fault(enum.Enum):
    """A kind of failure :class:`FaultyTransport` can inject.

    .. versionadded:: 0.1.0
    """

    #: HTTP 500.
    SERVER_ERROR = "server_error"
    #: HTTP 503.
    UNAVAILABLE = "unavailable"
    #: HTTP 429 with ``Retry-After``.
    RATE_LIMITED = "rate_limited"
    #: The connection breaks before a response (``httpx.ReadError``).
    RESET = "reset"
    #: The connection is refused (``httpx.ConnectError``: never sent).
    REFUSED = "refused"
    #: The response takes ``slow_delay`` seconds (Trio time) to arrive.
    SLOW = "slow"


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


@attrs.define(eq=False)
class FaultyTransport(httpx.AsyncBaseTransport):
    """An in-memory transport that fails a share of requests, reproducibly.

    Each request fails with probability ``rate``; the fault is drawn from ``weights``
    with a seeded random source, so a run can be replayed. Successful requests go to
    ``handler`` (``200 ok`` by default). Delays use ``trio.sleep``, so ``MockClock`` drives
    them. ``counts`` tells how often each fault was injected.

    .. versionadded:: 0.1.0
    """

    rate: float = 0.2
    handler: Handler = _ok
    weights: Mapping[Fault, float] = attrs.field(factory=lambda: dict.fromkeys(Fault, 1.0))
    seed: int | None = 0
    retry_after: float = 0.5
    slow_delay: float = 2.0
    requests: int = 0
    counts: dict[Fault, int] = attrs.field(factory=dict)
    _random: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {self.rate!r}")
        self._random = random.Random(self.seed)

    def _draw(self) -> Fault | None:
        if self._random.random() >= self.rate:
            return None
        kinds = list(self.weights)
        return self._random.choices(kinds, weights=[self.weights[k] for k in kinds])[0]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await trio.lowlevel.checkpoint()
        fault = self._draw()
        if fault is not None:
            self.counts[fault] = self.counts.get(fault, 0) + 1
        match fault:
            case Fault.SERVER_ERROR:
                return httpx.Response(500, content=b"injected")
            case Fault.UNAVAILABLE:
                return httpx.Response(503, content=b"injected")
            case Fault.RATE_LIMITED:
                return httpx.Response(429, headers={"Retry-After": f"{self.retry_after:g}"})
            case Fault.RESET:
                raise httpx.ReadError("connection reset by peer (injected)", request=request)
            case Fault.REFUSED:
                raise httpx.ConnectError("connection refused (injected)", request=request)
            case Fault.SLOW:
                await trio.sleep(self.slow_delay)
            case None:
                pass
        result = self.handler(request)
        if not isinstance(result, httpx.Response):
            result = await result
        return result
