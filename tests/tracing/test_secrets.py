"""No secret reaches a span: not in a name, an attribute, an event or a status."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

import httpx

import cloudkit_trio as ck
from cloudkit_trio.transport import BearerTokenSigner

from ._support import ENDPOINT, Recorder, Script, builder

if TYPE_CHECKING:
    import trio.testing
    from opentelemetry.sdk.trace import ReadableSpan

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjESSIONTOKENVALUE"
API_KEY = "APIKEYVALUE-0123456789"
PRESIGNED_SIGNATURE = "f0e1d2c3b4a5968778695a4b3c2d1e0f0e1d2c3b4a5968778695a4b3c2d1e0f"
QUERY_TOKEN = "QUERYTOKENVALUE-presigned"
PASSWORD = "QUERYPASSWORDVALUE"
BEARER = "ya29.BEARERTOKENVALUE"


def strings(span: ReadableSpan) -> list[str]:
    """Every string a span exports: its name, attributes, events and status."""
    found = [span.name, span.status.description or ""]
    for key, value in (span.attributes or {}).items():
        found += [key, str(value)]
    for event in span.events:
        found.append(event.name)
        for key, value in (event.attributes or {}).items():
            found += [key, str(value)]
    return found


def echo_then_ok(request: httpx.Request) -> httpx.Response:
    """A 503 whose body quotes the request's credentials back, as some servers do."""
    quoted = (
        f"<Error><Message>{request.headers.get('authorization')} {request.url}</Message></Error>"
    )
    return httpx.Response(503, content=quoted.encode())


class TestNoSecretInSpans:
    async def test_signed_operations_leave_no_secret_in_any_span(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """SigV4 with a session token, secret headers, a presigned query, an echoing server."""
        script = Script([echo_then_ok, 403])
        credentials = ck.Credentials("AKIDEXAMPLE", SECRET_KEY, session_token=SESSION_TOKEN)
        context = (
            builder(script)
            .signer(ck.aws.AwsSigner())  # the AWS default, named to be explicit
            .auth_provider(ck.StaticAuthProvider(credentials))
            .tracing(recorder.provider)
            .build()
        )
        operations = [
            ck.Operation(
                service="s3",
                name="get_object",
                path="/bucket/key",
                params={
                    "X-Amz-Signature": PRESIGNED_SIGNATURE,
                    "X-Amz-Security-Token": QUERY_TOKEN,
                    "X-Amz-Credential": "AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request",
                },
                headers={"X-Api-Key": API_KEY, "x-amz-security-token": SESSION_TOKEN},
            ),
            ck.Operation(
                service="s3",
                name="head_object",
                url=f"http://127.0.0.1:9000/bucket/key?token={QUERY_TOKEN}&password={PASSWORD}",
            ),
        ]
        async with context as cloud:
            for operation in operations:
                with contextlib.suppress(ck.CloudError):
                    await cloud.execute(operation)
        secrets = {SECRET_KEY, SESSION_TOKEN, API_KEY, PRESIGNED_SIGNATURE, QUERY_TOKEN, PASSWORD}
        for request in script.requests:
            authorization = request.headers["authorization"]
            secrets.add(authorization)
            secrets.add(re.search(r"Signature=([0-9a-f]+)", authorization).group(1))  # type: ignore[union-attr]
        assert len(script.requests) >= 3 and len(recorder.spans) >= 5
        exported = [text for span in recorder.spans for text in strings(span)]
        assert exported
        leaks = {secret for secret in secrets for text in exported if secret in text}
        assert not leaks

    async def test_bearer_tokens_leave_no_trace(
        self, recorder: Recorder, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An Authorization: Bearer signer, a failing and a retried attempt: no token anywhere."""
        script = Script([echo_then_ok, 401])
        context = (
            builder(script)
            .signer(BearerTokenSigner())
            .auth_provider(
                ck.StaticAuthProvider(ck.Credentials("client", "unused", session_token=BEARER))
            )
            .tracing(recorder.provider)
            .build()
        )
        async with context as cloud:
            with contextlib.suppress(ck.CloudError):
                await cloud.execute(ck.Operation(service="blob", name="get", url=f"{ENDPOINT}/c/b"))
        assert any(BEARER in r.headers.get("authorization", "") for r in script.requests)
        exported = [text for span in recorder.spans for text in strings(span)]
        assert exported and not [text for text in exported if BEARER in text]
