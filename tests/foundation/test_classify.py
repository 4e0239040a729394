"""The single boundary from HTTP responses and httpx exceptions to the error tree."""

from __future__ import annotations

import datetime as dt
import inspect
import socket
import ssl
from functools import partial

import httpx
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.transport import (
    error_from_exception,
    error_from_response,
    parse_provider_code,
    parse_retry_after,
)
from cloudkit_trio.transport._classify import _BY_EXCEPTION, scrub


def s3_error(code: str, message: str = "details") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>1</RequestId></Error>"
    ).encode()


class TestStatusClasses:
    @pytest.mark.parametrize("status", [100, 101, 200, 201, 204, 206, 299])
    def test_informational_and_success_are_not_errors(self, status: int) -> None:
        """1xx and 2xx map to no error."""
        assert error_from_response(status, {}) is None

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (400, ck.ValidationError),
            (401, ck.InvalidCredentials),
            (403, ck.InsufficientPermissions),
            (404, ck.NotFound),
            (408, ck.OperationTimeout),
            (409, ck.AlreadyExists),
            (422, ck.ValidationError),
            (429, ck.RateLimited),
            (503, ck.ServiceUnavailable),
        ],
    )
    def test_named_statuses(self, status: int, kind: type[ck.CloudError]) -> None:
        """The statuses DESIGN.md §5 names map to their branch."""
        error = error_from_response(status, {})
        assert type(error) is kind
        assert error.status_code == status

    @pytest.mark.parametrize("status", [500, 502, 504, 599])
    def test_other_5xx_are_retryable_provider_errors(self, status: int) -> None:
        """Other 5xx statuses are ProviderErrors that may be retried."""
        error = error_from_response(status, {})
        assert type(error) is ck.ProviderError
        assert error.retryable and error.status == status

    @pytest.mark.parametrize("status", [501, 505])
    def test_not_implemented_and_bad_version_are_final(self, status: int) -> None:
        """501 and 505 can never succeed on a retry."""
        error = error_from_response(status, {})
        assert type(error) is ck.ProviderError and not error.retryable

    @pytest.mark.parametrize("status", [300, 301, 304, 402, 405, 410, 418, 451, 499])
    def test_other_3xx_4xx_are_final_provider_errors(self, status: int) -> None:
        """Unexpected 3xx and other 4xx statuses are not retried."""
        error = error_from_response(status, {})
        assert type(error) is ck.ProviderError
        assert not error.retryable

    def test_reason_and_context_are_attached(self) -> None:
        """The message names the status; context keywords are attached."""
        error = error_from_response(
            404, {}, reason="Not Found", service="s3", operation="get_object"
        )
        assert error is not None
        assert error.message == "HTTP 404 Not Found"
        assert (error.service, error.operation) == ("s3", "get_object")


class TestRetryAfter:
    def test_delta_seconds(self) -> None:
        """Retry-After in seconds becomes retry_after."""
        error = error_from_response(429, {"Retry-After": "2"})
        assert isinstance(error, ck.RateLimited) and error.retry_after == 2.0

    def test_http_date(self) -> None:
        """An HTTP-date Retry-After is converted relative to now."""
        now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
        error = error_from_response(503, {"retry-after": "Thu, 01 Jan 2026 12:00:05 GMT"}, now=now)
        assert isinstance(error, ck.ServiceUnavailable) and error.retry_after == 5.0

    @pytest.mark.parametrize("raw", [None, "", "soon", "-3", "nan", "inf"])
    def test_bad_values_are_ignored(self, raw: str | None) -> None:
        """Malformed Retry-After values are ignored rather than trusted."""
        assert parse_retry_after(raw) is None

    def test_past_date_means_now(self) -> None:
        """A Retry-After date in the past means retry now."""
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0


