"""The error tree: construction, context, retryability and rendering."""

from __future__ import annotations

import pickle

import pytest

import cloudkit_trio as ck

ALL_ERRORS = [
    getattr(ck, name)
    for name in ck.__all__
    if isinstance(getattr(ck, name), type) and issubclass(getattr(ck, name), ck.CloudError)
]

RETRYABLE = {
    ck.NetworkError, ck.ConnectError, ck.DNSError, ck.TLSError, ck.ConnectionReset,
    ck.ProtocolError, ck.RateLimited, ck.ServiceUnavailable, ck.OperationTimeout,
}  # fmt: skip


class TestTree:
    def test_every_branch_the_design_names_exists(self) -> None:
        """Each error class of DESIGN.md §5 exists and derives from CloudError."""
        names = [
            "AuthError", "MissingCredentials", "InvalidCredentials", "ExpiredCredentials",
            "InsufficientPermissions", "TokenRefreshFailed", "NetworkError", "NotFound",
            "AlreadyExists", "ValidationError", "RateLimited", "ServiceUnavailable",
            "OperationTimeout", "ProviderError", "ConfigError", "SerializationError",
            "InternalError", "CircuitOpenError", "Overloaded", "ContextClosed",
        ]  # fmt: skip
        for name in names:
            assert issubclass(getattr(ck, name), ck.CloudError), name

    def test_auth_and_network_branches(self) -> None:
        """Auth and network sub-errors sit under their branch."""
        for cls in (ck.MissingCredentials, ck.InvalidCredentials, ck.ExpiredCredentials,
                    ck.InsufficientPermissions, ck.TokenRefreshFailed):  # fmt: skip
            assert issubclass(cls, ck.AuthError)
        for cls in (ck.ConnectError, ck.DNSError, ck.TLSError, ck.ConnectionReset,
                    ck.ProtocolError):  # fmt: skip
            assert issubclass(cls, ck.NetworkError)

    @pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
    def test_built_from_a_message_alone(self, cls: type[ck.CloudError]) -> None:
        """Every error can be built from a message alone (DESIGN.md §4.1)."""
        error = cls("something happened")
        assert str(error) == "something happened"
        assert error.message == "something happened"
        assert error.provider is None and error.endpoint is None

    @pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
    def test_retryable_matches_the_design(self, cls: type[ck.CloudError]) -> None:
        """Only network errors, timeouts, 429 and 503 are retryable without a status."""
        assert cls("x").retryable is (cls in RETRYABLE)

    def test_config_error_is_a_value_error(self) -> None:
        """Bad arguments raise an error that is also the builtin it resembles."""
        assert issubclass(ck.ConfigError, ValueError)


class TestContext:
    def test_keywords_are_kept_and_rendered(self) -> None:
        """Context given as keywords is stored and shown by str()."""
        error = ck.ServiceUnavailable(
            "down", provider="aws", service="s3", operation="put_object",
            endpoint="http://127.0.0.1:9000", attempt=2, retry_after=1.5,
        )  # fmt: skip
        assert error.service == "s3" and error.attempt == 2
        assert str(error) == (
            "down (provider=aws, service=s3, operation=put_object, "
            "endpoint=http://127.0.0.1:9000, attempt=2, retry_after=1.5s)"
        )

    def test_add_context_fills_only_unknown_fields(self) -> None:
        """add_context never overwrites what the raiser already knew."""
        error = ck.NotFound("gone", service="s3")
        error.add_context(service="sqs", operation="get_object", endpoint="http://h:1")
        assert error.service == "s3"
        assert error.operation == "get_object"
        assert error.endpoint == "http://h:1"

    def test_repr_names_the_class(self) -> None:
        """repr() shows the class and the rendered message."""
        assert repr(ck.Overloaded("full")) == "Overloaded('full')"

    @pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
    def test_pickle_round_trip_keeps_context(self, cls: type[ck.CloudError]) -> None:
        """Errors survive pickling with their context (for multiprocess logging)."""
        error = cls("boom", service="s3")
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls
        assert copy.message == "boom" and copy.service == "s3"


class TestBranches:
    def test_rate_limited_retry_after(self) -> None:
        """RateLimited carries retry_after as seconds or None."""
        assert ck.RateLimited("slow down", retry_after=2.0).retry_after == 2.0
        assert ck.RateLimited("slow down").retry_after is None

    def test_negative_retry_after_is_rejected(self) -> None:
        """A negative retry_after is a programming error."""
        with pytest.raises(ValueError, match="retry_after"):
            ck.RateLimited("slow down", retry_after=-1)

    @pytest.mark.parametrize(
        ("status", "retryable"),
        [(None, False), (400, False), (499, False), (500, True), (599, True)],
    )
    def test_provider_error_retryable_by_status(self, status: int | None, retryable: bool) -> None:
        """ProviderError is retryable exactly for 5xx statuses."""
        error = ck.ProviderError("boom", status=status, code="InternalError")
        assert error.retryable is retryable
        assert error.status == status == error.status_code
        assert error.code == "InternalError"

    def test_provider_error_renders_status_and_code(self) -> None:
        """str() of ProviderError shows the status and the provider's code."""
        assert str(ck.ProviderError("boom", status=500, code="InternalError")) == (
            "boom (status=500, code=InternalError)"
        )

    def test_request_sent_marks_safe_retries(self) -> None:
        """Errors raised before the request left say so; others assume it was sent."""
        assert not ck.ConnectError("x").request_sent
        assert not ck.DNSError("x").request_sent
        assert not ck.TLSError("x").request_sent
        assert not ck.CircuitOpenError("x").request_sent
        assert ck.ConnectionReset("x").request_sent
        assert ck.OperationTimeout("x").request_sent
        assert not ck.OperationTimeout("x", request_sent=False).request_sent

    def test_not_found_resource(self) -> None:
        """NotFound and AlreadyExists carry the resource they are about."""
        error = ck.NotFound("no such key", resource_type="object", resource_id="b/k")
        assert (error.resource_type, error.resource_id) == ("object", "b/k")
        exists = ck.AlreadyExists("taken", resource_type="bucket", resource_id="b")
        assert exists.resource_id == "b"

    def test_circuit_open_carries_retry_at(self) -> None:
        """CircuitOpenError tells when the breaker admits a probe."""
        assert ck.CircuitOpenError("open", retry_at=12.5, endpoint="http://h:1").retry_at == 12.5
