"""Fault plans: a seeded, declarative schedule of what each fake endpoint does wrong, and when.

A plan answers one question, :meth:`FaultPlan.decide`: which fault, if any, a given request
to a given endpoint meets at a given time into the run. The answer is a pure function of
the seed, the endpoint's name, the request's key and that time, so the order in which
concurrent requests arrive changes nothing and a seed replays its schedule.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

import attrs

from ._faults import Fault

__all__ = ["EndpointFaults", "FaultPlan", "FaultWindow", "Phase"]

#: The random faults of :class:`EndpointFaults`, weighted so that failures the runtime
#: retries dominate.
DEFAULT_WEIGHTS: Final[Mapping[Fault, float]] = MappingProxyType(
    {
        Fault.SERVER_ERROR: 3.0,
        Fault.UNAVAILABLE: 3.0,
        Fault.RATE_LIMITED: 2.0,
        Fault.RESET: 2.0,
        Fault.SLOW: 3.0,
    }
)


class Phase(enum.StrEnum):
    """What an endpoint of a plan is doing at one moment.

    .. versionadded:: 0.2.0
    """

    #: Every request is answered as asked.
    HEALTHY = "healthy"
    #: Requests fail at random now and then (:attr:`EndpointFaults.rate`).
    FLAKY = "flaky"
    #: Inside a window that fails part of the requests.
    FAILING = "failing"
    #: Inside a window that fails every request: an outage.
    DOWN = "down"


def _fraction(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value <= 1):
        raise ValueError(f"{attribute.name} must be a number from 0 to 1, got {value!r}")


def _seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number of seconds >= 0, got {value!r}")


def _served(_instance: object, attribute: attrs.Attribute[Fault], value: Fault) -> None:
    if value is Fault.REFUSED:
        raise ValueError(
            "a fake endpoint accepts every connection, so it cannot inject Fault.REFUSED; "
            "use a closed port, or FaultyTransport"
        )


@attrs.frozen(kw_only=True)
class FaultWindow:
    """A span of the run during which an endpoint fails ``share`` of its requests with
    ``fault``.

    ``start`` and ``end`` are seconds since the endpoint's clock began
    (:meth:`FakeEndpoint.begin`). A window with ``share=1`` is an outage
    (:attr:`Phase.DOWN`), with less an error burst (:attr:`Phase.FAILING`).

    .. versionadded:: 0.2.0
    """

    start: float = attrs.field(validator=_seconds)
    end: float = attrs.field(validator=_seconds)
    fault: Fault = attrs.field(default=Fault.UNAVAILABLE, validator=_served)
    share: float = attrs.field(default=1.0, validator=_fraction)

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts, got {self.start}..{self.end}")

    def __contains__(self, elapsed: object) -> bool:
        return isinstance(elapsed, int | float) and self.start <= elapsed < self.end


def _windows(value: Iterable[FaultWindow]) -> tuple[FaultWindow, ...]:
    return tuple(value)


def _weights(value: Mapping[Fault, float]) -> Mapping[Fault, float]:
    weights = MappingProxyType(dict(value))
    for fault, weight in weights.items():
        _served(None, attrs.fields(FaultWindow).fault, fault)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"the weight of {fault} must be a finite number >= 0, got {weight!r}")
    if weights and not any(weights.values()):
        raise ValueError("at least one fault needs a weight above 0")
    return weights


@attrs.frozen(kw_only=True)
class EndpointFaults:
    """What one endpoint of a :class:`FaultPlan` does wrong.

    Args:
        rate: Share of requests, outside the windows, that fail at random, with a fault
            drawn from ``weights``.
        weights: Relative frequency of each random fault (503, 500, 429, resets, slow
            answers by default; :attr:`Fault.REFUSED` cannot be served).
        windows: Timed spans that fail part or all of the requests (bursts, outages).
        latency: Seconds added to every answer.
        slow_delay: Seconds a :attr:`Fault.SLOW` answer takes.
        retry_after: Seconds a throttled answer asks the client to wait (``Retry-After``).
        slow_down: Throttle the way S3 does, ``503 SlowDown``, instead of ``429 Throttling``.

    .. versionadded:: 0.2.0
    """

    rate: float = attrs.field(default=0.0, validator=_fraction)
    weights: Mapping[Fault, float] = attrs.field(default=DEFAULT_WEIGHTS, converter=_weights)
    windows: tuple[FaultWindow, ...] = attrs.field(default=(), converter=_windows)
    latency: float = attrs.field(default=0.0, validator=_seconds)
    slow_delay: float = attrs.field(default=0.25, validator=_seconds)
    retry_after: float = attrs.field(default=1.0, validator=_seconds)
    slow_down: bool = False


_HEALTHY: Final = EndpointFaults()


def _endpoint_map(value: Mapping[str, EndpointFaults]) -> Mapping[str, EndpointFaults]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class FaultPlan:
    """A seeded schedule of faults per endpoint, by endpoint name.

    An endpoint the plan does not name is healthy. Build one plan for every fake endpoint
    of a test, so that one seed decides them all::

        plan = FaultPlan(
            seed=7,
            endpoints={
                "alpha": EndpointFaults(rate=0.1),
                "gamma": EndpointFaults(windows=[FaultWindow(start=2.0, end=5.0)]),
            },
        )

    .. versionadded:: 0.2.0
    """

    seed: int = 0
    endpoints: Mapping[str, EndpointFaults] = attrs.field(factory=dict, converter=_endpoint_map)

    def faults(self, endpoint: str) -> EndpointFaults:
        """What ``endpoint`` does wrong (nothing, if the plan does not name it)."""
        return self.endpoints.get(endpoint, _HEALTHY)

    def decide(self, endpoint: str, key: str, elapsed: float | None) -> Fault | None:
        """The fault the request ``key`` to ``endpoint`` meets, or None for a good answer.

        ``key`` names the request and its attempt (a fake endpoint uses method, path and
        the attempt's number at that path); ``elapsed`` is seconds since the endpoint's
        clock began, None before it did (no window applies then). The same arguments
        always get the same answer.
        """
        faults = self.faults(endpoint)
        draw = random.Random(f"{self.seed}/{endpoint}/{key}")
        for window in faults.windows:
            if elapsed in window:
                if draw.random() < window.share:
                    return window.fault
                break
        if faults.rate == 0 or draw.random() >= faults.rate:
            return None
        kinds = [kind for kind, weight in faults.weights.items() if weight > 0]
        return draw.choices(kinds, weights=[faults.weights[k] for k in kinds])[0]

    def phase(self, endpoint: str, elapsed: float | None) -> Phase:
        """What ``endpoint`` is doing ``elapsed`` seconds into the run."""
        faults = self.faults(endpoint)
        for window in faults.windows:
            if elapsed in window:
                return Phase.DOWN if window.share >= 1 else Phase.FAILING
        return Phase.FLAKY if faults.rate > 0 else Phase.HEALTHY
