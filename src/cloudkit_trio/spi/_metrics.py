"""The MetricsCollector SPI: what an operation cost and how it ended."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import attrs

from .._masking import escape_controls, mask_text
from .._provider import ProviderType
from ._logger import Logger, LogLevel, StdlibLogger

__all__ = [
    "LoggingMetrics",
    "MetricsCollector",
    "NoopMetrics",
    "OperationMetrics",
    "OperationOutcome",
    "Tags",
]

#: Metric tags: label names to label values. Keep the set of values bounded.
Tags = Mapping[str, str]


class OperationOutcome(enum.Enum):
    """How an operation ended; the value is the lowercase label (``"success"``).

    ``RETRY`` marks an attempt that failed and was retried; the final record of an
    operation is ``SUCCESS``, ``FAILURE``, or ``RETRY_SUPPRESSED`` (a failure whose retry
    the endpoint's retry budget refused).

    .. versionadded:: 0.1.0
    """

    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"
    #: Failed, and the endpoint's retry budget refused the retry the policy wanted: the
    #: error is the last attempt's. (.. versionadded:: 0.2.0)
    RETRY_SUPPRESSED = "retry_suppressed"

    def __str__(self) -> str:
        return self.value


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"OperationMetrics.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class OperationMetrics:
    """One finished operation, as the runtime reports it to collectors.

    ``duration`` covers every attempt and backoff sleep, in seconds; ``retry_count`` is the
    number of attempts after the first. ``status_code`` and ``error_code`` describe the
    last attempt (``error_code`` is the error class name or the provider's code).

    .. versionadded:: 0.1.0
    """

    provider: ProviderType
    service: str
    operation: str
    duration: float = attrs.field(validator=_non_negative)
    outcome: OperationOutcome
    retry_count: int = 0
    status_code: int | None = None
    error_code: str | None = None
    endpoint: str | None = None
    bytes_transferred: int | None = None

    @property
    def attempts(self) -> int:
        """All attempts made, the first included."""
        return self.retry_count + 1


@runtime_checkable
class MetricsCollector(Protocol):
    """Receives what the runtime measured. Called from the metrics aggregator, never from an
    operation's own task, so a slow collector cannot slow operations down.

    .. versionadded:: 0.1.0
    """

    async def record(self, metrics: OperationMetrics) -> None:
        """Record one finished operation."""
        ...

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        """Add ``value`` to the counter ``name``."""
        ...

    async def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""
        ...

    async def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Observe ``value`` in the histogram ``name``."""
        ...


class NoopMetrics(MetricsCollector):
    """Discards everything (the default collector).

    .. versionadded:: 0.1.0
    """

    async def record(self, metrics: OperationMetrics) -> None:
        return None

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        return None

    async def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        return None

    async def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        return None

    def __repr__(self) -> str:
        return "NoopMetrics()"


class LoggingMetrics(MetricsCollector):
    """Writes metrics as log lines through a :class:`~cloudkit_trio.spi.Logger`.

    Operations are logged at INFO as ``[aws] s3.put_object completed in 150ms (success)``
    with the figures also as fields; counters, gauges and histograms at DEBUG. The
    provider's error code is masked and, like the names in the line, has its control
    characters escaped: a code from a hostile server cannot forge a line, whatever the
    logger.

    .. versionadded:: 0.1.0
    """

    def __init__(self, logger: Logger | None = None) -> None:
        self.logger: Logger = logger if logger is not None else StdlibLogger()

    async def record(self, metrics: OperationMetrics) -> None:
        if not self.logger.is_enabled(LogLevel.INFO):
            return
        millis = round(metrics.duration * 1000)
        service, operation = escape_controls(metrics.service), escape_controls(metrics.operation)
        code = metrics.error_code
        self.logger.info(
            f"[{metrics.provider}] {service}.{operation} "
            f"completed in {millis}ms ({metrics.outcome})",
            provider=str(metrics.provider),
            service=service,
            operation=operation,
            duration_ms=millis,
            outcome=str(metrics.outcome),
            retry_count=metrics.retry_count,
            status_code=metrics.status_code,
            error_code=escape_controls(mask_text(code)) if code else code,
        )

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        self.logger.debug("counter incremented", counter=name, value=value, tags=dict(tags or {}))

    async def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        self.logger.debug("gauge recorded", gauge=name, value=value, tags=dict(tags or {}))

    async def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        self.logger.debug("histogram recorded", histogram=name, value=value, tags=dict(tags or {}))

    def __repr__(self) -> str:
        return f"LoggingMetrics({self.logger!r})"
