"""Hostile or broken input on Operation and CloudConfig: typed errors only, and no secret shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import h11
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cloudkit_trio as ck
from cloudkit_trio._config import redact_url
from cloudkit_trio._masking import mask_url
from cloudkit_trio._operation import endpoint_of
from cloudkit_trio.runtime._targets import Targets

_T = TypeVar("_T")

ENDPOINT = "http://127.0.0.1:9000"
SIGNATURE = "f00dfeedcafe1234"
TOKEN = "SESSIONTOKEN9876"
PRESIGNED = (
    "https://bucket.s3.amazonaws.com/key?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Signature={SIGNATURE}&X-Amz-Security-Token={TOKEN}"
)


def operation(**kw: Any) -> ck.Operation:
    kw.setdefault("service", "s3")
    kw.setdefault("name", "get_object")
    if "url" not in kw:
        kw.setdefault("path", "/bucket/key")
    return ck.Operation(**kw)


def config_error(**kw: Any) -> ck.ConfigError:
    with pytest.raises(ck.ConfigError) as info:
        operation(**kw)
    return info.value


def refused_or_built(factory: Callable[..., _T], **kw: Any) -> _T | ck.ConfigError:
    """What ``factory(**kw)`` builds, or the ConfigError it raises (any other error escapes)."""
    try:
        return factory(**kw)
    except ck.ConfigError as error:
        return error


def assert_sendable(op: ck.Operation) -> None:
    """The operation builds an httpx request, and h11 would put it on the wire."""
    targets = Targets(ENDPOINT, {"connect": 1.0, "read": 1.0, "write": 1.0, "pool": 1.0})
    url, target = targets.resolve(op)
    endpoint_of(url)
    request = targets.request(op, target)
    h11.Request(
        method=request.method,
        target=request.url.raw_path,
        headers=list(request.headers.raw),
    )


class TestUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "http://host/a\r\nb",
            "http://host/a\tb",
            "http://host/a\x00b",
            "http://host:99999/",
            "http://host:0/",
            "http://host:-1/",
            "http://host:port/",
            "http://[::1/",
            "http://[not-ipv6]/",
            "http://host/\ud800",
            "ftp://host/",
            "/relative",
            "http:///no-host",
        ],
    )
    def test_bad_urls_are_config_errors_naming_the_field(self, url: str) -> None:
        """CR/LF/TAB, bad ports, malformed IPv6 and lone surrogates are ConfigError(field='url')."""
        error = config_error(url=url)
        assert error.field == "url"
        assert isinstance(error, ValueError)
        assert "Operation.url" in str(error)

    def test_user_info_is_refused_and_the_password_never_shown(self) -> None:
        """http://user:pw@host/ is refused like CloudConfig refuses it; the password is masked."""
        error = config_error(url="http://user:hunter2@host/")
        assert error.field == "url"
        assert "user-info" in str(error)
        assert "hunter2" not in str(error) and "hunter2" not in repr(error.value)

    def test_a_refused_url_does_not_echo_its_signature_or_token(self) -> None:
        """A presigned URL refused for another reason shows neither signature nor token."""
        for url in (PRESIGNED.replace("https", "ftp", 1), PRESIGNED.replace("/key", "/k\ney")):
            error = config_error(url=url)
            for secret in (SIGNATURE, TOKEN):
                assert secret not in str(error) and secret not in repr(error.value)

    def test_paths_with_control_characters_or_a_scheme_are_refused(self) -> None:
        """A path with CR/LF, NUL, a lone surrogate or a scheme is ConfigError(field='path')."""
        for path in ("/a\r\nHost: evil", "/a\x00", "/\udcff", "http://evil/"):
            assert config_error(path=path).field == "path"