class TestProviderCodes:
    @pytest.mark.parametrize(
        ("code", "status", "kind"),
        [
            ("NoSuchKey", 404, ck.NotFound),
            ("NoSuchBucket", 404, ck.NotFound),
            ("BucketAlreadyExists", 409, ck.AlreadyExists),
            ("AccessDenied", 403, ck.InsufficientPermissions),
            ("InvalidAccessKeyId", 403, ck.InvalidCredentials),
            ("SignatureDoesNotMatch", 403, ck.InvalidCredentials),
            ("ExpiredToken", 400, ck.ExpiredCredentials),
            ("SlowDown", 503, ck.RateLimited),
            ("Throttling", 400, ck.RateLimited),
            ("ServiceUnavailable", 503, ck.ServiceUnavailable),
            ("RequestTimeout", 400, ck.OperationTimeout),
            ("InternalError", 500, ck.ProviderError),
        ],
    )
    def test_aws_xml_codes_win_over_status(
        self, code: str, status: int, kind: type[ck.CloudError]
    ) -> None:
        """An AWS XML <Code> decides the branch, whatever the status says."""
        error = error_from_response(status, {"content-type": "application/xml"}, s3_error(code))
        assert type(error) is kind
        assert error.code == code
        assert code in error.message and "details" in error.message

    def test_aws_query_error_response_wrapper(self) -> None:
        """<ErrorResponse><Error><Code> (STS, SQS query APIs) is understood."""
        body = (
            b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
            b"<Type>Sender</Type><Code>ExpiredTokenException</Code><Message>m</Message>"
            b"</Error></ErrorResponse>"
        )
        assert type(error_from_response(400, {}, body)) is ck.ExpiredCredentials

    def test_aws_json_type(self) -> None:
        """AWS JSON protocols' __type (with a namespace) is understood."""
        body = b'{"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "m"}'
        error = error_from_response(400, {}, body)
        assert type(error) is ck.RateLimited and error.code == "ThrottlingException"

    def test_aws_error_type_header(self) -> None:
        """x-amzn-ErrorType (REST-JSON services) is understood."""
        headers = {"x-amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/"}
        assert type(error_from_response(400, headers)) is ck.NotFound

    @pytest.mark.parametrize(
        ("code", "kind"),
        [
            ("BlobNotFound", ck.NotFound),
            ("ContainerAlreadyExists", ck.AlreadyExists),
            ("AuthenticationFailed", ck.InvalidCredentials),
            ("AuthorizationFailure", ck.InsufficientPermissions),
            ("ServerBusy", ck.RateLimited),
        ],
    )
    def test_azure_header(self, code: str, kind: type[ck.CloudError]) -> None:
        """Azure's x-ms-error-code header decides the branch."""
        assert type(error_from_response(400, {"x-ms-error-code": code})) is kind

    @pytest.mark.parametrize(
        ("status_text", "kind"),
        [
            ("NOT_FOUND", ck.NotFound),
            ("ALREADY_EXISTS", ck.AlreadyExists),
            ("PERMISSION_DENIED", ck.InsufficientPermissions),
            ("UNAUTHENTICATED", ck.InvalidCredentials),
            ("RESOURCE_EXHAUSTED", ck.RateLimited),
            ("UNAVAILABLE", ck.ServiceUnavailable),
            ("INVALID_ARGUMENT", ck.ValidationError),
        ],
    )
    def test_gcp_json_status(self, status_text: str, kind: type[ck.CloudError]) -> None:
        """GCP's JSON error.status decides the branch."""
        body = f'{{"error": {{"code": 400, "message": "m", "status": "{status_text}"}}}}'.encode()
        assert type(error_from_response(400, {}, body)) is kind

    @pytest.mark.parametrize("body", [b"<not xml", b"{not json", b"plain text", b"[]", b"{}"])
    def test_unparsable_bodies_fall_back_to_status(self, body: bytes) -> None:
        """A body that is not a known error document does not break the mapping."""
        assert type(error_from_response(404, {}, body)) is ck.NotFound
        assert parse_provider_code({}, body).code is None

    def test_entity_declarations_are_refused(self) -> None:
        """An error document with a DTD is not parsed at all: no entity is ever expanded."""
        body = (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "SlowDown">]>'
            b"<Error><Code>&a;</Code></Error>"
        )
        assert parse_provider_code({}, body).code is None
        assert type(error_from_response(400, {}, body)) is ck.ValidationError

    def test_only_the_short_message_is_kept(self) -> None:
        """The body is never copied into the message: error bodies can echo signatures."""
        body = (
            b"<Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message>"
            b"<SignatureProvided>deadbeefsecretsig</SignatureProvided>"
            b"<StringToSign>AWS4-HMAC-SHA256</StringToSign></Error>"
        )
        error = error_from_response(403, {}, body)
        assert error is not None
        assert "deadbeefsecretsig" not in str(error)

    def test_long_messages_are_truncated(self) -> None:
        """Provider messages are bounded in length."""
        error = error_from_response(500, {}, s3_error("InternalError", "x" * 5000))
        assert error is not None and len(error.message) <= 300


def _httpx_exception_classes() -> list[type[Exception]]:
    return [
        obj
        for name in httpx.__all__
        if inspect.isclass(obj := getattr(httpx, name)) and issubclass(obj, Exception)
    ]


