"""A small HTTP/1.1 server on 127.0.0.1, built on h11 and Trio, for the fake endpoints.

It runs in the caller's nursery, under the caller's clock, and needs nothing the runtime
does not already depend on. One request at a time per connection, keep-alive honoured,
whole bodies only: what a fake needs, and no more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
import h11
import trio

__all__ = ["App", "FakeRequest", "FakeResponse", "serve_http"]

_CHUNK: Final = 65536
#: A request body larger than this is refused: fakes hold small objects.
_MAX_BODY: Final = 16 * 1024 * 1024


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class FakeRequest:
    """One request as a fake endpoint received it.

    ``headers`` has lower-case names; ``path`` is percent-decoded; ``query`` holds the
    last value of each query parameter.

    .. versionadded:: 0.2.0
    """

    method: str
    target: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    body: bytes = b""

    @classmethod
    def build(
        cls, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> FakeRequest:
        """A request for ``method`` and ``target`` (``/path?query``)."""
        parts = urlsplit(target)
        return cls(
            method=method.upper(),
            target=target,
            path=unquote(parts.path) or "/",
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in headers.items()},
            body=body,
        )


@attrs.frozen(kw_only=True)
class FakeResponse:
    """What a fake endpoint answers.

    With ``reset=True`` the server sends the status line, the headers and part of the
    body, then closes the connection: the client sees it break mid-response.

    .. versionadded:: 0.2.0
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    reset: bool = False


#: What a fake endpoint asks to answer a request.
App = Callable[[FakeRequest], Awaitable[FakeResponse]]


async def _next_request(
    connection: h11.Connection, stream: trio.SocketStream
) -> FakeRequest | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(_CHUNK))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_BODY:
                return None
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers
            }
            return FakeRequest.build(
                head.method.decode("ascii"), head.target.decode("latin-1"), headers, bytes(body)
            )
        else:
            # ConnectionClosed, or PAUSED after a response the client did not wait for.
            return None


async def _answer(
    connection: h11.Connection, stream: trio.SocketStream, response: FakeResponse
) -> bool:
    """Send ``response``; False when the connection must close after it."""
    headers = [(name, value) for name, value in response.headers.items()]
    if response.reset:
        headers.append(("content-length", str(len(response.body) + 64)))
        data = connection.send(h11.Response(status_code=response.status, headers=headers))
        await stream.send_all(data + connection.send(h11.Data(data=response.body)))
        return False
    headers.append(("content-length", str(len(response.body))))
    data = connection.send(h11.Response(status_code=response.status, headers=headers))
    data += connection.send(h11.Data(data=response.body)) + connection.send(h11.EndOfMessage())
    await stream.send_all(data)
    if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
        return False
    connection.start_next_cycle()
    return True


async def _serve_connection(app: App, stream: trio.SocketStream) -> None:
    connection = h11.Connection(h11.SERVER)
    try:
        while (request := await _next_request(connection, stream)) is not None:
            try:
                response = await app(request)
            except Exception as error:
                # A broken app answers 500 rather than stop the server.
                response = FakeResponse(
                    status=500, body=f"fake endpoint failed: {error!r}".encode()
                )
            if not await _answer(connection, stream, response):
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        # The client went away or spoke nonsense: nothing more to say to it.
        return
    finally:
        await stream.aclose()


async def serve_http(
    app: App, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` on a free port of 127.0.0.1 until cancelled; started with its URL."""
    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            partial(trio.serve_tcp, partial(_serve_connection, app), 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        task_status.started(f"http://127.0.0.1:{port}")
