"""Secrets a server echoes, and control characters it sends, never reach a message or log line.

Issue 13, items 5, 7 and 10: error messages, reprs, error codes, the credential snapshot's
``last_error``, the runtime's log lines and ``LoggingMetrics`` lines all go through the one
masking module, and text sinks escape control characters.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import attrs
import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cloudkit_trio as ck
from cloudkit_trio._masking import MASK, secret_values
from cloudkit_trio.aws import SigV4Signer
from cloudkit_trio.spi import LogEntry, LogLevel, OperationMetrics, OperationOutcome
from cloudkit_trio.spi._logger import redact_fields
from cloudkit_trio.testing import CapturingLogger
from cloudkit_trio.transport import error_from_exception, error_from_response
from cloudkit_trio.transport._classify import describe_refused_header

from ._raw import read_head

SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FQoGZXIvYXdzEJr-echoed-session-token-EXAMPLE"
BEARER = "eyJhbGciOiJIUzI1NiJ9.echoed-bearer-EXAMPLE"


def shown(error: BaseException) -> str:
    """What an error shows a user: str, repr, its code."""
    return "\n".join((str(error), repr(error), str(getattr(error, "code", ""))))


# -- a raw loopback server that echoes what it was sent ------------------------------------

Answer = Callable[[dict[str, str]], tuple[int, list[tuple[str, str]], bytes]]


@attrs.define(eq=False)
class EchoServer:
    """An HTTP/1.1 server on a raw 127.0.0.1 socket; ``answer`` builds each response from
    the request's headers (lower-cased names), as API gateways quoting them do."""

    answer: Answer
    seen: list[dict[str, str]] = attrs.Factory(list)
    url: str = ""

    async def handle(self, stream: trio.SocketStream) -> None:
        head = await read_head(stream)
        if head is None:
            return
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        self.seen.append(headers)
        status, extra, body = self.answer(headers)
        response = f"HTTP/1.1 {status} Refused\r\ncontent-length: {len(body)}\r\n"
        response += "".join(f"{name}: {value}\r\n" for name, value in extra)
        await stream.send_all(response.encode("latin-1") + b"connection: close\r\n\r\n" + body)
        await stream.aclose()


Start = Callable[[Answer], Awaitable[EchoServer]]


@pytest.fixture
async def start(nursery: trio.Nursery) -> Start:
    """Starts EchoServers on free 127.0.0.1 ports, stopped with the test."""

    async def start_one(answer: Answer) -> EchoServer:
        server = EchoServer(answer)
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
        server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        return server

    return start_one


@pytest.fixture
def stdlib_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog capturing everything the library logs through StdlibLogger."""
    caplog.set_level(5, logger="cloudkit_trio")
    return caplog


def build(url: str, logger: ck.Logger, metrics_logger: ck.Logger, **kw: object) -> ck.CloudContext:
    builder = (
        ck.CloudContext.builder("aws")
        .config(ck.CloudConfig(endpoint=url, timeout=5.0))
        .auth_provider(
            kw.pop(  # type: ignore[arg-type]
                "auth",
                ck.StaticAuthProvider(ck.Credentials("AKIDEXAMPLE", SECRET_KEY, SESSION_TOKEN)),
            )
        )
        .signer(kw.pop("signer", SigV4Signer(service="execute-api", region="us-east-1")))  # type: ignore[arg-type]
        .retry_policy(ck.NoRetry())
        .logger(logger)
        .metrics_collector(ck.LoggingMetrics(metrics_logger))
    )
    return builder.build()


def get() -> ck.Operation:
    return ck.Operation(service="api", name="get", path="/items")


def logged(capturing: CapturingLogger, caplog: pytest.LogCaptureFixture) -> str:
    """Every line and field both loggers wrote."""
    entries = [f"{entry.message} {dict(entry.fields)!r}" for entry in capturing.entries]
    return "\n".join([*entries, caplog.text, *(repr(r.__dict__) for r in caplog.records)])


def gateway_json(headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """API Gateway style: the Authorization header and the security token quoted back."""
    message = (
        f"Invalid key=value pair in Authorization header: '{headers['authorization']}'. "
        f"X-Amz-Security-Token: {headers['x-amz-security-token']}"
    )
    body = json.dumps({"__type": "IncompleteSignatureException", "message": message})
    return 403, [("content-type", "application/json")], body.encode()


def s3_xml(headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """S3 style: the signature and token quoted inside the XML message."""
    signature = headers["authorization"].rsplit("Signature=", 1)[1]
    token = headers["x-amz-security-token"]
    body = (
        "<Error><Code>SignatureDoesNotMatch</Code>"
        f"<Message>signature={signature} session_token={token}</Message></Error>"
    )
    return 403, [("content-type", "application/xml")], body.encode()


def header_code(headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """The error code header itself quoting the credential."""
    return 400, [("x-ms-error-code", headers["authorization"])], b""


def raw_echo(headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """The token quoted with no name before it: only the request's own secrets catch it."""
    body = json.dumps({"__type": "AccessDenied", "message": f"{headers['x-amz-security-token']}"})
    return 403, [("content-type", "application/json")], body.encode()


