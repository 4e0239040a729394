"""What a run is asked to do, and what it drives: fake endpoints on loopback, or yours.

The default scenario is three :class:`~cloudkit_trio.testing.FakeEndpoint` servers and a
:class:`~cloudkit_trio.testing.FakeVault`, failing on one seeded
:class:`~cloudkit_trio.testing.FaultPlan`; every window of it scales with the run's planned
length, ``operations / rate``, so a two-second test run tells the same story as the
twenty-second default.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import attrs

import cloudkit_trio as ck
from cloudkit_trio.testing import (
    EndpointFaults,
    FakeEndpoint,
    FakeVault,
    Fault,
    FaultPlan,
    FaultWindow,
    Phase,
)
from cloudkit_trio.transport import BearerTokenSigner, RequestSigner

if TYPE_CHECKING:
    import trio

    from ._report import Check

__all__ = [
    "DemoError",
    "Endpoint",
    "Settings",
    "Target",
    "Timing",
    "Workload",
    "endpoint_key",
    "remote_target",
    "start_embedded",
    "sole",
    "start_vault",
]

DEFAULT_OPERATIONS: Final = 2000
DEFAULT_RATE: Final = 100.0
DEFAULT_CONCURRENCY: Final = 32
DEFAULT_FAULT_RATE: Final = 0.1
DEFAULT_SEED: Final = 1
DEFAULT_BUCKET_PREFIX: Final = "cloudkit-demo-"
#: When set, requests to ``--endpoint`` carry ``Authorization: Bearer <its value>``.
TOKEN_VARIABLE: Final = "CLOUDKIT_DEMO_BEARER_TOKEN"
#: In ``--endpoint``, replaced by the operation's number.
PLACEHOLDER: Final = "{n}"
ENDPOINTS: Final = ("alpha", "beta", "gamma")
OUTAGE_ENDPOINT: Final = "gamma"

_E = TypeVar("_E", bound=BaseException)


class DemoError(Exception):
    """The run cannot start; the message says why and what to do."""


def sole(error: BaseException, kind: type[_E]) -> _E | None:
    """``error`` if it is a ``kind``, or the first leaf of a group made only of them.

    Nurseries wrap what their tasks raise in groups; a group holding anything else (a
    cancellation, a bug) is not ours to summarise.
    """
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        matched, rest = error.split(kind)
        if matched is not None and rest is None:
            leaf: BaseException = matched
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            assert isinstance(leaf, kind)
            return leaf
    return None


@attrs.frozen(kw_only=True)
class Settings:
    """The demo's options, already checked by the command line."""

    operations: int = DEFAULT_OPERATIONS
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    fault_rate: float = DEFAULT_FAULT_RATE
    seed: int = DEFAULT_SEED
    metrics_port: int | None = None
    json: bool = False
    endpoint: str | None = None
    s3: bool = False
    bucket: str | None = None

    @property
    def planned_duration(self) -> float:
        return self.operations / self.rate

    @property
    def bucket_name(self) -> str:
        return self.bucket if self.bucket is not None else f"{DEFAULT_BUCKET_PREFIX}{self.seed}"

    @property
    def timing(self) -> Timing:
        return Timing.scaled(self.planned_duration)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


@attrs.frozen(kw_only=True)
class Timing:
    """The run's durations, scaled to its planned length; one attempt's do not scale."""

    duration: float
    outage: tuple[float, float]
    burst: float
    break_duration: float
    sampling_window: float
    lease: int
    attempt_timeout: float = 1.0
    shutdown_grace: float = 2.0

    @classmethod
    def scaled(cls, duration: float) -> Timing:
        return cls(
            duration=duration,
            outage=(0.30 * duration, 0.55 * duration),
            burst=0.03 * duration,
            break_duration=_clamp(0.05 * duration, 0.1, 2.0),
            sampling_window=_clamp(0.2 * duration, 0.5, 10.0),
            lease=max(1, round(duration / 4)),
        )


def endpoint_key(url: str) -> str:
    """``scheme://host:port``, the name the runtime gives the endpoint's breaker."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def shown(url: str) -> str:
    """``url`` as printed: a query string can carry a key, so it is left out."""
    base, question, _ = url.partition("?")
    return f"{base}?…" if question else base


@attrs.frozen(kw_only=True)
class Endpoint:
    """An endpoint the run sends to; ``fake`` when the demo serves it."""

    name: str
    url: str
    fake: FakeEndpoint | None = None

    @property
    def key(self) -> str:
        return endpoint_key(self.url)

    def doing(self, breaker: str) -> str:
        """What the endpoint is doing now: its plan's phase, or what its breaker says."""
        if self.fake is not None:
            phase = self.fake.phase()
            if phase is Phase.DOWN:
                return "down"
            if phase is Phase.FAILING:
                return "failing"
            return "healthy" if breaker == "closed" else "recovering"
        return {"closed": "in use", "open": "failing"}.get(breaker, "recovering")


