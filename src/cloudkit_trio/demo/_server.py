"""Serving an embedded ASGI app on loopback with hypercorn's Trio worker, inside our own run."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

__all__ = ["serve_app"]


async def serve_app(
    app: ASGIFramework, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` on a free port of 127.0.0.1 until cancelled.

    ``url = await nursery.start(serve_app, app)`` hands back ``http://127.0.0.1:<port>``.
    Each app gets its own port, because the runtime keeps a circuit breaker per
    ``scheme://host:port``.
    """
    config = Config()
    config.bind = ["127.0.0.1:0"]
    # The apps break connections on purpose; hypercorn need not report it.
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, app, config, mode="asgi"))
        task_status.started(binds[0])
