"""Fake endpoints, the fake Vault and the fake S3, over real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.aws import S3
from cloudkit_trio.testing import (
    CredentialState,
    EndpointFaults,
    FakeEndpoint,
    FakeRequest,
    FakeResponse,
    FakeS3,
    FakeVault,
    Fault,
    FaultPlan,
    FaultWindow,
    Phase,
)
from cloudkit_trio.transport import BearerTokenSigner


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


def only(fault: Fault, **options: object) -> FaultPlan:
    """Every request to ``e`` meets ``fault``."""
    return FaultPlan(endpoints={"e": EndpointFaults(rate=1.0, weights={fault: 1.0}, **options)})  # type: ignore[arg-type]


async def get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url, headers=headers)


class TestFakeEndpoint:
    async def test_serves_on_loopback(self, nursery: trio.Nursery) -> None:
        """A healthy endpoint answers 200 naming the path, and counts the request."""
        endpoint = FakeEndpoint("e")
        url = await nursery.start(endpoint.serve)
        assert url.startswith("http://127.0.0.1:")
        response = await get(f"{url}/objects/1")
        assert (response.status_code, response.text) == (200, "e: /objects/1\n")
        assert endpoint.requests == 1
        assert endpoint.phase() is Phase.HEALTHY

    @pytest.mark.parametrize(
        ("fault", "options", "status", "code"),
        [
            (Fault.UNAVAILABLE, {}, 503, "ServiceUnavailable"),
            (Fault.SERVER_ERROR, {}, 500, "InternalError"),
            (Fault.RATE_LIMITED, {}, 429, "Throttling"),
            (Fault.RATE_LIMITED, {"slow_down": True}, 503, "SlowDown"),
        ],
    )
    async def test_injects_errors_as_aws_shapes_them(
        self,
        nursery: trio.Nursery,
        fault: Fault,
        options: dict[str, object],
        status: int,
        code: str,
    ) -> None:
        """Injected errors carry AWS's XML error body; throttling asks for Retry-After."""
        endpoint = FakeEndpoint("e", plan=only(fault, **options))
        url = await nursery.start(endpoint.serve)
        response = await get(f"{url}/x")
        assert response.status_code == status
        assert f"<Code>{code}</Code>" in response.text
        if fault is Fault.RATE_LIMITED:
            assert response.headers["retry-after"] == "1"
        assert endpoint.injected == {fault.value: 1}

    async def test_a_reset_breaks_the_connection_mid_response(self, nursery: trio.Nursery) -> None:
        """The client sees the answer start, then the connection break."""
        url = await nursery.start(FakeEndpoint("e", plan=only(Fault.RESET)).serve)
        with pytest.raises(httpx.RemoteProtocolError):
            await get(f"{url}/x")

    async def test_an_outage_window_answers_503_to_everything(self, nursery: trio.Nursery) -> None:
        """Inside its outage the endpoint is down; the runtime maps that to ServiceUnavailable."""
        plan = FaultPlan(
            endpoints={"e": EndpointFaults(windows=[FaultWindow(start=5.0, end=10.0)])}
        )
        endpoint = FakeEndpoint("e", plan=plan)
        url = await nursery.start(endpoint.serve)
        endpoint.begin(trio.current_time() - 6.0)
        assert endpoint.phase() is Phase.DOWN
        async with (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .retry_policy(ck.NoRetry())
            .signer(ck.transport.NoAuthSigner())
            .build() as cloud
        ):
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(ck.Operation(service="s", name="get", url=f"{url}/x"))
        endpoint.begin(trio.current_time() - 11.0)
        assert endpoint.phase() is Phase.HEALTHY
        assert (await get(f"{url}/x")).status_code == 200

    async def test_a_custom_app_answers_what_meets_no_fault(self, nursery: trio.Nursery) -> None:
        """The app sees the request decoded; a failing app answers 500 and the server goes on."""
        seen: list[FakeRequest] = []

        async def app(request: FakeRequest) -> FakeResponse:
            await trio.lowlevel.checkpoint()
            seen.append(request)
            if request.path == "/boom":
                raise RuntimeError("boom")
            return FakeResponse(status=201, body=request.query["q"].encode())

        url = await nursery.start(FakeEndpoint("e", app=app).serve)
        assert (await get(f"{url}/a%20b?q=hi")).content == b"hi"
        assert seen[0].path == "/a b"
        assert (await get(f"{url}/boom")).status_code == 500
        assert (await get(f"{url}/c?q=again")).status_code == 201


