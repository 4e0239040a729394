"""The public surface is deliberate: these tests pin it."""

from __future__ import annotations

import importlib
import inspect

import pytest

import cloudkit_trio as ck

PUBLIC_MODULES = [
    "cloudkit_trio",
    "cloudkit_trio.actors",
    "cloudkit_trio.aws",
    "cloudkit_trio.demo",
    "cloudkit_trio.redis",
    "cloudkit_trio.runtime",
    "cloudkit_trio.spi",
    "cloudkit_trio.testing",
    "cloudkit_trio.tracing",
    "cloudkit_trio.transport",
]

EXPECTED_TOP_LEVEL = {
    "AlreadyExists", "AuthError", "AuthProvider", "ChainAuthProvider", "CircuitBreaker",
    "CircuitOpenError", "CloudConfig", "CloudError", "ConfigError", "ConnectError",
    "ConnectionReset", "ContextClosed", "Credentials", "DNSError", "DO_NOT_RETRY",
    "EnvAuthProvider", "ExpiredCredentials", "ExponentialBackoff", "FixedDelay",
    "InsufficientPermissions", "InternalError", "InvalidCredentials", "Jitter", "LogEntry",
    "LogLevel", "Logger", "LoggingMetrics", "MetricsCollector", "MissingCredentials",
    "NetworkError", "NoRetry", "NoopLogger", "NoopMetrics", "NotFound", "OperationMetrics",
    "OperationOutcome", "OperationTimeout", "Overloaded", "ProtocolError", "ProviderError",
    "PrometheusMetrics", "ProviderType", "RateLimited", "Region", "ResponseTooLarge", "Retry",
    "RetryDecision", "RetryPolicy",
    "SerializationError", "ServiceUnavailable", "StaticAuthProvider", "StdlibLogger",
    "StructuredLogger", "TLSError", "TokenRefreshFailed", "ValidationError",
}  # fmt: skip


class TestExports:
    @pytest.mark.parametrize("module_name", PUBLIC_MODULES)
    def test_all_is_sorted_and_resolvable(self, module_name: str) -> None:
        """Every public module has a sorted __all__ whose names all exist."""
        module = importlib.import_module(module_name)
        assert module.__all__ == sorted(module.__all__)
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name

    def test_top_level_names_include_the_contract(self) -> None:
        """The names DESIGN.md §4 promises are exported from the package root."""
        assert set(ck.__all__) >= EXPECTED_TOP_LEVEL

    def test_spi_names_are_reexported_at_top_level(self) -> None:
        """Everything in cloudkit_trio.spi is also importable from cloudkit_trio."""
        import cloudkit_trio.spi as spi

        missing = {n for n in spi.__all__ if n not in ck.__all__}
        # Type-only helpers stay in the spi namespace.
        assert missing <= {"ConcurrencyAlgorithm", "RandomSource", "Tags"}

    @pytest.mark.parametrize("module_name", PUBLIC_MODULES)
    def test_classes_report_their_public_module(self, module_name: str) -> None:
        """Re-exported classes say where users import them from, not the private module."""
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert not obj.__module__.split(".")[-1].startswith("_"), (name, obj.__module__)

    def test_version_comes_from_the_distribution(self) -> None:
        """__version__ is the installed distribution's version."""
        from importlib.metadata import version

        assert ck.__version__ == version("cloudkit-trio")

    def test_unknown_attribute_raises(self) -> None:
        """A missing attribute is an AttributeError, not something silently built."""
        with pytest.raises(AttributeError):
            _ = ck.does_not_exist  # type: ignore[attr-defined]
