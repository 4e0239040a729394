"""Embed the runtime in your own nursery, next to your own supervised worker.

``cloud = await nursery.start(context.serve)`` runs the runtime inside the caller's
nursery; ``cloud.supervisor.start_child(...)`` puts a worker of ours in the same
supervision tree; ``cloud.aclose()`` shuts everything down gracefully.
Run ``python examples/embedded.py``.
"""

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck
import cloudkit_trio.actors
from cloudkit_trio.actors import ChildSpec


async def main() -> None:
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
        # Every request is signed with SigV4 by default; these are the keys it signs with.
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .transport(httpx.MockTransport(lambda request: httpx.Response(200, content=b"pong")))
        .logger(ck.NoopLogger())
        .build()
    )
    async with trio.open_nursery() as nursery:
        cloud = await nursery.start(context.serve)
        results: list[bytes] = []
        done = trio.Event()

        async def poller(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            for _ in range(3):
                response = await cloud.execute(ck.Operation(service="demo", name="ping", path="/"))
                results.append(response.content)
                await trio.sleep(0.01)
            done.set()

        await cloud.supervisor.start_child(
            ChildSpec("poller", poller, restart=ck.actors.Restart.TRANSIENT)
        )
        await done.wait()
        # cloud.supervisor is the "workers" subtree: your children, your restart budget.
        print("workers:", [child.id for child in cloud.supervisor.which_children()])
        print("tree:", [child.id for child in cloud.snapshot().tree.children])
        print("poller got:", results)
        await cloud.aclose()


if __name__ == "__main__":
    trio.run(main)
