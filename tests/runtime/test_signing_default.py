"""Signing by default: each provider's default signer, per-operation choice, opting out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import cloudkit_trio as ck
from cloudkit_trio.aws import AwsSigner, SigV4Signer
from cloudkit_trio.testing import CapturingLogger
from cloudkit_trio.transport import BearerTokenSigner, NoAuthSigner, RequestSigner

from ._support import CountingAuth

ENDPOINT = "http://127.0.0.1:9"
CREDENTIALS = ck.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


class Capture:
    """A MockTransport handler that keeps every request and answers 200."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, content=b"{}")

    def scope(self, index: int = -1) -> list[str]:
        """The credential scope of a request's Authorization header: day/region/service."""
        header = self.requests[index].headers["Authorization"]
        credential = header.split("Credential=", 1)[1].split(",", 1)[0]
        return credential.split("/")[1:4]


def aws_context(
    capture: Capture,
    *,
    region: str = "us-east-1",
    auth: ck.AuthProvider | None = None,
    signer: RequestSigner | AwsSigner | None = None,
    policy: ck.RetryPolicy | None = None,
) -> ck.CloudContext:
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(region=region, endpoint=ENDPOINT))
        .transport(httpx.MockTransport(capture))
        .logger(CapturingLogger())
        .auth_provider(auth or ck.StaticAuthProvider(CREDENTIALS))
    )
    if signer is not None:
        builder = builder.signer(signer)
    if policy is not None:
        builder = builder.retry_policy(policy)
    return builder.build()


def op(service: str, **fields: object) -> ck.Operation:
    return ck.Operation(service=service, name="call", path="/", **fields)  # type: ignore[arg-type]