class TestHeadersAndParams:
    @pytest.mark.parametrize("value", [["ab"], [("a", "b")], "ab", 5, b"a=b"])
    @pytest.mark.parametrize("field", ["headers", "params"])
    def test_non_mappings_are_refused(self, field: str, value: object) -> None:
        """Only mappings are accepted: headers=['ab'] no longer becomes {'a': 'b'}."""
        error = config_error(**{field: value})
        assert error.field == field
        assert "mapping" in str(error)

    @pytest.mark.parametrize(
        "headers",
        [
            {"é": "x"},
            {"": "x"},
            {"Bad Name": "x"},
            {"x\r\nInjected": "x"},
            {1: "x"},
            {"x": 1},
            {"x": None},
        ],
    )
    def test_bad_header_names_and_types_are_refused(self, headers: dict[Any, Any]) -> None:
        """Header names must be tokens and values str."""
        assert config_error(headers=headers).field == "headers"

    @pytest.mark.parametrize("value", ["é", "a\r\nb", "a\x00", " leading", "trailing ", "\ud800"])
    def test_bad_header_values_are_refused_without_quoting_them(self, value: str) -> None:
        """Non-ASCII, CR/LF, NUL or edge whitespace in a value: ConfigError naming the header."""
        error = config_error(headers={"Authorization": f"{value}s3cr3t{value}"})
        assert error.field == "headers"
        assert "Authorization" in str(error)
        assert "s3cr3t" not in str(error) and "s3cr3t" not in repr(error.value)

    def test_a_whole_header_line_as_a_name_does_not_leak_its_token(self) -> None:
        """A name such as 'Authorization: Bearer x' is refused and shown masked."""
        error = config_error(headers={"Authorization: Bearer s3cr3ttoken": "x"})
        assert "s3cr3ttoken" not in str(error) and "s3cr3ttoken" not in repr(error.value)

    @pytest.mark.parametrize("params", [{"a": 1}, {1: "a"}, {"a": "\ud800"}, {"\udfff": "a"}])
    def test_bad_params_are_refused(self, params: dict[Any, Any]) -> None:
        """Parameters are str to str that UTF-8 can encode."""
        assert config_error(params=params).field == "params"

    def test_good_headers_and_params_are_sent_as_given(self) -> None:
        """Tabs inside values, any Unicode in params and empty values are fine."""
        op = operation(headers={"X-A": "a\tb", "X-Empty": ""}, params={"q": "ü ß\n", "e": ""})
        assert_sendable(op)


class TestOtherFields:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("method", "ß"),
            ("method", "GE T"),
            ("method", 1),
            ("service", ""),
            ("name", None),
            ("body", "text"),
            ("timeout", -1),
            ("timeout", "1"),
            ("idempotent", "yes"),
            ("idempotent", 1),
        ],
    )
    def test_bad_values_are_config_errors_naming_the_field(self, field: str, value: object) -> None:
        """Every bad value of every field is a ConfigError naming it."""
        assert config_error(**{field: value}).field == field


class TestReprs:
    def test_operation_repr_masks_a_presigned_url(self) -> None:
        """The repr of an Operation for a presigned URL shows neither signature nor token."""
        text = repr(operation(url=PRESIGNED))
        assert SIGNATURE not in text and TOKEN not in text
        assert "X-Amz-Signature=***" in text and "bucket.s3.amazonaws.com" in text

    def test_operation_repr_masks_secret_params_and_path_queries(self) -> None:
        """Secret query parameters are masked whether given as params= or in path=."""
        text = repr(operation(path=f"/k?X-Amz-Signature={SIGNATURE}", params={"token": TOKEN}))
        assert SIGNATURE not in text and TOKEN not in text

    @pytest.mark.parametrize(
        "name",
        [
            "Authorization",
            "X-Api-Key",
            "X-Auth-Token",
            "x-amz-server-side-encryption-customer-key",
            "X-Amz-Copy-Source-Server-Side-Encryption-Customer-Key",
            "X-Amz-Security-Token",
            "Cookie",
        ],
    )
    def test_operation_repr_masks_every_secret_header(self, name: str) -> None:
        """API keys, auth tokens and S3 customer keys are masked like Authorization."""
        text = repr(operation(headers={name: "hunter2hunter2", "X-Plain": "visible"}))
        assert "hunter2hunter2" not in text and "visible" in text

    def test_response_repr_masks_a_presigned_url(self) -> None:
        """A Response to a presigned URL does not show its signature or token."""
        response = ck.Response(200, httpx.Headers(), b"", PRESIGNED)
        text = repr(response)
        assert SIGNATURE not in text and TOKEN not in text


class TestConfigEndpoint:
    def test_a_refused_endpoint_does_not_echo_its_signature(self) -> None:
        """An endpoint refused for its query shows the query masked."""
        with pytest.raises(ck.ConfigError) as info:
            ck.CloudConfig(endpoint=f"https://host/?X-Amz-Signature={SIGNATURE}")
        assert info.value.field == "endpoint"
        assert SIGNATURE not in str(info.value) and SIGNATURE not in repr(info.value.value)

    @pytest.mark.parametrize(
        "endpoint", ["http://host/\r\n", "http://host:99999", "http://[::1", "http://host:0"]
    )
    def test_endpoints_are_validated_like_operation_urls(self, endpoint: str) -> None:
        """Control characters, bad ports and malformed IPv6 are ConfigError(field='endpoint')."""
        with pytest.raises(ck.ConfigError) as info:
            ck.CloudConfig(endpoint=endpoint)
        assert info.value.field == "endpoint"

    def test_redact_url_is_mask_url(self) -> None:
        """One definition of URL masking: redact_url masks what mask_url masks."""
        for url in (PRESIGNED, "http://user:pw@host:1/", "http://host/"):
            assert redact_url(url) == mask_url(url)


