"""What the hostile servers of these tests share: reading a request head off a raw socket."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trio


async def read_head(stream: trio.SocketStream) -> bytes | None:
    """The request's head up to and including the blank line; None if the client left first."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = await stream.receive_some(65_536)
        if not data:
            return None
        head += data
    return head