class TestFakeVault:
    async def test_refuses_a_wrong_vault_token(self, nursery: trio.Nursery) -> None:
        """Vault's 403 for a bad token, 404 for another path."""
        vault = FakeVault()
        url = await nursery.start(vault.serve)
        assert (
            await get(f"{url}/v1/aws/creds/test", **{"X-Vault-Token": "nope"})
        ).status_code == 403
        assert (await get(f"{url}/v1/other", **{"X-Vault-Token": vault.token})).status_code == 404
        assert vault.issued == 0

    async def test_the_runtime_refreshes_from_it(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Credentials from the fake Vault expire on Trio's clock; the runtime refreshes them
        ahead of expiry, and the endpoint honours only what the Vault still honours."""
        vault = FakeVault(lease=10)
        await nursery.start(vault.serve)
        endpoint = FakeEndpoint("e", vault=vault)
        url = await nursery.start(endpoint.serve)
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .auth_provider(vault.auth_provider())
            .signer(BearerTokenSigner())
            .credential_refresh(advisory=3.0, mandatory=1.0)
            .build()
        )
        operation = ck.Operation(service="s", name="get", url=f"{url}/x")
        async with context as cloud:
            await cloud.execute(operation)
            first = cloud.snapshot().credentials.access_key_id
            await trio.sleep(8.0)
            await cloud.execute(operation)
            second = cloud.snapshot().credentials.access_key_id
        assert vault.issued >= 2
        assert first != second
        assert (await get(f"{url}/x", Authorization="Bearer forged")).status_code == 403

    async def test_early_revocation_and_expiry(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Every revoke_every-th lease stops being honoured at revoke_after of it."""
        vault = FakeVault(lease=10, revoke_every=2, revoke_after=0.5)
        await nursery.start(vault.serve)
        provider = vault.auth_provider()
        now = trio.current_time()
        tokens = [(await provider.get_credentials()).session_token for _ in range(2)]
        assert [vault.check(t, now + 6.0) for t in tokens] == [
            CredentialState.VALID,
            CredentialState.EXPIRED,
        ]
        assert vault.check(tokens[0], now + 10.5) is CredentialState.EXPIRED
        assert vault.check(None) is CredentialState.UNKNOWN
        assert vault.check("forged") is CredentialState.UNKNOWN

    def test_lease_must_be_whole_seconds(self) -> None:
        """Vault counts leases in seconds; anything else would make tokens expire early."""
        with pytest.raises(ValueError, match="whole number of seconds"):
            FakeVault(lease=1.5)  # type: ignore[arg-type]


class TestFakeS3:
    async def test_the_s3_client_round_trips(self, nursery: trio.Nursery) -> None:
        """Create, put, get, list in pages and delete, signed with the fake Vault's credentials."""
        vault = FakeVault()
        await nursery.start(vault.serve)
        s3 = FakeS3()
        url = await nursery.start(FakeEndpoint("s3", app=s3, vault=vault).serve)
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .auth_provider(vault.auth_provider())
            .build()
        )
        async with context as cloud:
            client = S3(cloud, region="us-east-1", endpoint=url)
            await client.create_bucket("bucket")
            for n in range(5):
                await client.put_object("bucket", f"k/{n} é", f"body {n}".encode())
            assert (await client.get_object("bucket", "k/3 é")).body == b"body 3"
            pages = [
                [o.key for o in page.objects]
                async for page in client.list_objects_v2("bucket", prefix="k/", page_size=2)
            ]
            assert pages == [["k/0 é", "k/1 é"], ["k/2 é", "k/3 é"], ["k/4 é"]]
            await client.delete_object("bucket", "k/0 é")
            with pytest.raises(ck.NotFound):
                await client.get_object("bucket", "k/0 é")
            with pytest.raises(ck.NotFound):
                await client.put_object("missing", "k", b"")
            with pytest.raises(ck.AlreadyExists):
                await client.create_bucket("bucket")
        assert sorted(s3.buckets["bucket"]) == ["k/1 é", "k/2 é", "k/3 é", "k/4 é"]