class TestEchoedByTheServer:
    @pytest.mark.parametrize("answer", [gateway_json, s3_xml, header_code])
    async def test_error_messages_and_logs_hold_no_echoed_secret(
        self, start: Start, stdlib_log: pytest.LogCaptureFixture, answer: Answer
    ) -> None:
        """A server quoting the signature and token back: the CloudError and every log line
        (CapturingLogger and a real StdlibLogger) hold none of them."""
        server = await start(answer)
        capturing = CapturingLogger()
        async with build(server.url, capturing, ck.StdlibLogger(min_level=LogLevel.DEBUG)) as cloud:
            with pytest.raises(ck.CloudError) as raised:
                await cloud.execute(get())
        sent = server.seen[0]
        signature = sent["authorization"].rsplit("Signature=", 1)[1]
        text = shown(raised.value) + logged(capturing, stdlib_log)
        for secret in (signature, SESSION_TOKEN, SECRET_KEY):
            assert secret not in text
        assert MASK in shown(raised.value)

    async def test_a_token_quoted_without_its_name(
        self, start: Start, stdlib_log: pytest.LogCaptureFixture
    ) -> None:
        """The request's own token, echoed bare, is masked: the runtime knows what it sent."""
        server = await start(raw_echo)
        capturing = CapturingLogger()
        async with build(server.url, capturing, ck.StdlibLogger()) as cloud:
            with pytest.raises(ck.CloudError) as raised:
                await cloud.execute(get())
        assert SESSION_TOKEN not in shown(raised.value) + logged(capturing, stdlib_log)