# Pieces that make URLs interesting: schemes, hosts (IPv6, IDNA, junk), ports, paths, queries.
_SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp", "", "http:"])
_HOSTS = st.one_of(
    st.sampled_from(["host", "127.0.0.1", "[::1]", "[::1", "::1", "xn--a", "ä.example", ""]),
    st.text(max_size=12),
)
_PORTS = st.one_of(
    st.just(""), st.integers(-5, 70000).map(lambda n: f":{n}"), st.text(max_size=5).map(":".__add__)
)
_TAILS = st.text(max_size=20)
_URLS = st.one_of(
    st.text(max_size=40),
    st.builds(lambda s, h, p, t: f"{s}://{h}{p}/{t}", _SCHEMES, _HOSTS, _PORTS, _TAILS),
    st.builds(lambda u, h, t: f"http://{u}@{h}/{t}", st.text(max_size=8), _HOSTS, _TAILS),
)
_STRINGS = st.text(max_size=12)
_MAPPINGS = st.one_of(
    st.none(),
    st.dictionaries(_STRINGS, _STRINGS, max_size=3),
    st.dictionaries(st.one_of(_STRINGS, st.integers()), st.one_of(_STRINGS, st.none()), max_size=2),
    st.lists(_STRINGS, max_size=3),
    _STRINGS,
    st.integers(),
)
_ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _STRINGS, st.binary())


class TestFuzz:
    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(
        target=st.one_of(
            _URLS.map(lambda url: {"url": url}), _STRINGS.map(lambda path: {"path": path})
        ),
        method=st.one_of(st.sampled_from(["GET", "put", "PATCH"]), _STRINGS, _ANYTHING),
        headers=_MAPPINGS,
        params=_MAPPINGS,
        body=st.one_of(st.binary(max_size=8), _ANYTHING),
        timeout=st.one_of(st.none(), st.floats(), st.integers(-2, 5), _ANYTHING),
        idempotent=st.one_of(st.none(), st.booleans(), _ANYTHING),
    )
    @example(
        target={"url": "http://h/a\r\nb"}, method="GET", headers=["ab"], params=None,
        body=b"", timeout=None, idempotent=None,
    )  # fmt: skip
    def test_operation_refuses_with_config_error_or_is_sendable(
        self,
        target: dict[str, Any],
        method: Any,
        headers: Any,
        params: Any,
        body: Any,
        timeout: Any,
        idempotent: Any,
    ) -> None:
        """Any input either raises ConfigError naming a field, or builds a request h11 can send."""
        op = refused_or_built(
            ck.Operation,
            service="s3",
            name="op",
            method=method,
            headers=headers,
            params=params,
            body=body,
            timeout=timeout,
            idempotent=idempotent,
            **target,
        )
        if isinstance(op, ck.ConfigError):
            fields = {*target, "method", "headers", "params", "body", "timeout", "idempotent"}
            assert op.field in fields
            return
        repr(op)
        assert_sendable(op)

    @given(endpoint=st.one_of(_URLS, _ANYTHING), path=_STRINGS)
    def test_config_endpoint_refuses_with_config_error_or_is_usable(
        self, endpoint: Any, path: str
    ) -> None:
        """Any endpoint either raises ConfigError(field='endpoint') or resolves operations."""
        config = refused_or_built(ck.CloudConfig, endpoint=endpoint)
        if isinstance(config, ck.ConfigError):
            assert config.field == "endpoint"
            return
        op = refused_or_built(operation, path=path)
        if config.endpoint is None or isinstance(op, ck.ConfigError):
            return
        targets = Targets(config.endpoint, {})
        targets.request(op, targets.resolve(op)[1])


class TestStreamingRepr:
    def test_a_presigned_url_is_masked(self) -> None:
        """A StreamingResponse's repr masks a presigned URL's signature and token."""
        import httpx

        from cloudkit_trio._streaming import StreamingResponse

        async def guard(read):  # type: ignore[no-untyped-def]
            return await read

        url = "https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok123"
        response = StreamingResponse._create(
            httpx.Response(200, content=b""),
            url=url,
            attempts=1,
            elapsed=0.0,
            guard=guard,
            max_size=1,
        )
        shown = repr(response)
        assert "deadbeef" not in shown and "tok123" not in shown and "X-Amz-Signature" in shown
