"""One embedded storage endpoint: an ASGI app that answers per the fault plan.

Requests are checked the way an AWS service checks them: an endpoint that is down answers
503 before anything else; then the bearer token must be one the ledger issued and still
honours (``400 ExpiredToken`` otherwise, ``403 InvalidToken`` for a token it never
issued); then the plan may inject a fault; else the answer is ``200``.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import trio

from ._asgi import EmbeddedApp, answer, header
from ._credentials import TokenLedger, TokenState
from ._faults import Fault, FaultPlan, RunClock

if TYPE_CHECKING:
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

    from ._settings import Timing

__all__ = ["FaultyEndpoint"]

_ERRORS: Final[dict[Fault, tuple[int, str, str]]] = {
    Fault.SERVER_ERROR: (500, "InternalError", "We encountered an internal error. Try again."),
    Fault.UNAVAILABLE: (503, "ServiceUnavailable", "Please reduce your request rate."),
    Fault.RATE_LIMITED: (429, "Throttling", "Rate exceeded."),
    Fault.BURST_500: (500, "InternalError", "We encountered an internal error. Try again."),
    Fault.BURST_503: (503, "ServiceUnavailable", "Please reduce your request rate."),
    Fault.OUTAGE: (503, "ServiceUnavailable", "The endpoint is down for a scheduled outage."),
    Fault.EXPIRED_TOKEN: (400, "ExpiredToken", "The provided token has expired."),
}


class _InjectedReset(Exception):
    """Raised mid-response so that the server breaks the connection."""


def _error_body(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


class FaultyEndpoint(EmbeddedApp):
    """An ASGI app for one endpoint of the embedded scenario.

    ``requests`` counts every request, ``injected`` every fault by kind (shared between
    endpoints when the caller passes one counter to all of them).
    """

    def __init__(
        self,
        name: str,
        *,
        plan: FaultPlan,
        ledger: TokenLedger,
        clock: RunClock,
        timing: Timing,
        injected: Counter[str] | None = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.ledger = ledger
        self.clock = clock
        self.timing = timing
        super().__init__()
        self.injected: Counter[str] = injected if injected is not None else Counter()
        # Attempts per path so far; an entry goes when its path is answered 200.
        self._attempts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"FaultyEndpoint({self.name!r}, requests={self.requests})"

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        now = trio.current_time()
        path = scope["path"]
        attempt = self._attempts[path] = self._attempts.get(path, 0) + 1
        fault = self.plan.decide(self.name, path, attempt, self.clock.elapsed(now))
        if fault is Fault.OUTAGE:
            await self._error(send, fault)
            return
        authorization = header(scope["headers"], b"authorization") or ""
        token = authorization.removeprefix("Bearer ") if authorization else None
        state = self.ledger.check(token, now)
        if state is TokenState.EXPIRED:
            await self._error(send, Fault.EXPIRED_TOKEN)
            return
        if state is TokenState.UNKNOWN:
            body = _error_body("InvalidToken", "The provided token is malformed or unknown.")
            await answer(send, 403, body, content_type=b"application/xml")
            return
        if fault is None:
            await self._ok(send, path)
        elif fault is Fault.SLOW:
            self.injected[fault.value] += 1
            await trio.sleep(self.timing.slow)
            await self._ok(send, path)
        elif fault is Fault.STALL:
            self.injected[fault.value] += 1
            await self._stall(receive, send, path)
        elif fault is Fault.RESET:
            self.injected[fault.value] += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise _InjectedReset("connection broken on purpose")
        else:
            await self._error(send, fault)

    async def _ok(self, send: ASGISendCallable, path: str) -> None:
        self._attempts.pop(path, None)
        await answer(send, 200, f"{self.name}: {path}\n".encode())

    async def _error(self, send: ASGISendCallable, fault: Fault) -> None:
        self.injected[fault.value] += 1
        status, code, message = _ERRORS[fault]
        extra = [(b"retry-after", str(self.timing.retry_after).encode())] if status == 429 else []
        await answer(
            send, status, _error_body(code, message), content_type=b"application/xml", extra=extra
        )

    async def _stall(self, receive: ASGIReceiveCallable, send: ASGISendCallable, path: str) -> None:
        # Hold the request until the client gives up (it disconnects) or the stall is over.
        with trio.move_on_after(self.timing.stall):
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await self._ok(send, path)
