"""Send operation messages through a Trio memory channel and read the replies.

Twenty submissions go through ``cloud.submit_channel()``; each gets exactly one ``Reply``
on our own channel, carrying its correlation id. Run ``python examples/channel_style.py``.
"""

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck


def service(request: httpx.Request) -> httpx.Response:
    key = request.url.path.rsplit("/", 1)[-1]
    return httpx.Response(404 if key == "7" else 200, content=key.encode())


async def main() -> None:
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
        # Every request is signed with SigV4 by default; these are the keys it signs with.
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .transport(httpx.MockTransport(service))
        .logger(ck.NoopLogger())
        .build()
    )
    replies_send, replies_receive = trio.open_memory_channel[ck.Reply](20)
    async with context as cloud:
        async with cloud.submit_channel() as submit:
            for n in range(20):
                operation = ck.Operation(service="s3", name="get_object", path=f"/bucket/{n}")
                await submit.send(ck.Submission(operation, replies_send, correlation_id=n))
        ok = failed = 0
        for _ in range(20):
            reply = await replies_receive.receive()
            if reply.ok:
                ok += 1
            else:
                failed += 1
                print(f"submission {reply.correlation_id}: {type(reply.error).__name__}")
        print(f"{ok} succeeded, {failed} failed, {ok + failed} replies for 20 submissions")


if __name__ == "__main__":
    trio.run(main)
