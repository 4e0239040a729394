"""PrometheusMetrics: names, bounded cardinality, double creation, a real scrape."""

from __future__ import annotations

import contextlib
import errno
import gc
import socket
import warnings
from functools import partial

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import cloudkit_trio as ck
import cloudkit_trio.testing
from cloudkit_trio.testing import FaultyTransport
from cloudkit_trio.transport import BearerTokenSigner, NoAuthSigner


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

    async def test_runtime_metrics_reach_a_real_scrape(self, nursery: trio.Nursery) -> None:
        """A context's operations, retries, breaker states and credential age are scraped from
        serve_metrics over a real loopback socket and parsed by prometheus-client's parser."""
        registry = CollectorRegistry()
        port = await nursery.start(partial(ck.serve_metrics, registry=registry))
        context = (
            ck.CloudContext.builder("aws")
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
            .transport(
                FaultyTransport(rate=0.5, seed=3, weights={ck.testing.Fault.UNAVAILABLE: 1.0})
            )
            .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKIDEXAMPLE", "s3cr3t-value")))
            .signer(BearerTokenSigner())
            .metrics_collector(ck.PrometheusMetrics(registry))
            .retry_policy(ck.ExponentialBackoff(initial_delay=0.001, max_delay=0.001))
            .logger(ck.NoopLogger())
            .build()
        )
        async with context as cloud:
            for _ in range(20):
                with contextlib.suppress(ck.CloudError):
                    await cloud.execute(ck.Operation(service="s3", name="get_object", path="/k"))
            final_state = str(cloud.breaker("http://127.0.0.1:9000").state)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
            missing = await client.get(f"http://127.0.0.1:{port}/elsewhere")
        assert response.status_code == 200 and missing.status_code == 404
        assert "s3cr3t" not in response.text
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        assert {"cloudkit_operations", "cloudkit_retries", "cloudkit_retry_delay_seconds"} <= set(
            families
        )
        states = {s.labels["state"]: s.value for s in families["cloudkit_breaker_state"].samples}
        assert states[final_state] == 1.0 and sum(states.values()) == 1.0
        [age] = families["cloudkit_credential_age_seconds"].samples
        assert age.labels == {"provider": "aws"} and age.value >= 0.0


class TestServeMetrics:
    async def test_rejects_unusable_arguments(self) -> None:
        """Bad ports and paths are ConfigErrors before anything is bound."""
        for kwargs in ({"port": -1}, {"port": 70_000}, {"port": True}, {"path": "metrics"}):
            with pytest.raises(ck.ConfigError):
                await ck.serve_metrics(**kwargs)  # type: ignore[arg-type]

    async def test_serves_the_default_registry_and_stops_with_its_nursery(self) -> None:
        """Without a registry it serves prometheus-client's global one; cancelling the nursery
        closes the listening socket."""
        async with trio.open_nursery() as nursery:
            port = await nursery.start(ck.serve_metrics)
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert any(f.name.startswith("python_") for f in text_string_to_metric_families(text))
            nursery.cancel_scope.cancel()
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            pass

    async def test_a_busy_port_is_one_oserror_and_leaks_no_socket(self) -> None:
        """The port is taken: ``nursery.start`` raises the OSError itself (no exception
        group of ours around it), saying which address, and no socket is left open."""
        async with trio.open_nursery() as nursery:
            port = await nursery.start(ck.serve_metrics)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                with pytest.raises(OSError, match=f"127.0.0.1:{port}") as raised:
                    await nursery.start(partial(ck.serve_metrics, port=port))
                gc.collect()
            nursery.cancel_scope.cancel()
        assert raised.value.errno == errno.EADDRINUSE
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


class TestSampledGauges:
    async def test_a_breaker_that_never_tripped_is_exported_as_closed(self) -> None:
        """The state gauge is sampled, so healthy endpoints are visible before any transition."""
        registry = CollectorRegistry()
        context = (
            ck.CloudContext.builder("aws")
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
            .transport(httpx.MockTransport(lambda request: httpx.Response(200)))
            .metrics_collector(ck.PrometheusMetrics(registry))
            .logger(ck.NoopLogger())
            .signer(NoAuthSigner())
            .build()
        )
        async with context as cloud:
            await cloud.execute(ck.Operation(service="s3", name="get_object", path="/k"))
        states = {labels["state"]: v for labels, v in samples(registry)["cloudkit_breaker_state"]}
        assert states == {
            "closed": 1.0, "open": 0.0, "half_open": 0.0, "forced_open": 0.0, "forced_closed": 0.0
        }  # fmt: skip
        assert "cloudkit_credential_age_seconds" not in samples(registry)
