"""The default mode: three storage endpoints and a Vault, served in the run itself."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Final

from .._operation import Operation
from ..aws import VaultAuthProvider
from ..transport import BearerTokenSigner
from ._credentials import TokenLedger, VaultApp
from ._endpoint import FaultyEndpoint
from ._faults import FaultPlan, RunClock
from ._server import serve_app
from ._target import Target, TargetEndpoint

if TYPE_CHECKING:
    import trio

    from ._settings import DemoSettings, Timing, Window

__all__ = ["EmbeddedMode", "span", "start_vault"]

ENDPOINTS: Final = ("alpha", "beta", "gamma")
OUTAGE_ENDPOINT: Final = "gamma"
VAULT_ROLE: Final = "demo"


async def start_vault(
    nursery: trio.Nursery, timing: Timing
) -> tuple[TokenLedger, VaultAuthProvider]:
    """Serve the embedded Vault in ``nursery``: the ledger of the credentials it issues,
    which the endpoints check, and the provider the runtime fetches them with."""
    ledger = TokenLedger(timing.lease)
    vault_token = secrets.token_urlsafe(24)
    vault_url: str = await nursery.start(
        partial(serve_app, VaultApp(ledger, vault_token=vault_token, role=VAULT_ROLE))
    )
    provider = VaultAuthProvider(
        vault_url, VAULT_ROLE, token=vault_token, timeout=timing.attempt_timeout
    )
    return ledger, provider


def span(window: Window, timing: Timing) -> str:
    """``from 6.0 s to 11.0 s``: a window of the run, for the notes."""
    # Short runs have short windows: show them to the hundredth.
    digits = 1 if timing.duration >= 10 else 2
    return f"from {window.start:.{digits}f} s to {window.end:.{digits}f} s"


class EmbeddedMode:
    """Serves the fault-injecting endpoints and the credentials they accept.

    Operations are GETs of ``/objects/<n>``, spread round-robin over the endpoints,
    authenticated with a bearer token from the embedded Vault through
    :class:`~cloudkit_trio.aws.VaultAuthProvider`.
    """

    name = "embedded"

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.timing = settings.timing
        self.plan = FaultPlan.build(
            seed=settings.seed,
            fault_rate=settings.fault_rate,
            timing=self.timing,
            endpoints=ENDPOINTS,
            outage_endpoint=OUTAGE_ENDPOINT,
        )

    async def start(self, nursery: trio.Nursery) -> Target:
        timing = self.timing
        clock = RunClock()
        ledger, provider = await start_vault(nursery, timing)
        injected: Counter[str] = Counter()
        apps: list[FaultyEndpoint] = []
        endpoints: list[TargetEndpoint] = []
        for name in ENDPOINTS:
            app = FaultyEndpoint(
                name, plan=self.plan, ledger=ledger, clock=clock, timing=timing, injected=injected
            )
            url: str = await nursery.start(partial(serve_app, app))
            apps.append(app)
            role = "outage" if name == OUTAGE_ENDPOINT else "steady"
            endpoints.append(TargetEndpoint(name=name, url=url, role=role))
        bases = tuple(endpoint.url for endpoint in endpoints)

        def operation(n: int) -> Operation:
            return Operation(
                service="storage", name="get_object", url=f"{bases[n % len(bases)]}/objects/{n}"
            )

        def requests() -> Mapping[str, int]:
            return {app.name: app.requests for app in apps}

        return Target(
            title=f"{len(endpoints)} embedded endpoints with injected faults",
            endpoints=tuple(endpoints),
            operation=operation,
            auth_provider=provider,
            signer=BearerTokenSigner(),
            begin=clock.begin,
            injected=lambda: dict(injected),
            requests=requests,
            notes=self._notes(),
        )

    def _notes(self) -> tuple[str, ...]:
        timing, plan = self.timing, self.plan
        notes = [f"outage: {plan.outage_endpoint} answers 503 {span(plan.outage, timing)}"]
        notes.extend(
            f"error burst: {name} {span(window, timing)}"
            for name, window in sorted(plan.bursts.items())
        )
        notes.append(
            f"credentials: {timing.lease} s leases from the embedded Vault; "
            "every third one revoked early (ExpiredToken)"
        )
        if self.settings.fault_rate:
            notes.append(
                f"random faults: {self.settings.fault_rate:.0%} of attempts "
                "(500, 503, 429, resets, slow and stalled answers)"
            )
        return tuple(notes)
