"""The AWS credential providers, against endpoints started by the tests on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio import aws
from cloudkit_trio.aws import (
    ContainerAuthProvider,
    ProfileAuthProvider,
    VaultAuthProvider,
    default_aws_chain,
)

if TYPE_CHECKING:
    from .conftest import ScriptedEndpoint

    Serve = Callable[[Callable[[trio.SocketStream], Awaitable[None]]], Awaitable[str]]

VAULT_TOKEN = "hvs.VAULT-TOKEN-SECRET"
SECRET = "SECRET/KEY+never-shown"
SESSION = "SESSION-TOKEN-never-shown"
CONTAINER_TOKEN = "CONTAINER-AUTH-TOKEN-secret"
ALL_SECRETS = (VAULT_TOKEN, SECRET, SESSION, CONTAINER_TOKEN)


def assert_no_secret(error: BaseException) -> None:
    """Neither the error nor anything chained to it shows a secret."""
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen), *map(str, seen.args)):
            for secret in ALL_SECRETS:
                assert secret not in text, (secret, text)
        seen = seen.__cause__ or seen.__context__


def vault_answer(*, token: str | None = SESSION, lease: object = 900) -> dict[str, object]:
    """A response shaped like Vault's GET /v1/aws/creds/:name."""
    return {
        "request_id": "7a3c1f0e-0000-4000-8000-000000000000",
        "lease_id": "aws/creds/app/Yx1n3Y6VY9RdQaJ4gX5p",
        "renewable": True,
        "lease_duration": lease,
        "data": {"access_key": "ASIAVAULTEXAMPLE", "secret_key": SECRET, "security_token": token},
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }


def container_answer(expiration: str = "2030-04-30T19:39:58Z") -> dict[str, object]:
    """A response shaped like the ECS/EKS container credentials endpoint's."""
    return {
        "AccessKeyId": "ASIACONTAINER",
        "SecretAccessKey": SECRET,
        "Token": SESSION,
        "Expiration": expiration,
        "RoleArn": "arn:aws:iam::123456789012:role/task",
    }


async def hang(stream: trio.SocketStream) -> None:
    """Accept, read the request, never answer."""
    await stream.receive_some()
    await trio.sleep_forever()


async def garbage(stream: trio.SocketStream) -> None:
    """Answer with bytes that are not HTTP."""
    await stream.receive_some()
    await stream.send_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await stream.aclose()


