"""Prometheus metrics served at /metrics inside the application's own Trio run.

Needs the ``server`` extra (hypercorn). ``METRICS_PORT`` picks the port (9464 by default;
0 picks a free one).
"""

# docs-test: real-clock

from __future__ import annotations

import os
from functools import partial

import httpx
import trio

# --8<-- [start:imports]
from prometheus_client import CollectorRegistry

import cloudkit_trio as ck

# --8<-- [end:imports]

PORT = int(os.environ.get("METRICS_PORT", "9464"))


def endpoint(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


async def main() -> None:
    # --8<-- [start:serve]
    registry = CollectorRegistry()
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .transport(httpx.MockTransport(endpoint))  # leave out to use the network
        .metrics_collector(ck.PrometheusMetrics(registry))
        .build()
    )

    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(ck.serve_metrics, port=PORT, registry=registry))
        async with context as cloud:
            await cloud.execute(ck.Operation(service="s3", name="list_buckets", path="/"))
            print(f"http://127.0.0.1:{port}/metrics while this runs")
        # Closing the context delivered its last metrics; the server still answers.
        async with httpx.AsyncClient() as client:
            page = await client.get(f"http://127.0.0.1:{port}/metrics")
        print(page.text.count("cloudkit_operations_total{"), "series of operations")
        nursery.cancel_scope.cancel()  # stops the server with the rest of the app
    # --8<-- [end:serve]
    assert 'operation="list_buckets"' in page.text, page.text[:2000]


if __name__ == "__main__":
    trio.run(main)
