"""The four extension points (SPIs) and their built-in implementations.

Implement a :class:`AuthProvider`, :class:`RetryPolicy`, :class:`MetricsCollector` or
:class:`Logger` and hand it to :meth:`cloudkit_trio.CloudContext.builder`. Everything here
is also exported from :mod:`cloudkit_trio` itself.
"""

from .._exports import publish
from ._admission import AdaptiveConcurrency, ConcurrencyAlgorithm, RateLimit, RetryBudget
from ._auth import AuthProvider, ChainAuthProvider, EnvAuthProvider, StaticAuthProvider
from ._breaker import CircuitBreaker
from ._logger import LogEntry, Logger, LogLevel, NoopLogger, StdlibLogger, StructuredLogger
from ._metrics import (
    LoggingMetrics,
    MetricsCollector,
    NoopMetrics,
    OperationMetrics,
    OperationOutcome,
    Tags,
)
from ._prometheus import PrometheusMetrics
from ._retry import (
    DO_NOT_RETRY,
    ExponentialBackoff,
    FixedDelay,
    Jitter,
    NoRetry,
    RandomSource,
    Retry,
    RetryDecision,
    RetryPolicy,
)
from ._shared_state import (
    ForcedState,
    Lease,
    SharedState,
    SharedStateUnavailable,
    SharedView,
)

__all__ = [
    "AdaptiveConcurrency",
    "AuthProvider",
    "ChainAuthProvider",
    "CircuitBreaker",
    "ConcurrencyAlgorithm",
    "DO_NOT_RETRY",
    "EnvAuthProvider",
    "ExponentialBackoff",
    "FixedDelay",
    "ForcedState",
    "Jitter",
    "Lease",
    "LogEntry",
    "LogLevel",
    "Logger",
    "LoggingMetrics",
    "MetricsCollector",
    "NoRetry",
    "NoopLogger",
    "NoopMetrics",
    "OperationMetrics",
    "OperationOutcome",
    "PrometheusMetrics",
    "RandomSource",
    "RateLimit",
    "Retry",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "SharedState",
    "SharedStateUnavailable",
    "SharedView",
    "StaticAuthProvider",
    "StdlibLogger",
    "StructuredLogger",
    "Tags",
]

publish(__name__, globals(), __all__)