class TrackingTransport(httpx.AsyncBaseTransport):
    """A caller-owned transport that records whether anyone closed it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


def recording_transport(document: object, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=document)

    return httpx.MockTransport(handler)


# -- Vault ------------------------------------------------------------------------------------


class TestVault:
    async def test_reads_the_documented_response(self, endpoint: ScriptedEndpoint) -> None:
        """data.access_key/secret_key/security_token and lease_duration become Credentials."""
        endpoint.answer(200, vault_answer())
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN)
        before = dt.datetime.now(dt.UTC)
        creds = await provider.get_credentials()
        after = dt.datetime.now(dt.UTC)
        assert (creds.access_key, creds.secret_key, creds.session_token) == (
            "ASIAVAULTEXAMPLE",
            SECRET,
            SESSION,
        )
        assert creds.expires_at is not None
        lease = dt.timedelta(seconds=900)
        assert before + lease <= creds.expires_at <= after + lease
        [request] = endpoint.seen
        assert (request.method, request.path) == ("GET", "/v1/aws/creds/app")
        assert request.headers["x-vault-token"] == VAULT_TOKEN
        assert isinstance(provider, ck.AuthProvider)

    async def test_is_valid_asks_about_the_token_without_minting_a_lease(
        self, endpoint: ScriptedEndpoint
    ) -> None:
        """is_valid() reads lookup-self, never creds/<role>; a rejected token is False."""
        endpoint.answer(200, {"data": {"ttl": 3600}})
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN)
        assert await provider.is_valid()
        endpoint.answer(403, {"errors": ["permission denied"]})
        assert not await provider.is_valid()
        assert [r.path for r in endpoint.seen] == ["/v1/auth/token/lookup-self"] * 2
        assert all(r.headers["x-vault-token"] == VAULT_TOKEN for r in endpoint.seen)

    async def test_iam_user_roles_have_no_session_token(self, endpoint: ScriptedEndpoint) -> None:
        """A null security_token gives credentials without a session token; lease 0, no expiry."""
        endpoint.answer(200, vault_answer(token=None, lease=0))
        creds = await VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN).get_credentials()
        assert creds.session_token is None
        assert creds.expires_at is None

    async def test_token_comes_from_the_environment_at_each_call(
        self, endpoint: ScriptedEndpoint
    ) -> None:
        """Without token=, VAULT_TOKEN is read per call, so a rotated token is used."""
        endpoint.answer(200, vault_answer())
        env = {"VAULT_TOKEN": "hvs.first"}
        provider = VaultAuthProvider(endpoint.url, "app", environ=env)
        await provider.get_credentials()
        env["VAULT_TOKEN"] = "hvs.second"
        await provider.refresh_credentials()
        assert [r.headers["x-vault-token"] for r in endpoint.seen] == ["hvs.first", "hvs.second"]

    async def test_mount_namespace_and_path_prefix(self, endpoint: ScriptedEndpoint) -> None:
        """A nested mount, a namespace header and a proxy path prefix shape the request."""
        endpoint.answer(200, vault_answer())
        provider = VaultAuthProvider(
            endpoint.url + "/vault/", "app-role.v2", token=VAULT_TOKEN, mount="/team/aws-prod/",
            namespace="ns1/",
        )  # fmt: skip
        await provider.get_credentials()
        [request] = endpoint.seen
        assert request.path == "/vault/v1/team/aws-prod/creds/app-role.v2"
        assert request.headers["x-vault-namespace"] == "ns1/"

    async def test_missing_token(self, endpoint: ScriptedEndpoint) -> None:
        """No token anywhere: MissingCredentials naming VAULT_TOKEN, and no request is made."""
        provider = VaultAuthProvider(endpoint.url, "app", environ={})
        with pytest.raises(ck.MissingCredentials, match="VAULT_TOKEN") as info:
            await provider.get_credentials()
        assert endpoint.url in str(info.value)
        assert endpoint.seen == []

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (400, ck.InvalidCredentials),
            (401, ck.InvalidCredentials),
            (403, ck.InsufficientPermissions),
            (404, ck.InvalidCredentials),
            (302, ck.InvalidCredentials),
            (429, ck.TokenRefreshFailed),
            (500, ck.TokenRefreshFailed),
            (503, ck.TokenRefreshFailed),
        ],
    )
    async def test_error_statuses(
        self, endpoint: ScriptedEndpoint, status: int, kind: type[ck.AuthError]
    ) -> None:
        """Non-2xx answers map to typed errors naming Vault, the role and Vault's reason."""
        endpoint.answer(status, {"errors": ["permission denied"]})
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.AuthError) as info:
            await provider.get_credentials()
        assert type(info.value) is kind
        assert info.value.status_code == status
        text = str(info.value)
        assert f"Vault at {endpoint.url} (role 'app')" in text
        assert f"HTTP {status}" in text
        assert "permission denied" in text
        assert_no_secret(info.value)

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            (b"<html>proxy error</html>", "JSON object"),
            (b"[1, 2]", "JSON object"),
            (b'{"lease_duration": 60}', "'data' object"),
            (b'{"lease_duration": 60, "data": null}', "'data' object"),
            (b'{"lease_duration": 60, "data": {"secret_key": "%s"}}' % SECRET.encode(), "access_key"),
            (b'{"lease_duration": 60, "data": {"access_key": 7, "secret_key": "x"}}', "access_key"),
            (b'{"lease_duration": 60, "data": {"access_key": "AK", "secret_key": ""}}', "secret_key"),
            (b'{"lease_duration": 60, "data": {"access_key": "AK", "secret_key": "%s", "security_token": 5}}' % SECRET.encode(), "security_token"),
            (b'{"data": {"access_key": "AK", "secret_key": "%s"}}' % SECRET.encode(), "lease_duration"),
            (b'{"lease_duration": -1, "data": {"access_key": "AK", "secret_key": "x"}}', "lease_duration"),
            (b'{"lease_duration": "60", "data": {"access_key": "AK", "secret_key": "x"}}', "lease_duration"),
            (b'{"lease_duration": true, "data": {"access_key": "AK", "secret_key": "x"}}', "lease_duration"),
        ],
    )  # fmt: skip
    async def test_malformed_answers(
        self, endpoint: ScriptedEndpoint, body: bytes, named: str
    ) -> None:
        """A body that is not Vault's shape is a SerializationError naming the field only."""
        endpoint.answer(200, body=body)
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.SerializationError, match=named) as info:
            await provider.get_credentials()
        assert "Vault at" in str(info.value)
        assert_no_secret(info.value)

    @pytest.mark.parametrize("pieces", [1, 20], ids=["content-length", "chunked"])
    async def test_oversized_answer(self, endpoint: ScriptedEndpoint, pieces: int) -> None:
        """An answer far bigger than a credentials document is refused, not buffered."""
        endpoint.answer(200, body=b"{" + b" " * 200_000 + b"}")
        endpoint.pieces = pieces
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.SerializationError, match="more than 65536 bytes"):
            await provider.get_credentials()

    async def test_oversized_error_page(self, endpoint: ScriptedEndpoint) -> None:
        """A huge error page is still judged by its status."""
        endpoint.answer(503, body=b"<html>" + b"busy " * 50_000 + b"</html>")
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.TokenRefreshFailed, match="HTTP 503"):
            await provider.get_credentials()

    async def test_chunked_answer(self, endpoint: ScriptedEndpoint) -> None:
        """An answer sent in pieces without a Content-Length is read whole."""
        endpoint.answer(200, vault_answer())
        endpoint.pieces = 7
        creds = await VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN).get_credentials()
        assert creds.secret_key == SECRET

    async def test_trickling_answer_times_out(
        self, tcp_server: Serve, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A peer that trickles bytes forever is cut off at `timeout` for the whole exchange."""

        async def trickle(stream: trio.SocketStream) -> None:
            await stream.receive_some()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                await stream.send_all(b"1\r\n \r\n")
                await trio.sleep(1)

        url = await tcp_server(trickle)
        start = trio.current_time()
        with pytest.raises(ck.TokenRefreshFailed, match="timed out"):
            await VaultAuthProvider(url, "app", token=VAULT_TOKEN, timeout=5).get_credentials()
        assert trio.current_time() - start == pytest.approx(5)

    async def test_unreachable(self, refused_url: str) -> None:
        """A refused connection is TokenRefreshFailed, caused by a ConnectError."""
        provider = VaultAuthProvider(refused_url, "app", token=VAULT_TOKEN)
        with pytest.raises(ck.TokenRefreshFailed, match="could not be reached") as info:
            await provider.get_credentials()
        assert isinstance(info.value.__cause__, ck.ConnectError)
        assert refused_url in str(info.value)
        assert_no_secret(info.value)

    async def test_broken_http(self, tcp_server: Serve) -> None:
        """A peer that does not speak HTTP is TokenRefreshFailed, caused by a ProtocolError."""
        url = await tcp_server(garbage)
        with pytest.raises(ck.TokenRefreshFailed) as info:
            await VaultAuthProvider(url, "app", token=VAULT_TOKEN).get_credentials()
        assert isinstance(info.value.__cause__, ck.NetworkError)
        assert_no_secret(info.value)

    async def test_timeout(self, tcp_server: Serve, autojump_clock: trio.testing.MockClock) -> None:
        """A Vault that never answers fails after `timeout` seconds of Trio time."""
        url = await tcp_server(hang)
        start = trio.current_time()
        with pytest.raises(ck.TokenRefreshFailed, match="timed out") as info:
            await VaultAuthProvider(url, "app", token=VAULT_TOKEN, timeout=3).get_credentials()
        assert trio.current_time() - start == pytest.approx(3)
        assert_no_secret(info.value)

    async def test_cancellation_is_not_translated(
        self, tcp_server: Serve, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A caller's cancellation passes through untouched, never as an AuthError."""
        url = await tcp_server(hang)
        with trio.move_on_after(1) as scope:
            await VaultAuthProvider(url, "app", token=VAULT_TOKEN, timeout=30).get_credentials()
        assert scope.cancelled_caught

    async def test_injected_transport_stays_open(self, endpoint: ScriptedEndpoint) -> None:
        """A caller's transport is used for every call and never closed by the provider."""
        endpoint.answer(200, vault_answer())
        transport = TrackingTransport()
        provider = VaultAuthProvider(endpoint.url, "app", token=VAULT_TOKEN, transport=transport)
        await provider.get_credentials()
        await provider.get_credentials()
        assert len(endpoint.seen) == 2
        assert not transport.closed
        await transport.aclose()

    @pytest.mark.parametrize(
        ("args", "kwargs", "error"),
        [
            (("vault:8200", "app"), {}, ValueError),
            (("ftp://vault", "app"), {}, ValueError),
            (("https://user:pw@vault", "app"), {}, ValueError),
            (("https://vault?x=1", "app"), {}, ValueError),
            ((8200, "app"), {}, TypeError),
            (("https://vault", "a/b"), {}, ValueError),
            (("https://vault", ""), {}, ValueError),
            (("https://vault", "app"), {"mount": "/"}, ValueError),
            (("https://vault", "app"), {"timeout": 0}, ValueError),
            (("https://vault", "app"), {"token": ""}, ValueError),
            (("https://vault", "app"), {"token": VAULT_TOKEN + "\n"}, ValueError),
            (("https://vault", "app"), {"transport": object()}, TypeError),
        ],
    )
    def test_rejects_bad_arguments(
        self, args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
    ) -> None:
        """Unusable arguments fail at construction, without echoing a token."""
        with pytest.raises(error) as info:
            VaultAuthProvider(*args, **kwargs)  # type: ignore[arg-type]
        assert_no_secret(info.value)

    def test_repr_hides_the_token(self) -> None:
        """The repr names Vault and the role, never the token."""
        provider = VaultAuthProvider("https://vault.example.com:8200/", "app", token=VAULT_TOKEN)
        assert repr(provider) == "VaultAuthProvider('https://vault.example.com:8200', role='app')"


# -- container endpoint -----------------------------------------------------------------------


class TestContainer:
    async def test_full_uri_with_token(self, endpoint: ScriptedEndpoint) -> None:
        """FULL_URI is fetched with AWS_CONTAINER_AUTHORIZATION_TOKEN as Authorization."""
        endpoint.answer(200, container_answer())
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url + "/v1/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
        }
        creds = await ContainerAuthProvider(environ=env).get_credentials()
        assert (creds.access_key, creds.secret_key, creds.session_token) == (
            "ASIACONTAINER",
            SECRET,
            SESSION,
        )
        assert creds.expires_at == dt.datetime(2030, 4, 30, 19, 39, 58, tzinfo=dt.UTC)
        [request] = endpoint.seen
        assert (request.method, request.path) == ("GET", "/v1/credentials")
        assert request.headers["authorization"] == CONTAINER_TOKEN

    async def test_token_file_wins_and_is_reread(
        self, endpoint: ScriptedEndpoint, tmp_path: Path
    ) -> None:
        """The token file beats the token variable and is read at every call, stripped."""
        endpoint.answer(200, container_answer())
        token_file = tmp_path / "eks-pod-identity-token"
        token_file.write_text("first-token\n")
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "from-the-variable",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
        }
        provider = ContainerAuthProvider(environ=env)
        await provider.get_credentials()
        token_file.write_text("second-token")
        await provider.get_credentials()
        assert [r.headers["authorization"] for r in endpoint.seen] == [
            "first-token",
            "second-token",
        ]

    async def test_no_token_sends_no_authorization(self, endpoint: ScriptedEndpoint) -> None:
        """Without a token the request carries no Authorization header (plain ECS)."""
        endpoint.answer(200, container_answer())
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url}
        await ContainerAuthProvider(environ=env).get_credentials()
        assert "authorization" not in endpoint.seen[0].headers

    async def test_relative_uri_goes_to_the_ecs_agent(self) -> None:
        """RELATIVE_URI resolves against http://169.254.170.2 and wins over FULL_URI."""
        seen: list[httpx.Request] = []
        env = {
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/1f2e3d?x=1",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/ignored",
        }
        transport = recording_transport(container_answer(), seen)
        await ContainerAuthProvider(environ=env, transport=transport).get_credentials()
        assert str(seen[0].url) == "http://169.254.170.2/v2/credentials/1f2e3d?x=1"

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:9/creds",
            "http://127.200.0.7/creds",
            "http://localhost/creds",
            "http://[::1]:8080/creds",
            "http://169.254.170.2/creds",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "https://credentials.example.com/creds",
        ],
    )
    async def test_allowed_full_uri_hosts(self, url: str) -> None:
        """https anywhere, or http to loopback and the ECS/EKS link-local endpoints."""
        seen: list[httpx.Request] = []
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
        transport = recording_transport(container_answer(), seen)
        await ContainerAuthProvider(environ=env, transport=transport).get_credentials()
        assert str(seen[0].url) == url

    @pytest.mark.parametrize(
        "url",
        [
            "http://example.com/creds",
            "http://10.0.0.1/creds",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1.example.com/creds",
            "ftp://127.0.0.1/creds",
            "not a url",
        ],
    )
    async def test_refused_full_uri_hosts(self, url: str) -> None:
        """Other plain-http hosts are a ConfigError, and the token is never sent."""
        seen: list[httpx.Request] = []
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
        }
        transport = recording_transport(container_answer(), seen)
        provider = ContainerAuthProvider(environ=env, transport=transport)
        with pytest.raises(ck.ConfigError, match="AWS_CONTAINER_CREDENTIALS_FULL_URI") as info:
            await provider.get_credentials()
        assert seen == []
        assert_no_secret(info.value)

    async def test_relative_uri_must_be_a_path(self) -> None:
        """A RELATIVE_URI that is not a path is a ConfigError naming the variable."""
        env = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "v2/credentials"}
        with pytest.raises(ck.ConfigError, match="AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
            await ContainerAuthProvider(environ=env).get_credentials()

    async def test_not_in_a_container(self) -> None:
        """Neither variable set: MissingCredentials naming both."""
        with pytest.raises(ck.MissingCredentials) as info:
            await ContainerAuthProvider(environ={}).get_credentials()
        assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" in str(info.value)
        assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in str(info.value)

    @pytest.mark.parametrize("token", [CONTAINER_TOKEN + "\r\nX-Evil: 1", "tök" + CONTAINER_TOKEN])
    async def test_token_that_cannot_be_a_header(
        self, endpoint: ScriptedEndpoint, token: str
    ) -> None:
        """A token with line breaks or non-ASCII is refused before any request."""
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
        }
        with pytest.raises(ck.ConfigError, match="AWS_CONTAINER_AUTHORIZATION_TOKEN") as info:
            await ContainerAuthProvider(environ=env).get_credentials()
        assert endpoint.seen == []
        assert_no_secret(info.value)

    @pytest.mark.parametrize("content", [None, b"\xff\xfe" + CONTAINER_TOKEN.encode()])
    async def test_unreadable_token_file(
        self, endpoint: ScriptedEndpoint, tmp_path: Path, content: bytes | None
    ) -> None:
        """A missing or undecodable token file is MissingCredentials naming variable and path."""
        path = tmp_path / "token"
        if content is not None:
            path.write_bytes(content)
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(path),
        }
        with pytest.raises(ck.MissingCredentials) as info:
            await ContainerAuthProvider(environ=env).get_credentials()
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in str(info.value)
        assert str(path) in str(info.value)
        assert info.value.__context__ is None
        assert_no_secret(info.value)

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (400, ck.InvalidCredentials),
            (401, ck.InvalidCredentials),
            (403, ck.InsufficientPermissions),
            (429, ck.TokenRefreshFailed),
            (500, ck.TokenRefreshFailed),
        ],
    )
    async def test_error_statuses(
        self, endpoint: ScriptedEndpoint, status: int, kind: type[ck.AuthError]
    ) -> None:
        """Non-2xx answers map to typed errors naming the endpoint but not its path."""
        endpoint.answer(status, {"code": "Denied", "message": "bad token"})
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url + "/v2/credentials/secret-guid",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
        }
        with pytest.raises(ck.AuthError) as info:
            await ContainerAuthProvider(environ=env).get_credentials()
        assert type(info.value) is kind
        assert f"container credentials endpoint {endpoint.url}" in str(info.value)
        assert "secret-guid" not in str(info.value)
        assert_no_secret(info.value)

    @pytest.mark.parametrize(
        ("document", "named"),
        [
            ({"SecretAccessKey": SECRET, "Expiration": "2030-01-01T00:00:00Z"}, "AccessKeyId"),
            ({"AccessKeyId": "AK", "Expiration": "2030-01-01T00:00:00Z"}, "SecretAccessKey"),
            ({"AccessKeyId": "AK", "SecretAccessKey": SECRET}, "Expiration"),
            ({"AccessKeyId": "AK", "SecretAccessKey": SECRET, "Expiration": "tomorrow"}, "Expiration"),
            ({"AccessKeyId": "AK", "SecretAccessKey": SECRET, "Expiration": "2030-01-01", "Token": 3}, "Token"),
        ],
    )  # fmt: skip
    async def test_malformed_answers(
        self, endpoint: ScriptedEndpoint, document: dict[str, object], named: str
    ) -> None:
        """An answer missing a field is a SerializationError naming the field only."""
        endpoint.answer(200, document)
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url}
        with pytest.raises(ck.SerializationError, match=named) as info:
            await ContainerAuthProvider(environ=env).get_credentials()
        assert_no_secret(info.value)

    async def test_expiration_without_offset_is_utc(self, endpoint: ScriptedEndpoint) -> None:
        """An Expiration without a UTC offset is read as UTC; a missing Token is None."""
        answer = container_answer("2030-04-30T19:39:58")
        del answer["Token"]
        endpoint.answer(200, answer)
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url}
        creds = await ContainerAuthProvider(environ=env).get_credentials()
        assert creds.expires_at == dt.datetime(2030, 4, 30, 19, 39, 58, tzinfo=dt.UTC)
        assert creds.session_token is None

    async def test_unreachable_and_broken(self, refused_url: str, tcp_server: Serve) -> None:
        """Refused connections and non-HTTP peers are TokenRefreshFailed naming the endpoint."""
        for url in (refused_url, await tcp_server(garbage)):
            env = {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": url + "/creds",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
            }
            with pytest.raises(ck.TokenRefreshFailed) as info:
                await ContainerAuthProvider(environ=env).get_credentials()
            assert url in str(info.value)
            assert isinstance(info.value.__cause__, ck.NetworkError)
            assert_no_secret(info.value)

    async def test_timeout(self, tcp_server: Serve, autojump_clock: trio.testing.MockClock) -> None:
        """An endpoint that never answers fails after the 2 s default of Trio time."""
        url = await tcp_server(hang)
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
        start = trio.current_time()
        with pytest.raises(ck.TokenRefreshFailed, match="timed out"):
            await ContainerAuthProvider(environ=env).get_credentials()
        assert trio.current_time() - start == pytest.approx(2)

    def test_rejects_bad_arguments(self) -> None:
        """A non-transport or a non-positive timeout fails at construction."""
        with pytest.raises(TypeError):
            ContainerAuthProvider(transport=object())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout"):
            ContainerAuthProvider(timeout=-1)


