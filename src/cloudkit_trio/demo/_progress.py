"""What the views are shown while a run goes on: frozen records, rebuilt at every tick."""

from __future__ import annotations

import attrs

from ._collector import Transition
from ._settings import DemoSettings

__all__ = ["EndpointStatus", "Header", "Progress"]


@attrs.frozen(kw_only=True)
class Header:
    """What a run is about, known before the first operation."""

    mode: str
    title: str
    settings: DemoSettings
    endpoints: tuple[tuple[str, str, str], ...]
    notes: tuple[str, ...]
    metrics_url: str | None


@attrs.frozen(kw_only=True)
class EndpointStatus:
    """One endpoint's breaker, from ``cloud.snapshot()``, and what it was sent."""

    name: str
    url: str
    role: str
    #: ``scheme://host:port``, as breakers and transitions name the endpoint.
    key: str
    #: The breaker's state; ``closed`` before the endpoint's breaker exists.
    state: str
    failure_ratio: float
    time_until_half_open: float | None
    rejected: int
    requests: int | None


@attrs.frozen(kw_only=True)
class Progress:
    """The run at one tick."""

    elapsed: float
    planned: int
    planned_duration: float
    submitted: int
    replied: int
    succeeded: int
    failed: int
    retries: int
    rejected_by_breaker: int
    credential_refreshes: int
    credentials_expire_in: float | None
    inflight: int
    queued: int
    endpoints: tuple[EndpointStatus, ...]
    transitions: tuple[Transition, ...]
    stopping: bool
