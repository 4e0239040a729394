"""Loopback endpoints for the AWS tests: real sockets on 127.0.0.1 only.

Scripted endpoints for the credential providers, and moto's S3 server for the S3 client.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._moto import MotoServer, run_moto_server


@attrs.frozen
class Seen:
    """One request as the endpoint received it."""

    method: str
    path: str
    headers: dict[str, str]


@attrs.define(eq=False)
class ScriptedEndpoint:
    """An ASGI app that answers every request with the scripted status and body."""

    status: int = 200
    body: bytes = b"{}"
    headers: list[tuple[bytes, bytes]] = attrs.Factory(
        lambda: [(b"content-type", b"application/json")]
    )
    seen: list[Seen] = attrs.Factory(list)
    url: str = ""
    #: Send the body in this many pieces, without a Content-Length (chunked encoding).
    pieces: int = 1

    def answer(self, status: int, document: object = None, *, body: bytes | None = None) -> None:
        self.status = status
        self.body = body if body is not None else json.dumps(document).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["raw_path"].decode("ascii")
        received = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append(Seen(scope["method"], path, received))
        headers = list(self.headers)
        if self.pieces == 1:
            headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        size = -(-len(self.body) // self.pieces)
        for n in range(self.pieces):
            piece = self.body[n * size : (n + 1) * size]
            more = n < self.pieces - 1
            await send({"type": "http.response.body", "body": piece, "more_body": more})


@pytest.fixture
async def endpoint(nursery: trio.Nursery) -> ScriptedEndpoint:
    """A hypercorn (Trio worker) server on a free 127.0.0.1 port, stopped with the test."""
    app = ScriptedEndpoint()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.loglevel = "WARNING"
    config.graceful_timeout = 0.1
    binds = await nursery.start(partial(serve, app, config))
    app.url = binds[0]
    return app


Handler = Callable[[trio.SocketStream], Awaitable[None]]


@pytest.fixture
def tcp_server(nursery: trio.Nursery) -> Callable[[Handler], Awaitable[str]]:
    """Starts a raw TCP server on 127.0.0.1 with a handler; returns its http:// base URL."""

    async def start(handler: Handler) -> str:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    return start


@pytest.fixture
def refused_url() -> str:
    """An http:// URL on a 127.0.0.1 port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3 server on a free 127.0.0.1 port, authentication on, shared by the session."""
    with run_moto_server() as server:
        yield server