# -- shared files -----------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def aws_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "home" / ".aws"
    folder.mkdir(parents=True)
    return folder


class TestProfile:
    async def test_default_profile_from_the_credentials_file(self, aws_dir: Path) -> None:
        """With no profile named, [default] of ~/.aws/credentials is used (HOME from environ)."""
        write(aws_dir / "credentials", f"[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = {SECRET}\n")  # fmt: skip
        provider = ProfileAuthProvider(environ={"HOME": str(aws_dir.parent)})
        creds = await provider.get_credentials()
        assert (creds.access_key, creds.secret_key, creds.session_token) == (
            "AKDEFAULT",
            SECRET,
            None,
        )
        assert creds.expires_at is None
        assert isinstance(provider, ck.AuthProvider)

    async def test_profile_argument_then_aws_profile(self, aws_dir: Path) -> None:
        """The profile argument wins over AWS_PROFILE, which wins over default."""
        write(aws_dir / "credentials", "".join(
            f"[{name}]\naws_access_key_id = AK{name.upper()}\naws_secret_access_key = s\n"
            for name in ("default", "dev", "prod")
        ))  # fmt: skip
        env = {"HOME": str(aws_dir.parent), "AWS_PROFILE": "dev"}
        assert (await ProfileAuthProvider(environ=env).get_credentials()).access_key == "AKDEV"
        named = ProfileAuthProvider("prod", environ=env)
        assert (await named.get_credentials()).access_key == "AKPROD"

    async def test_config_file_sections(self, aws_dir: Path) -> None:
        """In the config file profiles are [profile NAME], and the default is [default]."""
        write(aws_dir / "config", (
            "[default]\naws_access_key_id = AKCFGDEFAULT\naws_secret_access_key = s\n"
            "[profile   dev]\nregion = eu-west-1\naws_access_key_id = AKCFGDEV\n"
            "aws_secret_access_key = s\naws_session_token = tok\n"
            "[dev]\naws_access_key_id = AKWRONG\naws_secret_access_key = s\n"
        ))  # fmt: skip
        env = {"HOME": str(aws_dir.parent)}
        default = await ProfileAuthProvider(environ=env).get_credentials()
        dev = await ProfileAuthProvider("dev", environ=env).get_credentials()
        assert default.access_key == "AKCFGDEFAULT"
        assert (dev.access_key, dev.session_token) == ("AKCFGDEV", "tok")

    async def test_profile_prefix_is_literal_in_the_credentials_file(self, aws_dir: Path) -> None:
        """[profile dev] in the credentials file is a profile called 'profile dev', not dev."""
        write(aws_dir / "credentials", "[profile dev]\naws_access_key_id = AK\naws_secret_access_key = s\n")  # fmt: skip
        with pytest.raises(ck.MissingCredentials, match="no profile 'dev'"):
            await ProfileAuthProvider(
                "dev", environ={"HOME": str(aws_dir.parent)}
            ).get_credentials()

    async def test_credentials_file_wins_without_mixing(self, aws_dir: Path) -> None:
        """The credentials file's keys win; a profile there without keys falls to the config."""
        write(aws_dir / "credentials", (
            "[dev]\naws_access_key_id = AKCREDS\naws_secret_access_key = from-creds\n"
            "[ops]\nregion = us-west-2\n"
        ))  # fmt: skip
        write(aws_dir / "config", (
            "[profile dev]\naws_access_key_id = AKCONFIG\naws_secret_access_key = from-config\n"
            "aws_session_token = config-token\n"
            "[profile ops]\naws_access_key_id = AKOPS\naws_secret_access_key = ops-secret\n"
        ))  # fmt: skip
        env = {"HOME": str(aws_dir.parent)}
        dev = await ProfileAuthProvider("dev", environ=env).get_credentials()
        ops = await ProfileAuthProvider("ops", environ=env).get_credentials()
        assert (dev.access_key, dev.secret_key, dev.session_token) == (
            "AKCREDS",
            "from-creds",
            None,
        )
        assert (ops.access_key, ops.secret_key) == ("AKOPS", "ops-secret")

    async def test_session_token_spellings(self, aws_dir: Path) -> None:
        """aws_session_token is read, and the older aws_security_token too."""
        write(aws_dir / "credentials", (
            "[a]\naws_access_key_id = A\naws_secret_access_key = s\naws_session_token = new\n"
            "[b]\naws_access_key_id = B\naws_secret_access_key = s\naws_security_token = old\n"
        ))  # fmt: skip
        env = {"HOME": str(aws_dir.parent)}
        assert (
            await ProfileAuthProvider("a", environ=env).get_credentials()
        ).session_token == "new"
        assert (
            await ProfileAuthProvider("b", environ=env).get_credentials()
        ).session_token == "old"

    async def test_file_locations_from_arguments_and_environment(self, tmp_path: Path) -> None:
        """credentials_file/config_file win over AWS_SHARED_CREDENTIALS_FILE/AWS_CONFIG_FILE."""
        env_creds = write(tmp_path / "env-creds", "[default]\naws_access_key_id = AKENV\naws_secret_access_key = s\n")  # fmt: skip
        arg_creds = write(tmp_path / "arg-creds", "[default]\naws_access_key_id = AKARG\naws_secret_access_key = s\n")  # fmt: skip
        env_config = write(tmp_path / "env-config", "[profile c]\naws_access_key_id = AKCONF\naws_secret_access_key = s\n")  # fmt: skip
        env = {
            "HOME": str(tmp_path / "nowhere"),
            "AWS_SHARED_CREDENTIALS_FILE": str(env_creds),
            "AWS_CONFIG_FILE": str(env_config),
        }
        assert (await ProfileAuthProvider(environ=env).get_credentials()).access_key == "AKENV"
        by_arg = ProfileAuthProvider(credentials_file=arg_creds, environ=env)
        assert (await by_arg.get_credentials()).access_key == "AKARG"
        from_config = ProfileAuthProvider("c", environ=env)
        assert (await from_config.get_credentials()).access_key == "AKCONF"
        home_relative = {"HOME": str(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": "~/arg-creds"}
        assert (
            await ProfileAuthProvider(environ=home_relative).get_credentials()
        ).access_key == "AKARG"

    async def test_secrets_with_percent_signs(self, aws_dir: Path) -> None:
        """Values are taken literally: no interpolation of '%'."""
        write(aws_dir / "credentials", "[default]\naws_access_key_id = AK\naws_secret_access_key = ab%(cd)s%%\n")  # fmt: skip
        creds = await ProfileAuthProvider(environ={"HOME": str(aws_dir.parent)}).get_credentials()
        assert creds.secret_key == "ab%(cd)s%%"

    async def test_edits_are_picked_up(self, aws_dir: Path) -> None:
        """The files are read again at each call, so a refresh sees rotated keys."""
        path = aws_dir / "credentials"
        write(path, "[default]\naws_access_key_id = AKOLD\naws_secret_access_key = s\n")
        provider = ProfileAuthProvider(environ={"HOME": str(aws_dir.parent)})
        assert (await provider.get_credentials()).access_key == "AKOLD"
        write(path, "[default]\naws_access_key_id = AKNEW\naws_secret_access_key = s\n")
        assert (await provider.refresh_credentials()).access_key == "AKNEW"

    async def test_no_files(self, aws_dir: Path) -> None:
        """Neither file exists: MissingCredentials naming both files and the profile."""
        with pytest.raises(ck.MissingCredentials) as info:
            await ProfileAuthProvider(
                "dev", environ={"HOME": str(aws_dir.parent)}
            ).get_credentials()
        text = str(info.value)
        assert "'dev'" in text
        assert str(aws_dir / "credentials") in text
        assert str(aws_dir / "config") in text

    async def test_no_such_profile(self, aws_dir: Path) -> None:
        """A profile in neither file: MissingCredentials naming it and where it was looked for."""
        write(aws_dir / "credentials", f"[default]\naws_access_key_id = AK\naws_secret_access_key = {SECRET}\n")  # fmt: skip
        with pytest.raises(ck.MissingCredentials) as info:
            await ProfileAuthProvider(
                "dev", environ={"HOME": str(aws_dir.parent)}
            ).get_credentials()
        text = str(info.value)
        assert "no profile 'dev'" in text
        assert f"{aws_dir / 'config'} (does not exist)" in text
        assert_no_secret(info.value)

    @pytest.mark.parametrize(
        ("body", "missing"),
        [
            ("aws_access_key_id = AK\n", "aws_secret_access_key"),
            (f"aws_secret_access_key = {SECRET}\n", "aws_access_key_id"),
            (f"aws_access_key_id =\naws_secret_access_key = {SECRET}\n", "aws_access_key_id"),
        ],
    )
    async def test_half_a_key_pair(self, aws_dir: Path, body: str, missing: str) -> None:
        """A profile with only one of the keys names the missing key, the file and profile."""
        path = write(aws_dir / "credentials", "[dev]\n" + body)
        with pytest.raises(ck.MissingCredentials) as info:
            await ProfileAuthProvider(
                "dev", environ={"HOME": str(aws_dir.parent)}
            ).get_credentials()
        assert str(info.value) == f"profile 'dev' in {path} has no {missing}"
        assert_no_secret(info.value)

    async def test_profiles_without_static_keys(self, aws_dir: Path) -> None:
        """A role_arn or SSO profile is reported as unsupported, naming the file."""
        path = write(aws_dir / "config", "[profile dev]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n")  # fmt: skip
        with pytest.raises(ck.MissingCredentials, match="not supported") as info:
            await ProfileAuthProvider(
                "dev", environ={"HOME": str(aws_dir.parent)}
            ).get_credentials()
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("text", "line"),
        [
            (f"aws_secret_access_key = {SECRET}\n[default]\n", "line 1"),
            (f"[default]\naws_access_key_id = AK\n{SECRET}\n", "line 3"),
        ],
    )
    async def test_malformed_file(self, aws_dir: Path, text: str, line: str) -> None:
        """A file that is not INI is a SerializationError with the line number, not the line."""
        path = write(aws_dir / "credentials", text)
        with pytest.raises(ck.SerializationError) as info:
            await ProfileAuthProvider(environ={"HOME": str(aws_dir.parent)}).get_credentials()
        assert str(path) in str(info.value)
        assert line in str(info.value)
        assert info.value.__context__ is None
        assert_no_secret(info.value)

    @pytest.mark.parametrize("kind", ["directory", "not utf-8"])
    async def test_unreadable_file(self, aws_dir: Path, kind: str) -> None:
        """A file that cannot be read is MissingCredentials naming it, without its bytes."""
        path = aws_dir / "credentials"
        if kind == "directory":
            path.mkdir()
        else:
            path.write_bytes(b"[default]\naws_secret_access_key = " + SECRET.encode() + b"\xff\n")
        with pytest.raises(ck.MissingCredentials) as info:
            await ProfileAuthProvider(environ={"HOME": str(aws_dir.parent)}).get_credentials()
        assert str(path) in str(info.value)
        assert info.value.__context__ is None
        assert_no_secret(info.value)

    def test_rejects_an_empty_profile_name(self) -> None:
        """An empty profile name is a misuse, not a lookup."""
        with pytest.raises(ValueError, match="profile"):
            ProfileAuthProvider("  ")

    def test_repr(self) -> None:
        """The repr names the profile only."""
        assert repr(ProfileAuthProvider()) == "ProfileAuthProvider()"
        assert repr(ProfileAuthProvider("dev")) == "ProfileAuthProvider('dev')"


# -- the default chain ------------------------------------------------------------------------


class TestDefaultChain:
    @pytest.fixture
    def home(self, aws_dir: Path) -> dict[str, str]:
        write(aws_dir / "credentials", "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = s\n[dev]\naws_access_key_id = AKDEV\naws_secret_access_key = s\n")  # fmt: skip
        return {"HOME": str(aws_dir.parent)}

    async def test_environment_first(self, home: dict[str, str]) -> None:
        """Environment keys win over the shared files."""
        env = {**home, "AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s"}
        assert (await default_aws_chain(environ=env).get_credentials()).access_key == "AKENV"

    async def test_then_the_shared_files(self, home: dict[str, str]) -> None:
        """Without environment keys the profile (AWS_PROFILE here) answers."""
        env = {**home, "AWS_PROFILE": "dev"}
        assert (await default_aws_chain(environ=env).get_credentials()).access_key == "AKDEV"

    async def test_a_named_profile_skips_the_environment(self, home: dict[str, str]) -> None:
        """profile= means that profile, even when environment keys are set."""
        env = {**home, "AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s"}
        chain = default_aws_chain(profile="dev", environ=env)
        assert (await chain.get_credentials()).access_key == "AKDEV"

    async def test_then_the_container_endpoint(
        self, endpoint: ScriptedEndpoint, tmp_path: Path
    ) -> None:
        """With no environment keys and no files, the container endpoint answers."""
        endpoint.answer(200, container_answer())
        env = {"HOME": str(tmp_path), "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url}
        assert (
            await default_aws_chain(environ=env).get_credentials()
        ).access_key == "ASIACONTAINER"

    async def test_everything_missing(self, tmp_path: Path) -> None:
        """When every step fails, one MissingCredentials says why for each step."""
        chain = default_aws_chain(environ={"HOME": str(tmp_path)})
        with pytest.raises(ck.MissingCredentials) as info:
            await chain.get_credentials()
        text = str(info.value)
        assert "AWS_ACCESS_KEY_ID" in text
        assert "no AWS profile 'default'" in text
        assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" in text
        assert repr(chain) == (
            "ChainAuthProvider(EnvAuthProvider(), ProfileAuthProvider(), ContainerAuthProvider())"
        )


# -- public surface ---------------------------------------------------------------------------


class TestPublicSurface:
    def test_names_are_sorted_and_public(self) -> None:
        """cloudkit_trio.aws has a sorted __all__ whose objects report the public module."""
        module = importlib.import_module("cloudkit_trio.aws")
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            obj = getattr(aws, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__module__ == "cloudkit_trio.aws", name
