"""One AWS context, no signer configured, against moto's server with authentication on.

S3, STS and DynamoDB answer only requests signed with the moto user's key; the context
signs each for its own service. A wrong secret is refused with InvalidCredentials, once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import S3
from cloudkit_trio.testing import RecordingMetrics

from ._moto import REGION, MotoServer

_JSON_10 = "application/x-amz-json-1.0"


def make_context(
    server: MotoServer,
    *,
    credentials: ck.Credentials | None = None,
    metrics: RecordingMetrics | None = None,
) -> ck.CloudContext:
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(region=REGION, endpoint=server.url))
        .auth_provider(ck.StaticAuthProvider(credentials or server.credentials))
        .logger(ck.NoopLogger())
    )
    if metrics is not None:
        builder = builder.metrics_collector(metrics)
    return builder.build()


def caller_identity() -> ck.Operation:
    # STS's query protocol: a form-encoded POST, answered in XML.
    return ck.Operation(
        service="sts",
        name="get_caller_identity",
        method="POST",
        path="/",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        body=b"Action=GetCallerIdentity&Version=2011-06-15",
        idempotent=True,
    )


def dynamodb(target: str, document: object) -> ck.Operation:
    # DynamoDB's JSON protocol: the action in X-Amz-Target, the arguments in the body.
    return ck.Operation(
        service="dynamodb",
        name=target,
        method="POST",
        path="/",
        headers={"Content-Type": _JSON_10, "X-Amz-Target": f"DynamoDB_20120810.{target}"},
        body=json.dumps(document).encode(),
    )


@pytest.fixture
async def cloud(moto_server: MotoServer) -> AsyncIterator[ck.Cloud]:
    async with make_context(moto_server) as running:
        yield running


class TestOneContextManyServices:
    async def test_s3_needs_no_signer(self, cloud: ck.Cloud) -> None:
        s3 = S3(cloud)
        bucket = f"ck-{uuid.uuid4().hex[:16]}"
        await s3.create_bucket(bucket)
        await s3.put_object(bucket, "greeting.txt", b"hello")
        stored = await s3.get_object(bucket, "greeting.txt")
        assert stored.body == b"hello"

    async def test_sts_get_caller_identity(self, cloud: ck.Cloud) -> None:
        response = await cloud.execute(caller_identity())
        assert b"arn:aws:iam::123456789012:user/cloudkit-tests" in response.content

    async def test_dynamodb_json_protocol(self, cloud: ck.Cloud) -> None:
        table = f"ck-{uuid.uuid4().hex[:12]}"
        await cloud.execute(
            dynamodb(
                "CreateTable",
                {
                    "TableName": table,
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                },
            )
        )
        listed = await cloud.execute(dynamodb("ListTables", {}))
        assert table in listed.json()["TableNames"]

    async def test_the_three_services_interleaved_on_one_context(self, cloud: ck.Cloud) -> None:
        """Concurrent operations of different services, each signed for its own."""
        results: list[int] = []

        async def one(operation: ck.Operation) -> None:
            results.append((await cloud.execute(operation)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one, caller_identity())
                nursery.start_soon(one, dynamodb("ListTables", {}))
                nursery.start_soon(one, ck.Operation(service="s3", name="list_buckets", path="/"))
        assert results == [200] * 15


class TestWrongSecret:
    @pytest.mark.parametrize(
        "operation",
        [
            pytest.param(
                lambda: ck.Operation(service="s3", name="list_buckets", path="/"), id="s3"
            ),
            pytest.param(caller_identity, id="sts"),
            pytest.param(lambda: dynamodb("ListTables", {}), id="dynamodb"),
        ],
    )
    async def test_is_refused_as_invalid_credentials_and_not_retried(
        self, moto_server: MotoServer, operation: object
    ) -> None:
        wrong = ck.Credentials(moto_server.access_key, "not-the-secret-" + "x" * 25)
        metrics = RecordingMetrics()
        async with make_context(moto_server, credentials=wrong, metrics=metrics) as cloud:
            with pytest.raises(ck.InvalidCredentials) as caught:
                await cloud.execute(operation())  # type: ignore[operator]
        error = caught.value
        assert error.code == "SignatureDoesNotMatch"
        assert error.attempt == 1
        assert "not-the-secret" not in str(error)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The Python block after ``<!-- readme-example -->`` in README.md."""
    text = README.read_text()
    block = text.split("<!-- readme-example -->", 1)[1].split("```python\n", 1)[1]
    return block.split("```", 1)[0]


class TestReadmeExample:
    def run(self, server: MotoServer, secret: str, home: Path) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": server.url,
            "AWS_REGION": REGION,
        }
        return subprocess.run(
            [sys.executable, "-c", readme_example()],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip

    def test_signs_by_default(self, moto_server: MotoServer, tmp_path: Path) -> None:
        """The README's example lists buckets on a server that checks every signature."""
        result = self.run(moto_server, moto_server.secret_key, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("200 ")

    def test_a_wrong_secret_is_refused(self, moto_server: MotoServer, tmp_path: Path) -> None:
        """The same program with a wrong secret fails: the request really is checked."""
        result = self.run(moto_server, "wrong-secret-" + "y" * 27, tmp_path)
        assert result.returncode != 0
        assert "InvalidCredentials" in result.stderr
        assert "wrong-secret" not in result.stderr