class TestAwsSignsByDefault:
    async def test_every_operation_is_signed_for_its_service(self) -> None:
        """One context signs s3, sts, sqs and dynamodb requests, each for its own service."""
        capture = Capture()
        async with aws_context(capture) as cloud:
            for service in ("s3", "sts", "sqs", "dynamodb"):
                await cloud.execute(op(service, method="POST", body=b"{}"))
        assert [capture.scope(n)[1:] for n in range(4)] == [
            ["us-east-1", "s3"],
            ["us-east-1", "sts"],
            ["us-east-1", "sqs"],
            ["us-east-1", "dynamodb"],
        ]
        for request in capture.requests:
            assert request.headers["X-Amz-Date"]
            assert "AKIDEXAMPLE/" in request.headers["Authorization"]

    async def test_signature_equals_a_sigv4_signer_for_that_service(self) -> None:
        """The default signature is SigV4Signer's for the service and region, byte for byte."""
        capture = Capture()
        async with aws_context(capture, region="eu-west-1") as cloud:
            await cloud.execute(op("sqs", method="POST", body=b"Action=ListQueues"))
        sent = capture.requests[0]
        date = sent.headers["X-Amz-Date"]
        again = httpx.Request(
            "POST",
            sent.url,
            headers=[
                (k, v)
                for k, v in sent.headers.multi_items()
                if k.lower() not in ("authorization", "x-amz-date")
            ],
            content=sent.content,
        )
        import datetime as dt

        now = dt.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        SigV4Signer("sqs", "eu-west-1").sign(again, CREDENTIALS, now=now)
        assert again.headers["Authorization"] == sent.headers["Authorization"]

    async def test_s3_rules_for_s3_generic_rules_for_the_rest(self) -> None:
        """S3 requests carry X-Amz-Content-SHA256; botocore's generic signer sends none."""
        capture = Capture()
        async with aws_context(capture) as cloud:
            await cloud.execute(op("s3", method="PUT", body=b"data"))
            await cloud.execute(op("dynamodb", method="POST", body=b"{}"))
        s3, dynamodb = capture.requests
        assert "x-amz-content-sha256" in s3.headers
        assert "x-amz-content-sha256" not in dynamodb.headers

    async def test_signing_names_that_differ_from_the_service(self) -> None:
        """sesv2 signs as ses, stepfunctions as states: AWS's signing names."""
        capture = Capture()
        async with aws_context(capture) as cloud:
            await cloud.execute(op("sesv2"))
            await cloud.execute(op("stepfunctions", method="POST"))
        assert capture.scope(0)[2] == "ses"
        assert capture.scope(1)[2] == "states"

    async def test_an_operation_may_name_its_own_region(self) -> None:
        """Operation.region overrides CloudConfig.region for that operation only."""
        capture = Capture()
        async with aws_context(capture, region="eu-west-1") as cloud:
            await cloud.execute(op("sqs", region="ap-south-1"))
            await cloud.execute(op("sqs"))
        assert capture.scope(0)[1] == "ap-south-1"
        assert capture.scope(1)[1] == "eu-west-1"

    def test_operation_region_is_validated(self) -> None:
        with pytest.raises(ck.ConfigError, match="region"):
            op("s3", region="not a region")

    async def test_signing_overrides_are_honoured(self) -> None:
        """AwsSigner(signing_names=...) signs a private service name as another."""
        capture = Capture()
        signer = AwsSigner(signing_names={"billing-proxy": "execute-api"})
        async with aws_context(capture, signer=signer) as cloud:
            await cloud.execute(op("billing-proxy"))
        assert capture.scope()[2] == "execute-api"

    async def test_a_service_name_that_cannot_be_signed_is_a_config_error(self) -> None:
        """A service name with a space gets a typed error and nothing is sent."""
        capture = Capture()
        async with aws_context(capture) as cloud:
            with pytest.raises(ck.ConfigError, match="cannot sign for service"):
                await cloud.execute(op("my service"))
        assert capture.requests == []

    async def test_unsigned_payload_is_for_s3_only(self) -> None:
        capture = Capture()
        async with aws_context(capture, signer=AwsSigner(unsigned_payload=True)) as cloud:
            await cloud.execute(op("s3", method="PUT", body=b"data"))
            await cloud.execute(op("sqs", method="POST", body=b"Action=ListQueues"))
        assert capture.requests[0].headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "x-amz-content-sha256" not in capture.requests[1].headers

    async def test_every_retry_is_signed_again_by_the_same_choice(self) -> None:
        """A retried operation is signed for the same service on every attempt."""
        capture = Capture(status=503)
        policy = ck.FixedDelay(0.01, max_attempts=3)
        async with aws_context(capture, policy=policy) as cloud:
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op("sqs"))
        assert len(capture.requests) == 3
        assert {tuple(capture.scope(n)[1:]) for n in range(3)} == {("us-east-1", "sqs")}


class TestOptingOutAndOtherProviders:
    async def test_no_auth_signer_sends_unsigned_and_never_asks_for_credentials(self) -> None:
        capture = Capture()
        auth = CountingAuth()
        async with aws_context(capture, auth=auth, signer=NoAuthSigner()) as cloud:
            await cloud.execute(op("s3"))
        assert "authorization" not in capture.requests[0].headers
        assert auth.fetches == 0

    @pytest.mark.parametrize("provider", [ck.ProviderType.GCP, ck.ProviderType.AZURE])
    async def test_bearer_token_providers(self, provider: ck.ProviderType) -> None:
        """GCP and Azure send the access token (the session token) as a bearer token."""
        capture = Capture()
        token = ck.Credentials("client", "client-secret", session_token="ya29.token")
        context = (
            ck.CloudContext.builder(provider)
            .config(ck.CloudConfig(endpoint=ENDPOINT))
            .transport(httpx.MockTransport(capture))
            .logger(CapturingLogger())
            .auth_provider(ck.StaticAuthProvider(token))
            .build()
        )
        async with context as cloud:
            await cloud.execute(op("storage"))
        assert capture.requests[0].headers["Authorization"] == "Bearer ya29.token"

    def test_oracle_needs_a_signer(self) -> None:
        """No silent unsigned request: OCI has no built-in signer, build() says what to do."""
        with pytest.raises(ck.ConfigError, match=r"\.signer\(") as caught:
            ck.CloudContext.builder(ck.ProviderType.ORACLE).build()
        assert caught.value.field == "signer"
        ck.CloudContext.builder(ck.ProviderType.ORACLE).signer(NoAuthSigner()).build()
        ck.CloudContext.builder(ck.ProviderType.ORACLE).signer(BearerTokenSigner()).build()

    def test_the_builder_refuses_what_is_not_a_signer(self) -> None:
        with pytest.raises(TypeError, match="RequestSigner or PerServiceSigner"):
            ck.CloudContext.builder("aws").signer(object())  # type: ignore[arg-type]


