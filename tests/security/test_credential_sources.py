"""Credential sources against hostile environments, servers and input (issue 13, items 1, 7,
8, 9 and 14): every endpoint is a raw socket on 127.0.0.1 started by the test."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import attrs
import httpx
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import (
    ContainerAuthProvider,
    ProfileAuthProvider,
    SigV4Signer,
    VaultAuthProvider,
)

from ._raw import read_head

VAULT_TOKEN = "hvs.CAESIVAULTTOKENsecret0123456789"
CONTAINER_TOKEN = "CONTAINER-AUTH-TOKEN-0123456789abcdef"
SECRET = "SECRET/KEY+never-shown"
SESSION = "SESSION-TOKEN-never-shown"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def vault_answer(*, access_key: str = "ASIAVAULTEXAMPLE", lease: int = 900) -> dict[str, object]:
    """A response shaped like Vault's GET /v1/aws/creds/:name."""
    return {
        "lease_id": "aws/creds/app/Yx1n3Y6VY9RdQaJ4gX5p",
        "lease_duration": lease,
        "data": {"access_key": access_key, "secret_key": SECRET, "security_token": SESSION},
    }


def container_answer() -> dict[str, object]:
    """A response shaped like the ECS/EKS container credentials endpoint's."""
    return {
        "AccessKeyId": "ASIACONTAINER",
        "SecretAccessKey": SECRET,
        "Token": SESSION,
        "Expiration": "2030-04-30T19:39:58Z",
    }


