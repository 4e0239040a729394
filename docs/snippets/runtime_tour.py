"""The runtime tour (docs/runtime.md): build, execute, channel, stream, breakers.

Runs offline: an in-memory transport plays the endpoint.
"""

from __future__ import annotations

import io

import httpx
import trio

import cloudkit_trio as ck


def endpoint(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/bucket/big":
        return httpx.Response(200, content=b"x" * 100_000)
    return httpx.Response(200, content=b"hello")


def build_context() -> ck.CloudContext:
    # --8<-- [start:build]
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(region="eu-west-1", endpoint="http://127.0.0.1:9000"))
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .retry_policy(ck.ExponentialBackoff())  # or ck.CircuitBreaker(inner=...)
        .metrics_collector(ck.LoggingMetrics())
        .logger(ck.StdlibLogger())
        .transport(httpx.MockTransport(endpoint))  # leave out to use the network
        .build()  # validates; starts nothing
    )
    # --8<-- [end:build]
    return context


async def main() -> None:
    context = build_context()
    # --8<-- [start:execute]
    async with context as cloud:
        operation = ck.Operation(service="s3", name="get_object", path="/bucket/key")
        response = await cloud.execute(operation)
        print(response.status_code, response.text, response.attempts)
        # --8<-- [end:execute]
        assert response.content == b"hello"

        # --8<-- [start:channel]
        my_send, my_receive = trio.open_memory_channel[ck.Reply](10)
        async with cloud.submit_channel() as submit:
            for n in range(3):
                await submit.send(ck.Submission(operation, reply_to=my_send, correlation_id=n))
        for _ in range(3):
            reply = await my_receive.receive()  # reply.correlation_id, .response or .error
            print(reply.correlation_id, reply.ok, reply.result().status_code)
        # --8<-- [end:channel]

        # --8<-- [start:stream]
        sink = io.BytesIO()
        big = ck.Operation(service="s3", name="get_object", path="/bucket/big")
        async with cloud.stream(big) as streamed:
            async for chunk in streamed.aiter_bytes():  # or aiter_raw(), or await aread()
                sink.write(chunk)
        # --8<-- [end:stream]
        assert sink.getvalue() == b"x" * 100_000

        # --8<-- [start:breakers]
        url = "http://127.0.0.1:9000"
        print(cloud.breaker(url))  # a BreakerSnapshot: state, failure ratio, ...
        cloud.force_open(url)  # every call to it now fails fast with CircuitOpenError
        try:
            await cloud.execute(operation)
        except ck.CircuitOpenError as error:
            print("refused:", error)
        cloud.force_closed(url)  # admit everything, whatever the failures
        cloud.reset_breaker(url)  # back to normal operation, counts cleared
        # --8<-- [end:breakers]
        assert cloud.breaker(url).state is ck.BreakerState.CLOSED


if __name__ == "__main__":
    trio.run(main)
