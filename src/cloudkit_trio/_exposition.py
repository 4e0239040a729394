"""Serving ``/metrics`` from inside a Trio application."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ._errors import ConfigError
from ._validation import check_count

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["serve_metrics"]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

_LOGGER = logging.getLogger("cloudkit_trio.metrics_server")
_NOT_FOUND = b"Not Found: metrics are served at "


def _metrics_app(registry: Collector, path: str) -> _ASGIApp:
    from prometheus_client import make_asgi_app

    exposition = make_asgi_app(registry)

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "lifespan":
            # prometheus-client's app speaks only HTTP; answering the lifespan protocol here
            # keeps hypercorn from logging a lifespan error at every start.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == path and scope["method"] in ("GET", "HEAD"):
            await exposition(scope, receive, send)
            return
        body = _NOT_FOUND + path.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_metrics(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    registry: Collector | None = None,
    path: str = "/metrics",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve Prometheus' text exposition of ``registry`` at ``http://host:port/metrics``.

    Runs until cancelled, inside the caller's Trio run (no thread): start it with
    ``port = await nursery.start(partial(serve_metrics, port=9464, registry=registry))``;
    the bound port is reported through ``task_status``, so ``port=0`` picks a free one.
    The exposition is prometheus-client's own (content negotiation for OpenMetrics and gzip
    included), served by hypercorn's Trio worker: a real HTTP server that lives in the
    application's nursery and stops with it. It binds to loopback unless ``host`` says
    otherwise; expose metrics beyond the machine on purpose, not by default.

    Needs the ``server`` extra (``pip install 'cloudkit-trio[server]'``).

    Args:
        host: The address to listen on.
        port: The TCP port; ``0`` picks a free one.
        registry: The registry to expose (default: prometheus-client's global ``REGISTRY``,
            which is also :class:`~cloudkit_trio.PrometheusMetrics`' default).
        path: The URL path to serve; others get 404.

    Raises:
        ConfigError: ``port`` or ``path`` is unusable.
        ModuleNotFoundError: hypercorn is not installed.

    .. versionadded:: 0.1.0
    """
    check_count("port", port, minimum=0, maximum=65535)
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"path must start with '/', got {path!r}", field="path")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host must be a non-empty str, got {host!r}", field="host")
    try:
        from hypercorn.config import Config
        from hypercorn.trio import serve
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "serve_metrics needs hypercorn: pip install 'cloudkit-trio[server]'", name="hypercorn"
        ) from error
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY

    config = Config()
    # Bound here, so a busy port is the OSError itself and its socket is closed; hypercorn
    # then takes the descriptor over (and closes it when it stops).
    config.bind = [f"fd://{(await _bound_socket(host, port)).detach()}"]
    config.errorlog = _LOGGER
    config.accesslog = None
    config.graceful_timeout = 1.0

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, _metrics_app(registry, path), config, mode="asgi")  # type: ignore[arg-type]
        )
        task_status.started(int(binds[0].rsplit(":", 1)[1]))


async def _bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, or the OSError saying which address is busy."""
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(
            error.errno, f"serve_metrics cannot listen on {where}: {error.strerror}"
        ) from None
    return sock
