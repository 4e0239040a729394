"""Signers of your own: the two protocols the runtime calls before each attempt."""

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import SigV4Signer


# --8<-- [start:request-signer]
class ApiKeySigner:
    """A cloudkit_trio.transport.RequestSigner: puts the access key in a header."""

    needs_credentials = True  # the runtime asks the auth provider before each attempt

    def sign(self, request: httpx.Request, credentials: ck.Credentials | None) -> None:
        assert credentials is not None  # always given when needs_credentials is true
        request.headers["x-api-key"] = credentials.access_key


# --8<-- [end:request-signer]


# --8<-- [start:per-service-signer]
class RegionalSigV4:
    """A cloudkit_trio.transport.PerServiceSigner: one signer per service and region."""

    needs_credentials = True

    def for_operation(self, service: str, region: str) -> SigV4Signer:
        return SigV4Signer(service, region)


# --8<-- [end:per-service-signer]


async def main() -> None:
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    for signer in (ApiKeySigner(), RegionalSigV4()):
        context = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
            .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
            .signer(signer)
            .transport(httpx.MockTransport(endpoint))
            .build()
        )
        async with context as cloud:
            await cloud.execute(ck.Operation(service="sqs", name="list_queues", path="/"))
    assert seen[0].headers["x-api-key"] == "AKID"
    assert "/us-east-1/sqs/aws4_request" in seen[1].headers["authorization"]


if __name__ == "__main__":
    trio.run(main)