class Workload(Protocol):
    """A target's work around the run: made ready before it, checked after it."""

    async def prepare(self, cloud: ck.Cloud) -> None: ...

    async def finish(self, cloud: ck.Cloud, succeeded: int) -> tuple[Check, dict[str, Any]]: ...


@attrs.define(eq=False, kw_only=True)
class Target:
    """Everything the driver and the views need to know about what the run drives."""

    mode: str
    title: str
    endpoints: tuple[Endpoint, ...]
    operation: Callable[[int], ck.Operation]
    auth_provider: ck.AuthProvider | None = None
    signer: RequestSigner | None = None
    notes: tuple[str, ...] = ()
    #: The endpoint the scenario takes down, whose breaker must open and recover.
    outage_endpoint: str | None = None
    workload: Workload | None = None

    def begin(self, now: float) -> None:
        """The first operation is released: the fault plan's clock starts."""
        for endpoint in self.endpoints:
            if endpoint.fake is not None:
                endpoint.fake.begin(now)

    def injected(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for endpoint in self.endpoints:
            if endpoint.fake is not None:
                for kind, n in endpoint.fake.injected.items():
                    total[kind] = total.get(kind, 0) + n
        return total


def _span(window: tuple[float, float]) -> str:
    return f"from {window[0]:.1f} s to {window[1]:.1f} s"


def embedded_plan(settings: Settings) -> FaultPlan:
    """Random faults everywhere, an error burst on alpha and beta, gamma's outage."""
    timing = settings.timing
    placement = random.Random(f"{settings.seed}/bursts")
    latest = max(timing.duration - timing.burst, 0.0)
    endpoints: dict[str, EndpointFaults] = {}
    for name, fault in zip(ENDPOINTS, (Fault.SERVER_ERROR, Fault.UNAVAILABLE, None), strict=True):
        if fault is None:
            window = FaultWindow(start=timing.outage[0], end=timing.outage[1])
        else:
            start = placement.uniform(0.05 * timing.duration, 0.9 * latest)
            window = FaultWindow(start=start, end=start + timing.burst, fault=fault, share=0.6)
        windows = (window,) if fault is None or settings.fault_rate > 0 else ()
        endpoints[name] = EndpointFaults(rate=settings.fault_rate, windows=windows)
    return FaultPlan(seed=settings.seed, endpoints=endpoints)


async def start_vault(nursery: trio.Nursery, settings: Settings) -> FakeVault:
    vault = FakeVault(lease=settings.timing.lease, role="demo", revoke_every=3, revoke_after=0.6)
    await nursery.start(vault.serve)
    return vault


async def start_embedded(nursery: trio.Nursery, settings: Settings) -> Target:
    plan = embedded_plan(settings)
    vault = await start_vault(nursery, settings)
    endpoints = []
    for name in ENDPOINTS:
        fake = FakeEndpoint(name, plan=plan, vault=vault)
        endpoints.append(Endpoint(name=name, url=await nursery.start(fake.serve), fake=fake))
    bases = tuple(e.url for e in endpoints)

    def operation(n: int) -> ck.Operation:
        url = f"{bases[n % len(bases)]}/objects/{n}"
        return ck.Operation(service="storage", name="get_object", url=url)

    notes = [f"outage: {OUTAGE_ENDPOINT} answers 503 {_span(settings.timing.outage)}"]
    for name, faults in sorted(plan.endpoints.items()):
        for w in faults.windows:
            if w.share < 1:
                notes.append(
                    f"error burst: {name} fails 60 % with {w.fault.value} {_span((w.start, w.end))}"
                )
    if settings.fault_rate:
        notes.append(
            f"random faults on {settings.fault_rate:.0%} of attempts everywhere "
            "(500, 503, 429, resets, slow answers)"
        )
    notes.append(
        f"credentials: {vault.lease} s leases from a fake Vault; "
        "every third revoked early (ExpiredToken)"
    )
    return Target(
        mode="embedded",
        title=f"{len(endpoints)} fake endpoints with injected faults",
        endpoints=tuple(endpoints),
        operation=operation,
        auth_provider=vault.auth_provider(timeout=settings.timing.attempt_timeout),
        signer=BearerTokenSigner(),
        notes=tuple(notes),
        outage_endpoint=OUTAGE_ENDPOINT,
    )


def remote_target(url: str, environ: Mapping[str, str]) -> Target:
    def operation(n: int) -> ck.Operation:
        return ck.Operation(service="demo", name="get", url=url.replace(PLACEHOLDER, str(n)))

    endpoint = Endpoint(name="target", url=shown(url.replace(PLACEHOLDER, "0")))
    notes = ["no faults injected: the endpoint's own behaviour is what you see"]
    token = environ.get(TOKEN_VARIABLE, "").strip()
    target = Target(
        mode="endpoint",
        title=f"GET {shown(url)}",
        endpoints=(endpoint,),
        operation=operation,
        notes=tuple(notes),
    )
    if token:
        target.auth_provider = ck.StaticAuthProvider(ck.Credentials("demo-bearer", token))
        target.signer = BearerTokenSigner()
        target.notes += (f"requests carry a bearer token from {TOKEN_VARIABLE}",)
    return target