def texts(error: BaseException) -> str:
    """Everything an error and its chain show: str, repr and args of each link."""
    shown: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        shown += [str(seen), repr(seen), *map(str, seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(shown)


@attrs.define(eq=False)
class RawEndpoint:
    """A one-line HTTP/1.1 server on a raw socket: records each request's head, answers
    every one with the scripted status and JSON body, and counts connections."""

    status: int = 200
    body: bytes = b"{}"
    heads: list[bytes] = attrs.Factory(list)
    connections: int = 0
    url: str = ""

    def answer(self, status: int, document: object) -> None:
        self.status = status
        self.body = json.dumps(document).encode()

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        head = await read_head(stream)
        if head is None:
            return
        self.heads.append(head)
        await stream.send_all(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (self.status, len(self.body), self.body)
        )
        await stream.aclose()


Start = Callable[[], Awaitable[RawEndpoint]]


@pytest.fixture
async def start(nursery: trio.Nursery) -> Start:
    """Starts RawEndpoints on free 127.0.0.1 ports, stopped with the test."""

    async def start_one() -> RawEndpoint:
        endpoint = RawEndpoint()
        listeners = await nursery.start(
            partial(trio.serve_tcp, endpoint.handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        endpoint.url = f"http://127.0.0.1:{port}"
        return endpoint

    return start_one


@pytest.fixture
async def proxy(start: Start, monkeypatch: pytest.MonkeyPatch) -> RawEndpoint:
    """A loopback "proxy" that every proxy variable of the environment names."""
    endpoint = await start()
    endpoint.answer(200, vault_answer(access_key="ASIAFROMTHEPROXY"))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, endpoint.url)
    return endpoint


class TestNoEnvironmentProxy:
    async def test_vault_goes_direct(self, start: Start, proxy: RawEndpoint) -> None:
        """With HTTP_PROXY/HTTPS_PROXY/ALL_PROXY set, Vault is asked directly: the proxy
        gets no connection, so it never sees the token."""
        vault = await start()
        vault.answer(200, vault_answer())
        provider = VaultAuthProvider(vault.url, "app", token=VAULT_TOKEN)
        credentials = await provider.get_credentials()
        assert credentials.access_key == "ASIAVAULTEXAMPLE"
        assert proxy.connections == 0
        [head] = vault.heads
        assert head.startswith(b"GET /v1/aws/creds/app HTTP/1.1")
        assert VAULT_TOKEN.encode() in head

    async def test_container_endpoint_goes_direct(self, start: Start, proxy: RawEndpoint) -> None:
        """The container endpoint is asked directly too, authorization token and all."""
        endpoint = await start()
        endpoint.answer(200, container_answer())
        environ = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url + "/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
        }
        credentials = await ContainerAuthProvider(environ=environ).get_credentials()
        assert credentials.access_key == "ASIACONTAINER"
        assert proxy.connections == 0
        [head] = endpoint.heads
        assert CONTAINER_TOKEN.encode() in head


class TestVaultTransport:
    def test_plain_http_only_to_this_machine(self) -> None:
        """Plain http to any host but a loopback address or localhost is a ConfigError
        naming vault_url, without the token; https to any host is accepted."""
        refused = [
            "http://vault.example.com:8200",
            "http://10.0.0.5:8200",
            "http://127.0.0.1.example.com",
            "http://[fd00::1]:8200",
            "http://169.254.170.2",
        ]
        for url in refused:
            with pytest.raises(ck.ConfigError, match="vault_url") as info:
                VaultAuthProvider(url, "app", token=VAULT_TOKEN)
            assert info.value.field == "vault_url"
            assert VAULT_TOKEN not in texts(info.value)
        accepted = [
            "https://vault.example.com:8200",
            "http://127.0.0.1:8200",
            "http://127.10.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
        ]
        for url in accepted:
            assert VaultAuthProvider(url, "app", token=VAULT_TOKEN).vault_url == url


class TestVaultPathSegments:
    @pytest.mark.parametrize(
        "role", ["..", ".", "%2e%2e", "..%2f..%2fsys", "app role", "a\\b", "a?b", "a#b", "a\nb"]
    )
    def test_roles_that_could_leave_the_creds_path_are_refused(self, role: str) -> None:
        """A role that is a dot segment, percent-encoded or outside the role charset is a
        ConfigError naming the role field."""
        with pytest.raises(ck.ConfigError) as info:
            VaultAuthProvider("https://vault", role, token=VAULT_TOKEN)
        assert info.value.field == "role"
        assert VAULT_TOKEN not in texts(info.value)

    @pytest.mark.parametrize(
        "mount",
        [
            "../../sys/raw",
            "aws/../sys",
            "aws/.",
            "aws//x",
            "%2e%2e/sys",
            "aws%2f..",
            "aws?x",
            "a b",
        ],
    )
    def test_mounts_that_could_leave_the_creds_path_are_refused(self, mount: str) -> None:
        """A mount with a dot or empty segment, percent-encoding or other characters is a
        ConfigError naming the mount field."""
        with pytest.raises(ck.ConfigError) as info:
            VaultAuthProvider("https://vault", "app", token=VAULT_TOKEN, mount=mount)
        assert info.value.field == "mount"

    async def test_a_refused_role_sends_nothing(self, start: Start) -> None:
        """The token never reaches the server for role '..' (today: GET /v1/aws/creds/..)."""
        vault = await start()
        with pytest.raises(ck.ConfigError):
            await VaultAuthProvider(vault.url, "..", token=VAULT_TOKEN).get_credentials()
        assert vault.connections == 0


class TestVaultLease:
    @pytest.mark.parametrize("lease", [10**12, 10**15, 10**30])
    async def test_a_lease_past_the_year_9999_is_a_serialization_error(
        self, start: Start, lease: int
    ) -> None:
        """A lease too long for a datetime is a SerializationError, not an OverflowError."""
        vault = await start()
        vault.answer(200, vault_answer(lease=lease))
        provider = VaultAuthProvider(vault.url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.SerializationError, match="lease_duration"):
            await provider.get_credentials()


class TestControlCharacters:
    @pytest.mark.parametrize("field", ["access_key", "secret_key", "session_token"])
    @pytest.mark.parametrize("bad", ["\n", "\r\n", "\t", "\x00", "\x7f", "\x85", "\u2028"])
    def test_credentials_refuse_control_characters(self, field: str, bad: str) -> None:
        """A control character in any of the three strings is a ConfigError naming the
        field, without the value."""
        values = {"access_key": "AKIDEXAMPLE", "secret_key": SECRET, "session_token": SESSION}
        values[field] = values[field] + bad + "X-Injected: yes"
        with pytest.raises(ck.ConfigError) as info:
            ck.Credentials(**values)
        assert info.value.field == f"Credentials.{field}"
        assert "X-Injected" not in texts(info.value) and SECRET not in texts(info.value)

    async def test_a_vault_answer_with_a_newline_is_refused(self, start: Start) -> None:
        """Vault answering an access key with a newline fails the fetch with a typed error."""
        vault = await start()
        vault.answer(200, vault_answer(access_key="ASIA\r\nX-Injected: yes"))
        provider = VaultAuthProvider(vault.url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.ConfigError, match="access_key") as info:
            await provider.get_credentials()
        assert "X-Injected" not in texts(info.value)

    async def test_execute_reports_a_failed_refresh(self, tmp_path: Path) -> None:
        """A continuation line in ~/.aws/credentials puts a newline in the key: execute
        raises TokenRefreshFailed (today: a ValueError from deep in the request)."""
        credentials = tmp_path / "credentials"
        credentials.write_text(
            f"[default]\naws_access_key_id = AKIDEXAMPLE\n  X-Injected: yes\n"
            f"aws_secret_access_key = {SECRET}\n",
            encoding="utf-8",
        )
        provider = ProfileAuthProvider(
            credentials_file=credentials, config_file=tmp_path / "config", environ={}
        )
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200)

        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000", region="us-east-1"))
            .transport(httpx.MockTransport(handler))
            .auth_provider(provider)
            .signer(SigV4Signer(service="s3", region="us-east-1"))
            .build()
        )
        operation = ck.Operation(service="s3", name="get_object", method="GET", path="/b/k")
        async with context as cloud:
            with pytest.raises(ck.TokenRefreshFailed, match="access_key") as info:
                await cloud.execute(operation)
        assert sent == []
        assert "X-Injected" not in texts(info.value) and SECRET not in texts(info.value)


class TestEchoedSecretsAreMasked:
    async def test_vault_quoting_its_token(self, start: Start) -> None:
        """A Vault error that quotes the token it was sent is shown with the token masked,
        even when the quote straddles the point where the reason is cut short."""
        vault = await start()
        provider = VaultAuthProvider(vault.url, "app", token=VAULT_TOKEN)
        for padding in (0, 180):
            reason = "x" * padding + f"permission denied for {VAULT_TOKEN} on aws/creds/app"
            vault.answer(403, {"errors": [reason]})
            with pytest.raises(ck.InsufficientPermissions, match="permission denied") as info:
                await provider.get_credentials()
            assert VAULT_TOKEN[:12] not in texts(info.value)

    async def test_container_endpoint_quoting_its_token(self, start: Start) -> None:
        """A container endpoint error quoting the Authorization token is masked."""
        endpoint = await start()
        endpoint.answer(401, {"message": f"unknown token {CONTAINER_TOKEN}"})
        environ = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url + "/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
        }
        with pytest.raises(ck.InvalidCredentials, match="unknown token") as info:
            await ContainerAuthProvider(environ=environ).get_credentials()
        assert CONTAINER_TOKEN not in texts(info.value)
