"""What the runtime reports: one place that turns runtime happenings into logs and metrics.

Every runtime actor reports through :class:`RuntimeEvents`, which writes a log line (only
when its level is on) and hands a metric event to the aggregator without ever blocking.
What came from outside (an endpoint URL, a provider's error code, a credential source's
error) is masked here, before any logger or collector sees it; the sinks mask again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from .._masking import mask_text, mask_url
from .._provider import ProviderType
from ..spi import LogEntry, Logger, LogLevel, OperationMetrics, Tags

__all__ = ["Counter", "Gauge", "Histogram", "MetricEvent", "RuntimeEvents", "RuntimeMetric"]


class RuntimeMetric(enum.StrEnum):
    """Names of the runtime's own instruments, as passed to a MetricsCollector.

    Collectors receive them through ``increment_counter``/``record_gauge``/
    ``record_histogram`` with the tags listed here; operations go through ``record``.

    .. versionadded:: 0.1.0
    """

    #: Counter; tags provider, service, operation, error (the error class). One per retry.
    RETRIES = "retries"
    #: Histogram of seconds slept before a retry; tags provider, service, operation.
    RETRY_DELAY = "retry_delay_seconds"
    #: Counter; tags endpoint, from_state, to_state.
    BREAKER_TRANSITIONS = "breaker_transitions"
    #: Gauge of each breaker's state; tags endpoint, state (1 for the current state, else 0).
    BREAKER_STATE = "breaker_state"
    #: Counter of calls rejected by an open breaker; tags endpoint.
    BREAKER_REJECTIONS = "breaker_rejections"
    #: Counter; tags provider, outcome (success or failure).
    CREDENTIAL_REFRESHES = "credential_refreshes"
    #: Gauge of seconds since the credentials in use were fetched; tags provider.
    CREDENTIAL_AGE = "credential_age_seconds"
    #: Counter; tags child (the supervised child's id).
    SUPERVISOR_RESTARTS = "supervisor_restarts"
    #: Gauge of submissions waiting in the queue.
    QUEUE_DEPTH = "submission_queue_depth"
    #: Gauge of operations running now.
    INFLIGHT = "inflight_operations"
    #: Counter of metric events dropped because the aggregator's queue was full.
    METRICS_DROPPED = "metrics_dropped"
    #: Counter of failures of user code behind an extension point; tags spi
    #: (auth_provider, retry_policy, metrics_collector, logger, signer).
    SPI_FAILURES = "spi_failures"
    #: Counter of retries the endpoint's retry budget refused; tags endpoint.
    RETRIES_SUPPRESSED = "retries_suppressed"
    #: Counter of attempts refused at admission, not sent; tags endpoint, reason
    #: (``throttled``: the client's rate limit; ``shed``: the deadline left was shorter
    #: than the endpoint's recent latency).
    ADMISSION_REFUSED = "admission_refused"
    #: Gauge of the adaptive concurrency limit; tags endpoint.
    CONCURRENCY_LIMIT = "concurrency_limit"
    #: Gauge of the adaptive rate limit, requests per second; tags endpoint.
    RATE_LIMIT = "rate_limit"
    #: Counter of calls to the shared state that failed or timed out (the runtime then
    #: decided locally); tags operation (what was asked: sync, report, force).
    SHARED_STATE_UNAVAILABLE = "shared_state_unavailable"
    #: Counter of breakers opened because enough other processes reported their
    #: endpoint open; tags endpoint.
    SHARED_OPENS = "shared_opens"


@attrs.frozen
class Counter:
    name: str
    value: float
    tags: Tags


@attrs.frozen
class Gauge:
    name: str
    value: float
    tags: Tags


@attrs.frozen
class Histogram:
    name: str
    value: float
    tags: Tags


MetricEvent = OperationMetrics | Counter | Gauge | Histogram

_NO_TAGS: Tags = {}


@attrs.define(eq=False)
class RuntimeEvents:
    """The runtime's reporting facade (internal)."""

    provider: ProviderType
    logger: Logger
    emit: Callable[[MetricEvent], None]
    #: False when every collector discards everything (``NoopMetrics``, the default): the
    #: hot path then builds no event at all.
    metrics_wanted: bool = True

    def operation(self, metrics: OperationMetrics) -> None:
        # The endpoint is `scheme://host:port` (endpoint_of), which holds no user-info and
        # no query: only a provider's error code needs masking, and only on failures.
        code = metrics.error_code
        if code:
            masked = mask_text(code)
            if masked != code:
                metrics = attrs.evolve(metrics, error_code=masked)
        self.emit(metrics)

    def retry(
        self, service: str, operation: str, endpoint: str, attempt: int, delay: float, error: str
    ) -> None:
        error, endpoint = mask_text(error), mask_url(endpoint)
        tags = {"provider": str(self.provider), "service": service, "operation": operation}
        self.emit(Counter(RuntimeMetric.RETRIES, 1.0, {**tags, "error": error}))
        self.emit(Histogram(RuntimeMetric.RETRY_DELAY, delay, tags))
        if self.logger.is_enabled(LogLevel.INFO):
            self.logger.info(
                "operation retried",
                provider=str(self.provider),
                service=service,
                operation=operation,
                endpoint=endpoint,
                attempt=attempt,
                delay=round(delay, 6),
                error=error,
            )

    def breaker_transition(self, endpoint: str, old: str, new: str) -> None:
        endpoint = mask_url(endpoint)
        self.emit(
            Counter(
                RuntimeMetric.BREAKER_TRANSITIONS,
                1.0,
                {"endpoint": endpoint, "from_state": old, "to_state": new},
            )
        )
        level = LogLevel.WARN if new in ("open", "forced_open") else LogLevel.INFO
        if self.logger.is_enabled(level):
            self.logger.log(
                LogEntry(
                    level,
                    "circuit breaker changed state",
                    {"endpoint": endpoint, "from_state": old, "to_state": new},
                )
            )

    def retry_suppressed(self, endpoint: str) -> None:
        self.emit(Counter(RuntimeMetric.RETRIES_SUPPRESSED, 1.0, {"endpoint": mask_url(endpoint)}))

    def shared_state_unavailable(self, operation: str) -> None:
        self.emit(Counter(RuntimeMetric.SHARED_STATE_UNAVAILABLE, 1.0, {"operation": operation}))

    def shared_open(self, endpoint: str) -> None:
        self.emit(Counter(RuntimeMetric.SHARED_OPENS, 1.0, {"endpoint": mask_url(endpoint)}))

    def admission_refused(self, endpoint: str, reason: str) -> None:
        self.emit(
            Counter(
                RuntimeMetric.ADMISSION_REFUSED,
                1.0,
                {"endpoint": mask_url(endpoint), "reason": reason},
            )
        )

    def breaker_rejected(self, endpoint: str) -> None:
        self.emit(Counter(RuntimeMetric.BREAKER_REJECTIONS, 1.0, {"endpoint": mask_url(endpoint)}))

    def credential_refresh(self, *, ok: bool, error: str | None = None) -> None:
        outcome = "success" if ok else "failure"
        self.emit(
            Counter(
                RuntimeMetric.CREDENTIAL_REFRESHES,
                1.0,
                {"provider": str(self.provider), "outcome": outcome},
            )
        )
        if ok:
            self.logger.debug("credentials refreshed", provider=str(self.provider))
        else:
            self.logger.warn(
                "credential refresh failed",
                provider=str(self.provider),
                error=mask_text(error) if error else "",
            )

    def supervisor_restart(self, child: str) -> None:
        self.emit(Counter(RuntimeMetric.SUPERVISOR_RESTARTS, 1.0, {"child": child}))

    def gauge(self, name: str, value: float, tags: Tags = _NO_TAGS) -> None:
        self.emit(Gauge(name, value, tags))