class _Choosing:
    """A PerServiceSigner that counts its choices and may misbehave."""

    needs_credentials = False

    def __init__(self, behaviour: Callable[[str, str], RequestSigner]) -> None:
        self.behaviour = behaviour
        self.choices: list[tuple[str, str]] = []

    def for_operation(self, service: str, region: str) -> RequestSigner:
        self.choices.append((service, region))
        return self.behaviour(service, region)


class TestPerServiceSigners:
    async def test_chosen_once_per_operation_not_per_attempt(self) -> None:
        capture = Capture(status=503)
        chooser = _Choosing(lambda service, region: NoAuthSigner())
        policy = ck.FixedDelay(0.01, max_attempts=3)
        async with aws_context(capture, signer=chooser, policy=policy) as cloud:  # type: ignore[arg-type]
            with pytest.raises(ck.ServiceUnavailable):
                await cloud.execute(op("sqs", region="eu-central-1"))
        assert len(capture.requests) == 3
        assert chooser.choices == [("sqs", "eu-central-1")]

    async def test_a_chooser_that_raises_costs_the_operation_an_internal_error(self) -> None:
        def broken(service: str, region: str) -> RequestSigner:
            raise RuntimeError("secret-in-message")

        capture = Capture()
        async with aws_context(capture, signer=_Choosing(broken)) as cloud:  # type: ignore[arg-type]
            with pytest.raises(ck.InternalError) as caught:
                await cloud.execute(op("sqs"))
            assert "secret-in-message" not in str(caught.value)
            assert cloud.snapshot().spi_failures == {"signer": 1}
            # The next operation is not affected by the last one's failure.
            with pytest.raises(ck.InternalError):
                await cloud.execute(op("sqs"))
        assert capture.requests == []

    async def test_a_chooser_that_returns_garbage_is_contained(self) -> None:
        capture = Capture()
        chooser = _Choosing(lambda service, region: "nope")  # type: ignore[arg-type,return-value]
        async with aws_context(capture, signer=chooser) as cloud:  # type: ignore[arg-type]
            with pytest.raises(ck.InternalError, match="not a RequestSigner"):
                await cloud.execute(op("sqs"))
        assert capture.requests == []


class TestMissingCredentials:
    async def test_no_credentials_anywhere(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The default AWS chain finds nothing: MissingCredentials, every source named."""
        for name in list(os.environ):
            if name.startswith(("AWS_", "CLOUD_")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        capture = Capture()
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=ENDPOINT))
            .transport(httpx.MockTransport(capture))
            .logger(CapturingLogger())
            .build()
        )
        async with context as cloud:
            with pytest.raises(ck.MissingCredentials) as caught:
                await cloud.execute(op("s3"))
        error = caught.value
        assert isinstance(error, ck.AuthError)
        text = str(error)
        for source in ("EnvAuthProvider", "ProfileAuthProvider", "ContainerAuthProvider"):
            assert source in text
        assert "AWS_ACCESS_KEY_ID" in text
        assert isinstance(error.__cause__, ck.MissingCredentials)
        assert capture.requests == []
