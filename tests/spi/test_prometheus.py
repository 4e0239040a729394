"""PrometheusMetrics: names, bounded cardinality, double creation, a real scrape."""

from __future__ import annotations

import contextlib

import httpx
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import cloudkit_trio as ck
import cloudkit_trio.testing
from cloudkit_trio.testing import FaultyTransport


def samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(registry).decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def metrics(**overrides: object) -> ck.OperationMetrics:
    values: dict[str, object] = {
        "provider": ck.ProviderType.AWS, "service": "s3", "operation": "put_object",
        "duration": 0.15, "outcome": ck.OperationOutcome.SUCCESS, "retry_count": 2,
    }  # fmt: skip
    values.update(overrides)
    return ck.OperationMetrics(**values)  # type: ignore[arg-type]


class TestPrometheusMetrics:
    async def test_operations_are_exported_with_conventional_names(self) -> None:
        """Operations become cloudkit_operations_total, a duration and an attempts histogram."""
        registry = CollectorRegistry()
        collector = ck.PrometheusMetrics(registry)
        await collector.record(metrics())
        await collector.record(metrics(outcome=ck.OperationOutcome.FAILURE))
        found = samples(registry)
        totals = {s[0]["outcome"]: s[1] for s in found["cloudkit_operations_total"]}
        assert totals == {"success": 1.0, "failure": 1.0}
        assert [v for labels, v in found["cloudkit_operation_duration_seconds_count"]] == [2.0]
        assert [v for labels, v in found["cloudkit_operation_attempts_sum"]] == [6.0]

    async def test_nothing_registered_until_used_and_safe_twice(self) -> None:
        """Creating collectors registers nothing; two on one registry share the families."""
        registry = CollectorRegistry()
        first, second = ck.PrometheusMetrics(registry), ck.PrometheusMetrics(registry)
        assert samples(registry) == {}
        await first.record(metrics())
        await second.record(metrics())
        [(_labels, value)] = samples(registry)["cloudkit_operations_total"]
        assert value == 2.0

    async def test_endpoint_cardinality_is_bounded(self) -> None:
        """10 000 distinct endpoints export at most the budget plus one 'other' series."""
        registry = CollectorRegistry()
        collector = ck.PrometheusMetrics(registry, max_endpoints=50)
        for n in range(10_000):
            await collector.increment_counter(
                "breaker_rejections", tags={"endpoint": f"http://h{n}:80"}
            )
        series = samples(registry)["cloudkit_breaker_rejections_total"]
        assert len(series) == 51
        other = [v for labels, v in series if labels["endpoint"] == "other"]
        assert other == [10_000 - 50]

    async def test_breaker_state_gauge_follows_transitions(self) -> None:
        """A transition sets the state gauge: 1 for the new state, 0 for the others."""
        registry = CollectorRegistry()
        collector = ck.PrometheusMetrics(registry)
        tags = {"endpoint": "http://h:80", "from_state": "closed", "to_state": "open"}
        await collector.increment_counter("breaker_transitions", tags=tags)
        states = {labels["state"]: v for labels, v in samples(registry)["cloudkit_breaker_state"]}
        assert states["open"] == 1.0 and states["closed"] == 0.0

    async def test_runtime_metrics_reach_a_real_scrape(self) -> None:
        """A context's retries and operations are scraped over a real loopback socket."""
        registry = CollectorRegistry()
        context = (
            ck.CloudContext.builder("aws")
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
            .transport(
                FaultyTransport(rate=0.5, seed=3, weights={ck.testing.Fault.UNAVAILABLE: 1.0})
            )
            .metrics_collector(ck.PrometheusMetrics(registry))
            .retry_policy(ck.ExponentialBackoff(initial_delay=0.001, max_delay=0.001))
            .logger(ck.NoopLogger())
            .build()
        )
        async with context as cloud:
            for _ in range(20):
                with contextlib.suppress(ck.CloudError):
                    await cloud.execute(ck.Operation(service="s3", name="get_object", path="/k"))
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            port = server.server_address[1]
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"cloudkit_operations", "cloudkit_retries", "cloudkit_retry_delay_seconds"} <= names
