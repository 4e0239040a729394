"""The embedded scenario on its own: the seeded fault schedule and the ASGI apps that play it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import httpx
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import VaultAuthProvider
from cloudkit_trio.demo._credentials import TokenLedger, TokenState, VaultApp
from cloudkit_trio.demo._endpoint import FaultyEndpoint
from cloudkit_trio.demo._faults import Fault, FaultPlan, RunClock
from cloudkit_trio.demo._settings import Timing, Window
from cloudkit_trio.transport import error_from_response

TIMING = Timing.for_duration(20.0)
ENDPOINTS = ("alpha", "beta", "gamma")


def plan(seed: int = 1, fault_rate: float = 0.1) -> FaultPlan:
    return FaultPlan.build(
        seed=seed,
        fault_rate=fault_rate,
        timing=TIMING,
        endpoints=ENDPOINTS,
        outage_endpoint="gamma",
    )


def schedule(
    p: FaultPlan, endpoint: str = "alpha", elapsed: float | None = 1.0
) -> list[Fault | None]:
    return [
        p.decide(endpoint, f"/objects/{n}", attempt, elapsed)
        for n in range(500)
        for attempt in (1, 2)
    ]


class TestFaultPlan:
    def test_a_seed_replays_its_schedule(self) -> None:
        """The same seed decides every attempt the same way; another seed differs."""
        assert schedule(plan(seed=7)) == schedule(plan(seed=7))
        assert schedule(plan(seed=7)) != schedule(plan(seed=8))
        assert plan(seed=7).bursts == plan(seed=7).bursts

    def test_the_fault_rate_is_the_share_of_failed_attempts(self) -> None:
        """Outside bursts and the outage, about fault_rate of attempts get a fault."""
        p = plan(fault_rate=0.1)
        quiet = next(t for t in (0.5, 1.5, 2.5, 3.5) if all(t not in w for w in p.bursts.values()))
        faults = [f for f in schedule(p, elapsed=quiet) if f is not None]
        assert 0.07 <= len(faults) / 1000 <= 0.13
        assert set(faults) <= {Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.RATE_LIMITED,
                               Fault.RESET, Fault.SLOW, Fault.STALL}  # fmt: skip

    def test_rate_zero_and_one(self) -> None:
        """Rate 0: no random faults and no bursts; rate 1: every attempt gets a fault."""
        assert plan(fault_rate=0.0).bursts == {}
        assert set(schedule(plan(fault_rate=0.0))) == {None}
        assert None not in schedule(plan(fault_rate=1.0))

    def test_the_outage_is_one_endpoint_for_one_window(self) -> None:
        """The outage endpoint answers OUTAGE for every attempt inside the window only."""
        p = plan(fault_rate=0.0)
        assert p.outage == Window(6.0, 11.0)
        assert set(schedule(p, "gamma", elapsed=6.0)) == {Fault.OUTAGE}
        assert set(schedule(p, "gamma", elapsed=10.99)) == {Fault.OUTAGE}
        assert set(schedule(p, "gamma", elapsed=11.0)) == {None}
        assert set(schedule(p, "gamma", elapsed=None)) == {None}
        assert Fault.OUTAGE not in schedule(p, "alpha", elapsed=8.0)

    def test_bursts_fail_most_attempts_of_their_endpoint(self) -> None:
        """Inside its burst an endpoint fails most attempts with 500 or 503."""
        p = plan()
        assert set(p.bursts) == {"alpha", "beta"}
        window = p.bursts["alpha"]
        assert window.length == pytest.approx(TIMING.burst_length)
        faults = schedule(p, "alpha", elapsed=window.start)
        bursts = [f for f in faults if f in (Fault.BURST_500, Fault.BURST_503)]
        assert 0.5 <= len(bursts) / len(faults) <= 0.7

    def test_the_outage_endpoint_must_exist(self) -> None:
        """A plan naming an unknown outage endpoint is refused."""
        with pytest.raises(ValueError, match="'delta' is not among"):
            FaultPlan.build(seed=1, fault_rate=0.1, timing=TIMING, endpoints=ENDPOINTS,
                            outage_endpoint="delta")  # fmt: skip


class TestTiming:
    @pytest.mark.parametrize("duration", [0.5, 2.0, 20.0, 600.0])
    def test_scales_with_the_run(self, duration: float) -> None:
        """Windows and leases scale with the planned length and stay usable at both ends."""
        timing = Timing.for_duration(duration)
        assert timing.outage == Window(0.3 * duration, 0.55 * duration)
        assert timing.lease >= 1 and isinstance(timing.lease, int)
        assert 0 < timing.mandatory <= timing.advisory < timing.lease
        assert 0.1 <= timing.break_duration <= 2.0
        assert timing.stall > timing.attempt_timeout > timing.slow


class TestTokenLedger:
    def test_leases_and_early_revocation(self) -> None:
        """Tokens are honoured for their lease; every third one for 60 % of it only."""
        ledger = TokenLedger(lease=10)
        first, second, third = (ledger.issue(0.0) for _ in range(3))
        assert ledger.check(first.session_token, 9.9) is TokenState.VALID
        assert ledger.check(first.session_token, 10.0) is TokenState.EXPIRED
        assert ledger.check(second.session_token, 7.0) is TokenState.VALID
        assert ledger.check(third.session_token, 6.0) is TokenState.EXPIRED
        assert ledger.check("made-up", 1.0) is TokenState.UNKNOWN
        assert ledger.check(None, 1.0) is TokenState.UNKNOWN
        assert third.secret_key not in repr(third) and third.session_token not in repr(third)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alpha")


def endpoint(
    p: FaultPlan, ledger: TokenLedger, clock: RunClock, name: str = "alpha"
) -> FaultyEndpoint:
    return FaultyEndpoint(name, plan=p, ledger=ledger, clock=clock, timing=TIMING)


def path_with(p: FaultPlan, fault: Fault | None, elapsed: float) -> str:
    return next(
        f"/objects/{n}"
        for n in range(10_000)
        if p.decide("alpha", f"/objects/{n}", 1, elapsed) is fault
    )


class TestFaultyEndpoint:
    async def test_answers_as_aws_does(self, autojump_clock: Any) -> None:
        """200 for a good token; 429 with Retry-After; 503 and 500 in AWS's XML; each
        classified by the runtime's own mapping as the scenario intends."""
        p, ledger, clock = plan(), TokenLedger(lease=60), RunClock()
        app = endpoint(p, ledger, clock)
        clock.begin(trio.current_time() - 1.0)  # one second into the run, outside any burst
        token = ledger.issue(trio.current_time()).session_token
        auth = {"Authorization": f"Bearer {token}"}
        expected = {
            None: (200, None),
            Fault.RATE_LIMITED: (429, ck.RateLimited),
            Fault.UNAVAILABLE: (503, ck.ServiceUnavailable),
            Fault.SERVER_ERROR: (500, ck.ProviderError),
        }
        async with client_for(app) as client:
            for fault, (status, kind) in expected.items():
                response = await client.get(path_with(p, fault, 1.0), headers=auth)
                assert response.status_code == status
                error = error_from_response(
                    response.status_code, response.headers, response.content
                )
                assert (error is None) if kind is None else isinstance(error, kind)
                if fault is Fault.RATE_LIMITED:
                    assert isinstance(error, ck.RateLimited) and error.retry_after == 1.0
        assert app.injected == Counter({"rate_limited": 1, "unavailable": 1, "server_error": 1})

    async def test_expired_and_unknown_tokens(self, autojump_clock: Any) -> None:
        """A token past its lease gets 400 ExpiredToken (ExpiredCredentials to the runtime);
        a token never issued gets 403; an outage answers 503 before looking at tokens."""
        p, ledger, clock = plan(fault_rate=0.0), TokenLedger(lease=2), RunClock()
        app = endpoint(p, ledger, clock, name="gamma")
        clock.begin(trio.current_time())
        token = ledger.issue(trio.current_time()).session_token
        async with client_for(app) as client:
            await trio.sleep(3)
            expired = await client.get("/objects/1", headers={"Authorization": f"Bearer {token}"})
            unknown = await client.get("/objects/2", headers={"Authorization": "Bearer nope"})
            await trio.sleep(p.outage.start)
            outage = await client.get("/objects/3")
        assert expired.status_code == 400
        assert isinstance(
            error_from_response(400, expired.headers, expired.content), ck.ExpiredCredentials
        )
        assert unknown.status_code == 403
        assert outage.status_code == 503 and b"scheduled outage" in outage.content
        assert app.injected == Counter({"expired_token": 1, "outage": 1})
        assert app.requests == 3


