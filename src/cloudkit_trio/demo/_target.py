"""What the demo drives: a target's endpoints and operations, and the modes that provide one.

A mode starts whatever its target needs (servers, fixtures) in the run's nursery and hands
back a :class:`Target`; the driver, the views and the summary only ever see the target. The
embedded endpoints and a user's own endpoint are the two modes today; another (an S3
bucket through ``cloudkit_trio.aws``) is one more class with a ``start`` method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from .._operation import Operation, endpoint_of
from ..spi import AuthProvider
from ..transport import RequestSigner

if TYPE_CHECKING:
    import trio

__all__ = ["Mode", "Target", "TargetEndpoint"]


@attrs.frozen(kw_only=True)
class TargetEndpoint:
    """One endpoint the demo sends to; ``role`` says what the scenario does to it."""

    name: str
    url: str
    role: str

    @property
    def key(self) -> str:
        """``scheme://host:port``: the runtime's breaker for this endpoint has this name."""
        return endpoint_of(self.url)


def _nothing_injected() -> Mapping[str, int]:
    return {}


def _no_requests() -> Mapping[str, int]:
    return {}


def _ignore_start(_now: float) -> None:
    return None


@attrs.frozen(kw_only=True)
class Target:
    """Everything the driver needs, and what the views may say about it.

    Args:
        title: One line naming the target, for the header.
        endpoints: Where operations go.
        operation: The ``n``-th operation of the run.
        auth_provider: Credentials for the runtime, when ``signer`` needs them.
        signer: How requests are authenticated; None sends them as they are.
        begin: Called with ``trio.current_time()`` when the first operation is released:
            the scenario's clock starts then.
        injected: Faults injected so far, by kind (empty for a target we do not control).
        requests: Requests each endpoint received so far, by endpoint name, when known.
        notes: Lines describing the scenario (outage window, bursts, credential leases).
    """

    title: str
    endpoints: tuple[TargetEndpoint, ...]
    operation: Callable[[int], Operation]
    auth_provider: AuthProvider | None = None
    signer: RequestSigner | None = None
    begin: Callable[[float], None] = _ignore_start
    injected: Callable[[], Mapping[str, int]] = _nothing_injected
    requests: Callable[[], Mapping[str, int]] = _no_requests
    notes: tuple[str, ...] = ()


class Mode(Protocol):
    """A source of targets: starts what the target needs in ``nursery``, which the run
    cancels when it is over."""

    name: str

    async def start(self, nursery: trio.Nursery) -> Target: ...