class _RevokedAfterFirst(ck.AuthProvider):
    """Credentials first; then a refusal that quotes the session token it was holding."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_credentials(self) -> ck.Credentials:
        return await self.refresh_credentials()

    async def refresh_credentials(self) -> ck.Credentials:
        self.calls += 1
        if self.calls == 1:
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            return ck.Credentials("AKIDEXAMPLE", SECRET_KEY, SESSION_TOKEN, expires_at=expires)
        raise ck.TokenRefreshFailed(
            f"STS refused session {SESSION_TOKEN}; Vault said: invalid token "
            f'"hvs.vault-token-EXAMPLE", Authorization: Bearer {BEARER}'
        )


class TestCredentialSourceEchoes:
    async def test_last_error_and_warn_line_are_masked(
        self, start: Start, stdlib_log: pytest.LogCaptureFixture
    ) -> None:
        """A refresh failure quoting tokens: the caller's error, the snapshot's last_error
        and the WARN line show none of them."""

        def expired(_headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
            return 400, [], b"<Error><Code>ExpiredToken</Code><Message>expired</Message></Error>"

        server = await start(expired)
        capturing = CapturingLogger()
        auth = _RevokedAfterFirst()
        async with build(server.url, ck.StdlibLogger(), capturing, auth=auth) as cloud:
            with pytest.raises(ck.CloudError) as raised:
                await cloud.execute(get())
            last_error = cloud.snapshot().credentials.last_error
        assert auth.calls == 2 and last_error is not None
        text = shown(raised.value) + last_error + logged(capturing, stdlib_log)
        for secret in (SESSION_TOKEN, "hvs.vault-token-EXAMPLE", BEARER, SECRET_KEY):
            assert secret not in text
        warnings = [r.getMessage() for r in stdlib_log.records if r.levelno == logging.WARNING]
        assert any(line.startswith("credential refresh failed") for line in warnings)


class TestMappedErrors:
    @pytest.mark.parametrize(
        "body",
        [
            b'{"__type": "X", "message": "Authorization: Bearer SECRETVALUE1234 refused"}',
            b'{"__type": "X", "message": "bad access_token=SECRETVALUE1234"}',
            b'{"__type": "X", "message": "{\\"password\\": \\"SECRETVALUE1234\\"}"}',
            b"<Error><Code>X</Code><Message>X-Amz-Security-Token: SECRETVALUE1234</Message></Error>",
            b'{"error": {"status": "X", "message": "invalid token \\"SECRETVALUE1234\\""}}',
        ],
    )
    def test_named_echoes_are_masked(self, body: bytes) -> None:
        """Tokens quoted with their name, header or scheme are masked in the message."""
        error = error_from_response(403, {}, body)
        assert error is not None
        assert "SECRETVALUE1234" not in shown(error)

    def test_the_requests_own_secrets_are_masked_anywhere(self) -> None:
        """Values passed as secrets= are masked wherever the server quotes them."""
        request = {"Authorization": f"Bearer {BEARER}", "X-Amz-Security-Token": SESSION_TOKEN}
        body = json.dumps({"__type": SESSION_TOKEN, "message": f"you sent {BEARER}!"}).encode()
        error = error_from_response(400, {}, body, secrets=secret_values(request))
        assert error is not None
        assert BEARER not in shown(error) and SESSION_TOKEN not in shown(error)
        assert error.code == MASK

    def test_a_secret_is_masked_before_the_message_is_cut(self) -> None:
        """A secret straddling the 300-character cut leaves no piece of itself behind."""
        body = json.dumps({"message": "x" * 280 + SESSION_TOKEN}).encode()
        error = error_from_response(400, {}, body, secrets=[SESSION_TOKEN])
        assert error is not None
        assert SESSION_TOKEN[:12] not in error.message

    @settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(
        secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789", min_size=8),
        before=st.text(max_size=200),
        after=st.text(max_size=200),
        shape=st.sampled_from(["json", "gcp", "xml", "raw", "header"]),
        status=st.sampled_from([400, 401, 403, 404, 429, 500, 503]),
    )
    def test_fuzz_no_known_secret_survives(
        self, secret: str, before: str, after: str, shape: str, status: int
    ) -> None:
        """For any error body quoting a known secret, str(), repr() and code never show it."""
        text = before + secret + after
        headers: dict[str, str] = {}
        if shape == "json":
            body = json.dumps({"__type": text, "message": text}).encode()
        elif shape == "gcp":
            body = json.dumps({"error": {"status": text, "message": text}}).encode()
        elif shape == "xml":
            escaped = text.replace("&", "&amp;").replace("<", "&lt;").encode("ascii", "replace")
            body = (
                b"<Error><Code>" + escaped + b"</Code><Message>" + escaped + b"</Message></Error>"
            )
        elif shape == "raw":
            body = text.encode()
        else:
            body = b""
            headers = {"x-amzn-errortype": text.encode("ascii", "ignore").decode()}
        error = error_from_response(status, headers, body, reason=text, secrets=[secret])
        assert error is not None
        assert secret not in shown(error)


class TestRefusedHeaderValues:
    async def test_a_signer_writing_a_newline_never_has_its_value_quoted(
        self, start: Start
    ) -> None:
        """A secret header with CR/LF is refused before sending, over both transports,
        and the error does not quote the token."""

        class NewlineSigner:
            needs_credentials = False

            def sign(self, request: httpx.Request, credentials: ck.Credentials | None) -> None:
                request.headers["Authorization"] = f"Bearer {BEARER}\r\nX-Injected: 1"

        server = await start(gateway_json)
        for plain in (False, True):
            builder = (
                ck.CloudContext.builder("aws")
                .config(ck.CloudConfig(endpoint=server.url, timeout=5.0))
                .signer(NewlineSigner())
                .retry_policy(ck.NoRetry())
            )
            if plain:
                builder = builder.plain_httpx_transport()
            async with builder.build() as cloud:
                with pytest.raises(ck.ValidationError) as raised:
                    await cloud.execute(get())
            assert BEARER not in shown(raised.value)
            assert "CR, LF, NUL" in str(raised.value)
        assert server.seen == []

    def test_the_header_is_named_when_the_request_is_known(self) -> None:
        """Given the request's headers, the message names the header, still not its value."""
        exc = httpx.LocalProtocolError(f"Illegal header value b'Bearer {BEARER}\\r\\n'")
        headers = {"Authorization": f"Bearer {BEARER}\r\n", "Accept": "*/*"}
        error = error_from_exception(exc, headers=headers)
        assert isinstance(error, ck.ValidationError)
        assert "'Authorization'" in str(error) and BEARER not in shown(error)

    def test_other_headers_are_quoted_masked_and_escaped(self) -> None:
        """A header that is not secret is quoted, escaped, with any secret in it masked."""
        message = describe_refused_header("X-Note", "token=abcdef\r\nX: y")
        assert "X-Note" in message and "\\r\\n" in message and "abcdef" not in message
        assert BEARER not in describe_refused_header("X-Api-Key", BEARER)