class TestExceptionMapping:
    def test_every_httpx_exception_class_is_mapped(self) -> None:
        """Each exception class httpx exports has its own entry: a new one fails here."""
        missing = [cls.__name__ for cls in _httpx_exception_classes() if cls not in _BY_EXCEPTION]
        assert missing == []

    @pytest.mark.parametrize(
        ("exc", "kind", "sent"),
        [
            (httpx.ConnectTimeout("t"), ck.ConnectError, False),
            (httpx.PoolTimeout("t"), ck.OperationTimeout, False),
            (httpx.ReadTimeout("t"), ck.OperationTimeout, True),
            (httpx.WriteTimeout("t"), ck.OperationTimeout, True),
            (httpx.ConnectError("refused"), ck.ConnectError, False),
            (httpx.ReadError("reset"), ck.ConnectionReset, True),
            (httpx.WriteError("reset"), ck.ConnectionReset, True),
            (httpx.CloseError("x"), ck.ConnectionReset, True),
            (httpx.RemoteProtocolError("garbage"), ck.ProtocolError, True),
            (httpx.LocalProtocolError("bad header"), ck.ValidationError, True),
            (httpx.ProxyError("x"), ck.ConnectError, False),
            (httpx.UnsupportedProtocol("ftp"), ck.ConfigError, True),
            (httpx.DecodingError("gzip"), ck.SerializationError, True),
            (httpx.TooManyRedirects("x"), ck.ProviderError, True),
            (httpx.InvalidURL("x"), ck.ConfigError, True),
            (httpx.StreamConsumed(), ck.InternalError, True),
        ],
    )
    def test_classes(self, exc: Exception, kind: type[ck.CloudError], sent: bool) -> None:
        """Each httpx failure becomes the matching branch, with request_sent right."""
        error = error_from_exception(exc, endpoint="http://127.0.0.1:1")
        assert type(error) is kind
        assert error.request_sent is sent
        assert error.endpoint == "http://127.0.0.1:1"

    @pytest.mark.parametrize(
        ("cause", "kind"),
        [
            (socket.gaierror(-2, "Name or service not known"), ck.DNSError),
            (ssl.SSLCertVerificationError("bad cert"), ck.TLSError),
        ],
    )
    def test_dns_and_tls_causes_are_told_apart(
        self, cause: OSError, kind: type[ck.CloudError]
    ) -> None:
        """A ConnectError caused by DNS or TLS failures maps to DNSError or TLSError."""
        exc = httpx.ConnectError(str(cause))
        exc.__cause__ = cause
        assert type(error_from_exception(exc)) is kind

    def test_status_error_uses_the_response(self) -> None:
        """HTTPStatusError maps through the response mapping."""
        request = httpx.Request("GET", "http://127.0.0.1/")
        response = httpx.Response(429, headers={"Retry-After": "3"}, request=request)
        exc = httpx.HTTPStatusError("429", request=request, response=response)
        error = error_from_exception(exc)
        assert isinstance(error, ck.RateLimited) and error.retry_after == 3.0

    def test_cloud_errors_pass_through(self) -> None:
        """A CloudError raised by a custom transport passes through with context added."""
        original = ck.ServiceUnavailable("down")
        assert error_from_exception(original, service="s3") is original
        assert original.service == "s3"

    def test_foreign_exceptions_are_internal_errors(self) -> None:
        """Anything else is an InternalError, never an unclassified crash."""
        assert type(error_from_exception(RuntimeError("bug"))) is ck.InternalError

    def test_signatures_are_scrubbed_from_messages(self) -> None:
        """Presigned-URL signatures and tokens never reach a message."""
        exc = httpx.ConnectError(
            "failed for http://h/k?X-Amz-Signature=abc123&X-Amz-Security-Token=tok&x=1"
        )
        text = str(error_from_exception(exc))
        assert "abc123" not in text and "tok&" not in text and "x=1" in text
        assert scrub("sig=zzz") == "sig=***"


class TestOverRealSockets:
    async def test_refused_connection_maps_to_connect_error(self) -> None:
        """A real refused TCP connect on loopback becomes ConnectError (request never sent)."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nothing listens there now
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(f"http://127.0.0.1:{port}/")
        error = error_from_exception(info.value)
        assert isinstance(error, ck.ConnectError) and not error.request_sent

    async def test_real_503_with_retry_after(self) -> None:
        """A real server's 503 with Retry-After and an XML code maps to the right error."""
        body = s3_error("SlowDown", "Please reduce your request rate.")

        async def handler(stream: trio.SocketStream) -> None:
            await stream.receive_some(65536)
            head = (
                f"HTTP/1.1 503 Slow Down\r\nRetry-After: 4\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            await stream.send_all(head + body)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/bucket/key")
            nursery.cancel_scope.cancel()
        error = error_from_response(
            response.status_code, response.headers, response.content,
            reason=response.reason_phrase,
        )  # fmt: skip
        assert isinstance(error, ck.RateLimited)
        assert error.retry_after == 4.0 and error.code == "SlowDown"
