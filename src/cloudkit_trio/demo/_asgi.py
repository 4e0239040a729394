"""The little ASGI the embedded apps share: the lifespan handshake and whole responses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

__all__ = ["EmbeddedApp", "answer", "header", "serve_lifespan"]


async def serve_lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Acknowledge startup and shutdown; the apps hold no resources that need either."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of the request header ``name`` (lowercase), if present."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def answer(
    send: ASGISendCallable,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain",
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a complete response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class EmbeddedApp:
    """An embedded app: the lifespan handshake, a count of HTTP requests, then :meth:`handle`."""

    def __init__(self) -> None:
        #: HTTP requests received so far.
        self.requests = 0

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.requests += 1
        await self.handle(scope, receive, send)

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        raise NotImplementedError