class TestLogLineForgery:
    def test_stdlib_logger_escapes_controls(self, stdlib_log: pytest.LogCaptureFixture) -> None:
        """A CR or LF in a message or field cannot start a second log line."""
        ck.StdlibLogger().info("op\nfailed", error_code="Bad\r\nERROR forged line")
        (record,) = stdlib_log.records
        assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
        assert "Bad\\r\\nERROR forged line" in record.getMessage()

    async def test_logging_metrics_escapes_a_servers_code(self) -> None:
        """LoggingMetrics escapes the provider's error code and names for any Logger."""
        capturing = CapturingLogger()
        metrics = OperationMetrics(
            provider=ck.ProviderType.AWS,
            service="s3",
            operation="get\nobject",
            duration=0.1,
            outcome=OperationOutcome.FAILURE,
            error_code="Code\nINFO forged token=abcdef",
        )
        await ck.LoggingMetrics(capturing).record(metrics)
        (entry,) = capturing.entries
        assert "\n" not in entry.message
        assert entry.fields["error_code"] == f"Code\\nINFO forged token={MASK}"

    async def test_a_newline_in_a_code_over_loopback(
        self, start: Start, stdlib_log: pytest.LogCaptureFixture
    ) -> None:
        """A server's code with a newline reaches the StdlibLogger line escaped."""

        def forged(_headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
            body = json.dumps({"__type": "Bad\nINFO cloudkit_trio forged", "message": "m"})
            return 400, [("content-type", "application/json")], body.encode()

        server = await start(forged)
        async with build(server.url, CapturingLogger(), ck.StdlibLogger()) as cloud:
            with pytest.raises(ck.ValidationError):
                await cloud.execute(get())
        lines = [record.getMessage() for record in stdlib_log.records]
        assert any("Bad\\nINFO cloudkit_trio forged" in line for line in lines)
        assert all("\n" not in line for line in lines)

    def test_structured_logger_is_one_line_already(self) -> None:
        """StructuredLogger writes JSON: a newline in a field stays inside its string."""
        stream = io.StringIO()
        ck.StructuredLogger(stream).info("m\nx", error_code="Bad\n{}\u2028")
        assert stream.getvalue().count("\n") == 1
        assert json.loads(stream.getvalue())["error_code"] == "Bad\n{}\u2028"


class TestOneDefinitionOfSecretNames:
    def test_redact_fields_masks_what_reprs_mask(self) -> None:
        """redact_fields knows the names the masking module knows, and scrubs text values."""
        fields = redact_fields(
            {
                "X-Api-Key": "k1",
                "access_token": "k2",
                "client_secret": "k3",
                "error": "Authorization: Bearer k4k4k4k4",
                "tags": {"token": "k5"},
                "attempt": 2,
            }
        )
        assert fields["attempt"] == 2
        assert all(key not in repr(fields) for key in ("k1", "k2", "k3", "k4k4", "k5"))

    def test_the_duplicate_list_is_gone(self) -> None:
        """spi/_logger.py keeps no secret-name list of its own."""
        from cloudkit_trio.spi import _logger

        assert not hasattr(_logger, "_SECRET_FIELDS")

    def test_log_entries_with_secret_objects(self, stdlib_log: pytest.LogCaptureFixture) -> None:
        """A field holding an object whose str() quotes a secret is logged masked."""
        error = ck.TokenRefreshFailed(f"refused: token={SESSION_TOKEN}")
        ck.StdlibLogger().log(LogEntry(LogLevel.ERROR, "failed", {"cause": error}))
        assert SESSION_TOKEN not in stdlib_log.text
