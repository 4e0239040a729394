"""PrometheusMetrics: the MetricsCollector SPI on prometheus-client, with bounded labels."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram

from ._metrics import MetricsCollector, OperationMetrics, Tags

__all__ = ["PrometheusMetrics"]

_OTHER: Final = "other"
_BREAKER_STATES: Final = ("closed", "open", "half_open", "forced_open", "forced_closed")
_OPERATION_LABELS: Final = ("provider", "service", "operation")

_Metric = PromCounter | PromGauge | PromHistogram

# Collectors already registered, per registry: a second PrometheusMetrics on the same
# registry reuses them instead of failing with "Duplicated timeseries". Weak keys, so a
# registry that goes away takes its entries with it.
_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metric]] = (
    weakref.WeakKeyDictionary()
)


class PrometheusMetrics(MetricsCollector):
    """Exports the runtime's metrics through ``prometheus_client``.

    Nothing is registered at import time; collectors are created on first use in
    ``registry`` (the default registry when omitted), and a second instance on the same
    registry shares them. Label values come from bounded sets: endpoints beyond
    ``max_endpoints`` distinct values are reported as ``other``. Label children are bound
    once per key and cached, not looked up per call.

    Metrics (all prefixed ``cloudkit_``): ``operations_total``,
    ``operation_duration_seconds``, ``operation_attempts``, ``retries_total``,
    ``retry_delay_seconds``, ``breaker_state``, ``breaker_transitions_total``,
    ``breaker_rejections_total``, ``credential_refreshes_total``,
    ``credential_age_seconds``, ``supervisor_restarts_total``, ``submission_queue_depth``,
    ``inflight_operations``, ``metrics_dropped_total``, ``spi_failures_total``.
    Instrument names outside the runtime's own
    (:class:`~cloudkit_trio.runtime.RuntimeMetric`) are ignored, so that no caller can add
    unbounded families.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_endpoints: int = 100
    ) -> None:
        if (
            isinstance(max_endpoints, bool)
            or not isinstance(max_endpoints, int)
            or max_endpoints < 1
        ):
            raise ValueError(f"max_endpoints must be an int >= 1, got {max_endpoints!r}")
        self.registry = registry if registry is not None else REGISTRY
        self.max_endpoints = max_endpoints
        self._endpoints: set[str] = set()
        self._children: dict[tuple[str, tuple[str, ...]], _Metric] = {}

    def __repr__(self) -> str:
        return f"PrometheusMetrics(max_endpoints={self.max_endpoints})"

    # -- families and children ---------------------------------------------------------------

    def _family(self, name: str, build: Callable[[CollectorRegistry], _Metric]) -> _Metric:
        families = _FAMILIES.setdefault(self.registry, {})
        family = families.get(name)
        if family is None:
            family = families[name] = build(self.registry)
        return family

    def _child(
        self, name: str, values: tuple[str, ...], build: Callable[[CollectorRegistry], _Metric]
    ) -> _Metric:
        key = (name, values)
        child = self._children.get(key)
        if child is None:
            family = self._family(name, build)
            child = family.labels(*values) if values else family
            self._children[key] = child
        return child

    def _endpoint(self, endpoint: str) -> str:
        if endpoint in self._endpoints:
            return endpoint
        if len(self._endpoints) < self.max_endpoints:
            self._endpoints.add(endpoint)
            return endpoint
        return _OTHER

    # -- the SPI -------------------------------------------------------------------------------

    async def record(self, metrics: OperationMetrics) -> None:
        labels = (str(metrics.provider), metrics.service, metrics.operation)
        counter = self._child(
            "operations",
            (*labels, str(metrics.outcome)),
            _counter(
                "cloudkit_operations_total", "Finished operations.", (*_OPERATION_LABELS, "outcome")
            ),
        )
        assert isinstance(counter, PromCounter)
        counter.inc()
        duration = self._child(
            "duration",
            labels,
            _histogram(
                "cloudkit_operation_duration_seconds",
                "Operation duration, every attempt and backoff included.",
                _OPERATION_LABELS,
            ),
        )
        assert isinstance(duration, PromHistogram)
        duration.observe(metrics.duration)
        attempts = self._child(
            "attempts",
            labels,
            _histogram(
                "cloudkit_operation_attempts",
                "Attempts per operation.",
                _OPERATION_LABELS,
                buckets=(1, 2, 3, 4, 5, 7, 10, float("inf")),
            ),
        )
        assert isinstance(attempts, PromHistogram)
        attempts.observe(metrics.attempts)

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        tags = tags or {}
        counter = self._instrument(name, tags, _COUNTERS, _counter)
        if counter is None:
            return
        assert isinstance(counter, PromCounter)
        counter.inc(value)
        if name == "breaker_transitions":
            endpoint = self._endpoint(tags.get("endpoint", ""))
            self._set_breaker_state(endpoint, tags.get("to_state", ""))

    async def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        if name == "breaker_state":
            # One series per (endpoint, state), all kept consistent: 1 for the current state.
            tags = tags or {}
            if value == 1.0 and tags.get("state") in _BREAKER_STATES:
                self._set_breaker_state(self._endpoint(tags.get("endpoint", "")), tags["state"])
            return
        gauge = self._instrument(name, tags or {}, _GAUGES, _gauge)
        if gauge is not None:
            assert isinstance(gauge, PromGauge)
            gauge.set(value)

    async def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        histogram = self._instrument(name, tags or {}, _HISTOGRAMS, _histogram)
        if histogram is not None:
            assert isinstance(histogram, PromHistogram)
            histogram.observe(value)

    def _instrument(
        self,
        name: str,
        tags: Mapping[str, str],
        table: Mapping[str, tuple[str, str, tuple[str, ...]]],
        factory: Callable[[str, str, tuple[str, ...]], Callable[[CollectorRegistry], _Metric]],
    ) -> _Metric | None:
        """The bound child for a known instrument; None for names we do not export."""
        spec = table.get(name)
        if spec is None:
            return None
        label_names = spec[2]
        return self._child(name, self._values(label_names, tags), factory(*spec))

    def _values(self, label_names: tuple[str, ...], tags: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(
            self._endpoint(tags.get(label, "")) if label == "endpoint" else tags.get(label, "")
            for label in label_names
        )

    def _set_breaker_state(self, endpoint: str, state: str) -> None:
        build = _gauge(
            "cloudkit_breaker_state",
            "1 for the breaker's current state, 0 for the others.",
            ("endpoint", "state"),
        )
        for candidate in _BREAKER_STATES:
            gauge = self._child("breaker_state", (endpoint, candidate), build)
            assert isinstance(gauge, PromGauge)
            gauge.set(1.0 if candidate == state else 0.0)


def _counter(
    name: str, help_text: str, labels: tuple[str, ...]
) -> Callable[[CollectorRegistry], _Metric]:
    # prometheus_client appends _total itself.
    return lambda registry: PromCounter(
        name.removesuffix("_total"), help_text, labels, registry=registry
    )


def _gauge(
    name: str, help_text: str, labels: tuple[str, ...]
) -> Callable[[CollectorRegistry], _Metric]:
    return lambda registry: PromGauge(name, help_text, labels, registry=registry)


def _histogram(
    name: str, help_text: str, labels: tuple[str, ...], buckets: tuple[float, ...] | None = None
) -> Callable[[CollectorRegistry], _Metric]:
    if buckets is None:
        return lambda registry: PromHistogram(name, help_text, labels, registry=registry)
    return lambda registry: PromHistogram(
        name, help_text, labels, registry=registry, buckets=buckets
    )


_COUNTERS: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    "retries": ("cloudkit_retries_total", "Retries scheduled.", (*_OPERATION_LABELS, "error")),
    "breaker_transitions": (
        "cloudkit_breaker_transitions_total",
        "Circuit breaker state changes.",
        ("endpoint", "from_state", "to_state"),
    ),
    "breaker_rejections": (
        "cloudkit_breaker_rejections_total",
        "Calls rejected by an open breaker without a network call.",
        ("endpoint",),
    ),
    "credential_refreshes": (
        "cloudkit_credential_refreshes_total",
        "Credential fetches and refreshes.",
        ("provider", "outcome"),
    ),
    "supervisor_restarts": (
        "cloudkit_supervisor_restarts_total",
        "Restarts of supervised children.",
        ("child",),
    ),
    "metrics_dropped": (
        "cloudkit_metrics_dropped_total",
        "Metric events dropped because the aggregator's queue was full.",
        (),
    ),
    "spi_failures": (
        "cloudkit_spi_failures_total",
        "Failures of user code behind an extension point, contained by the runtime.",
        ("spi",),
    ),
    "retries_suppressed": (
        "cloudkit_retries_suppressed_total",
        "Retries the endpoint's retry budget refused.",
        ("endpoint",),
    ),
    "admission_refused": (
        "cloudkit_admission_refused_total",
        "Attempts refused at admission without a network call (throttled, shed).",
        ("endpoint", "reason"),
    ),
    "shared_state_unavailable": (
        "cloudkit_shared_state_unavailable_total",
        "Calls to the shared state that failed or timed out; decided locally instead.",
        ("operation",),
    ),
    "shared_opens": (
        "cloudkit_shared_opens_total",
        "Breakers opened because enough other processes reported their endpoint open.",
        ("endpoint",),
    ),
}
_GAUGES: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    "credential_age_seconds": (
        "cloudkit_credential_age_seconds",
        "Seconds since the credentials in use were fetched.",
        ("provider",),
    ),
    "submission_queue_depth": (
        "cloudkit_submission_queue_depth",
        "Submissions waiting in the queue.",
        (),
    ),
    "inflight_operations": ("cloudkit_inflight_operations", "Operations running now.", ()),
    "concurrency_limit": (
        "cloudkit_concurrency_limit",
        "The adaptive concurrency limit of an endpoint.",
        ("endpoint",),
    ),
    "rate_limit": (
        "cloudkit_rate_limit",
        "The adaptive rate limit of an endpoint, requests per second.",
        ("endpoint",),
    ),
}
_HISTOGRAMS: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    "retry_delay_seconds": (
        "cloudkit_retry_delay_seconds",
        "Seconds slept before a retry.",
        _OPERATION_LABELS,
    ),
}