class TestEmbeddedVault:
    async def test_the_real_vault_provider_reads_its_credentials(self) -> None:
        """VaultAuthProvider gets credentials from the embedded Vault, with the lease as
        their expiry; a wrong Vault token is refused as Vault refuses it."""
        ledger = TokenLedger(lease=5)
        app = VaultApp(ledger, vault_token="root-token")
        transport = httpx.ASGITransport(app=app)
        provider = VaultAuthProvider(
            "https://vault:8200", "demo", token="root-token", transport=transport
        )
        before = dt.datetime.now(dt.UTC)
        credentials = await provider.get_credentials()
        assert credentials.access_key.startswith("ASIADEMO")
        assert credentials.session_token is not None
        assert ledger.check(credentials.session_token, trio.current_time()) is TokenState.VALID
        assert credentials.expires_at is not None
        assert dt.timedelta(seconds=4) < credentials.expires_at - before < dt.timedelta(seconds=6)
        wrong = VaultAuthProvider("https://vault:8200", "demo", token="guess", transport=transport)
        with pytest.raises(ck.InsufficientPermissions):
            await wrong.get_credentials()
        elsewhere = VaultAuthProvider(
            "https://vault:8200", "other", token="root-token", transport=transport
        )
        with pytest.raises(ck.InvalidCredentials):
            await elsewhere.get_credentials()
        assert await provider.is_valid() and not await wrong.is_valid()
        assert ledger.issued == 1
