"""``--endpoint URL``: drive an endpoint of your own instead of the embedded ones."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

import trio

from .._credentials import Credentials
from .._operation import Operation
from ..spi import StaticAuthProvider
from ..transport import BearerTokenSigner
from ..transport._classify import scrub
from ._target import Target, TargetEndpoint

__all__ = ["TOKEN_VARIABLE", "RemoteMode"]

#: When set, every request carries ``Authorization: Bearer <its value>``.
TOKEN_VARIABLE: Final = "CLOUDKIT_DEMO_BEARER_TOKEN"
#: Replaced by the operation's number in the URL, so that requests can differ.
PLACEHOLDER: Final = "{n}"


class RemoteMode:
    """Plain GETs of one URL (``{n}`` in it becomes the operation's number), with no fault
    injection: whatever the endpoint does is what the runtime meets. No credentials are
    sent unless ``CLOUDKIT_DEMO_BEARER_TOKEN`` is set.
    """

    name = "endpoint"

    def __init__(self, url: str, environ: Mapping[str, str] | None = None) -> None:
        self.url = url
        self._environ = environ

    async def start(self, nursery: trio.Nursery) -> Target:
        await trio.lowlevel.checkpoint()
        environ = os.environ if self._environ is None else self._environ
        token = environ.get(TOKEN_VARIABLE, "").strip()
        url = self.url
        # A query string can carry a key; the title is printed, so mask what looks secret.
        title = f"GET {scrub(url)}"

        def operation(n: int) -> Operation:
            return Operation(service="demo", name="get", url=url.replace(PLACEHOLDER, str(n)))

        endpoint = TargetEndpoint(
            name="target", url=scrub(url.replace(PLACEHOLDER, "0")), role="yours"
        )
        notes = ["no faults injected: the endpoint's own behaviour is what you see"]
        if token:
            notes.append(f"requests carry a bearer token from {TOKEN_VARIABLE}")
            return Target(
                title=title,
                endpoints=(endpoint,),
                operation=operation,
                auth_provider=StaticAuthProvider(Credentials("demo-bearer", token)),
                signer=BearerTokenSigner(),
                notes=tuple(notes),
            )
        return Target(title=title, endpoints=(endpoint,), operation=operation, notes=tuple(notes))
