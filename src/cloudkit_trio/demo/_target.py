"""What the demo drives: a target's endpoints and operations, and the modes that provide one.

A mode starts whatever its target needs (servers, fixtures) in the run's nursery and hands
back a :class:`Target`; the driver, the views and the summary only ever see the target. The
embedded endpoints, a user's own endpoint and an S3 bucket (embedded or real) are the modes.

A target may also prepare the running context before the first operation (create a bucket)
and, once every operation is answered, look at what the run left behind (list the bucket):
``prepare`` and ``finish``. What ``finish`` finds is a :class:`TargetReport`: figures for
the summary and the JSON, and checks that decide the exit status with ``submitted ==
replied``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import attrs
import trio

from .._context import Cloud
from .._operation import Operation, endpoint_of
from ..spi import AuthProvider
from ..transport import RequestSigner

__all__ = ["Check", "Mode", "RunOutcome", "Target", "TargetEndpoint", "TargetReport"]


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
class RunOutcome:
    """What the driver counted, handed to :attr:`Target.finish` once every answer is in."""

    submitted: int
    replied: int
    succeeded: int
    failed: int


@attrs.frozen(kw_only=True)
class Check:
    """A claim about the run that its target verified after it.

    Args:
        name: Its key in the JSON's ``invariant`` object (``listed_equals_uploaded``).
        statement: The claim with its figures, for people (``listed == uploaded: 7 == 7``).
        holds: Whether it held.
        binding: Whether the exit status depends on it; a claim the target cannot
            guarantee (a bucket of yours, which others may write to) is only reported.
    """

    name: str
    statement: str
    holds: bool
    binding: bool = True


@attrs.frozen(kw_only=True)
class TargetReport:
    """What a target found after the run.

    Args:
        key: Where :attr:`document` goes in the JSON summary (``"s3"``).
        document: The findings, JSON-ready.
        rows: ``(figure, value, detail)`` rows for the summary table.
        checks: Claims verified, see :class:`Check`.
    """

    key: str
    document: Mapping[str, object]
    rows: tuple[tuple[str, str, str], ...] = ()
    checks: tuple[Check, ...] = ()


async def _prepare_nothing(_cloud: Cloud) -> None:
    await trio.lowlevel.checkpoint()


async def _find_nothing(_cloud: Cloud, _outcome: RunOutcome) -> TargetReport | None:
    await trio.lowlevel.checkpoint()
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
        prepare: Called with the running context before the first operation (no
            operation of the run is counted yet); a :class:`~._problems.DemoError` from it
            stops the run before it starts.
        finish: Called with the running context and the driver's counts once every
            operation is answered, unless the run was interrupted; what it returns goes
            into the summary.
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
    prepare: Callable[[Cloud], Awaitable[None]] = _prepare_nothing
    finish: Callable[[Cloud, RunOutcome], Awaitable[TargetReport | None]] = _find_nothing


class Mode(Protocol):
    """A source of targets: starts what the target needs in ``nursery``, which the run
    cancels when it is over."""

    name: str

    async def start(self, nursery: trio.Nursery) -> Target: ...
