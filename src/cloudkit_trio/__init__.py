"""cloudkit_trio: a resilience runtime for Trio applications that call cloud HTTP APIs.

Everything a user needs is importable from here: the error tree, configuration, the four
extension points (also in :mod:`cloudkit_trio.spi`) and the context that runs them.
"""

from ._config import CloudConfig
from ._context import (
    Cloud,
    CloudContext,
    CloudContextBuilder,
    CloudSnapshot,
    CloudStatistics,
    ContextState,
    SubmissionChannel,
)
from ._credentials import Credentials
from ._errors import (
    AlreadyExists,
    AuthError,
    CircuitFailure,
    CircuitOpenError,
    CloudError,
    ConfigError,
    ConnectError,
    ConnectionReset,
    ContextClosed,
    DNSError,
    ExpiredCredentials,
    InsufficientPermissions,
    InternalError,
    InvalidCredentials,
    MissingCredentials,
    NetworkError,
    NotFound,
    OperationTimeout,
    Overloaded,
    ProtocolError,
    ProviderError,
    RateLimited,
    ResponseTooLarge,
    SerializationError,
    ServiceUnavailable,
    Throttled,
    TLSError,
    TokenRefreshFailed,
    ValidationError,
)
from ._exports import publish
from ._exposition import serve_metrics
from ._operation import Operation, Response
from ._provider import ProviderType, Region
from ._streaming import StreamingResponse
from ._submission import Reply, Submission
from .runtime import BreakerState
from .spi import (
    DO_NOT_RETRY,
    AdaptiveConcurrency,
    AuthProvider,
    ChainAuthProvider,
    CircuitBreaker,
    EnvAuthProvider,
    ExponentialBackoff,
    FixedDelay,
    ForcedState,
    Jitter,
    Lease,
    LogEntry,
    Logger,
    LoggingMetrics,
    LogLevel,
    MetricsCollector,
    NoopLogger,
    NoopMetrics,
    NoRetry,
    OperationMetrics,
    OperationOutcome,
    PrometheusMetrics,
    RateLimit,
    Retry,
    RetryBudget,
    RetryDecision,
    RetryPolicy,
    SharedState,
    SharedStateUnavailable,
    StaticAuthProvider,
    StdlibLogger,
    StructuredLogger,
)

__all__ = [
    "AdaptiveConcurrency",
    "AlreadyExists",
    "AuthError",
    "AuthProvider",
    "BreakerState",
    "ChainAuthProvider",
    "CircuitBreaker",
    "CircuitFailure",
    "CircuitOpenError",
    "Cloud",
    "CloudConfig",
    "CloudContext",
    "CloudContextBuilder",
    "CloudError",
    "CloudSnapshot",
    "CloudStatistics",
    "ConfigError",
    "ConnectError",
    "ConnectionReset",
    "ContextClosed",
    "ContextState",
    "Credentials",
    "DNSError",
    "DO_NOT_RETRY",
    "EnvAuthProvider",
    "ExpiredCredentials",
    "ExponentialBackoff",
    "FixedDelay",
    "ForcedState",
    "InsufficientPermissions",
    "InternalError",
    "InvalidCredentials",
    "Jitter",
    "Lease",
    "LogEntry",
    "LogLevel",
    "Logger",
    "LoggingMetrics",
    "MetricsCollector",
    "MissingCredentials",
    "NetworkError",
    "NoRetry",
    "NoopLogger",
    "NoopMetrics",
    "NotFound",
    "Operation",
    "OperationMetrics",
    "OperationOutcome",
    "OperationTimeout",
    "Overloaded",
    "PrometheusMetrics",
    "ProtocolError",
    "ProviderError",
    "ProviderType",
    "RateLimit",
    "RateLimited",
    "Region",
    "Reply",
    "Response",
    "ResponseTooLarge",
    "Retry",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "SerializationError",
    "ServiceUnavailable",
    "SharedState",
    "SharedStateUnavailable",
    "StaticAuthProvider",
    "StdlibLogger",
    "StreamingResponse",
    "StructuredLogger",
    "Submission",
    "SubmissionChannel",
    "TLSError",
    "Throttled",
    "TokenRefreshFailed",
    "ValidationError",
    "serve_metrics",
]


def __getattr__(name: str) -> str:
    # The version comes from the installed distribution, so it has one source of truth.
    if name == "__version__":
        from importlib.metadata import version

        return version("cloudkit-trio")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


publish(__name__, globals(), __all__)
