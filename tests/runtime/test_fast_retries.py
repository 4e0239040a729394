"""cloudkit_trio.testing.fast_retries: retries without backoff, attempts capped, for tests."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.runtime._fast_retries import FAST_RETRIES
from cloudkit_trio.testing import fast_retries, fast_retries_enabled, set_fast_retries
from cloudkit_trio.transport import NoAuthSigner

from ._support import Script, context, op

POLICY = ck.ExponentialBackoff(initial_delay=1.0, max_delay=10.0, max_attempts=4)


@pytest.fixture(autouse=True)
def switch_off() -> None:
    set_fast_retries(False)


async def test_without_the_switch_retries_wait_their_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The control: two 503s cost seconds of backoff (of the clock: it jumps)."""
    script = Script([503, 503])
    async with context(script, policy=POLICY, breaker=None) as cloud:
        start = trio.current_time()
        response = await cloud.execute(op())
    assert response.attempts == 3
    assert trio.current_time() - start >= 1.0


async def test_with_the_switch_every_retry_is_made_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script([503, 503])
    async with context(script, policy=POLICY, breaker=None) as cloud:
        with fast_retries():
            start = trio.current_time()
            response = await cloud.execute(op())
            elapsed = trio.current_time() - start
    assert response.attempts == 3
    assert elapsed == 0.0
    assert script.times == [script.times[0]] * 3


async def test_retry_after_is_not_waited_for_either(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """429 carries Retry-After: 2 (the script's); the policy alone never retries sooner."""
    script = Script([429, 429])
    async with context(script, policy=POLICY, breaker=None) as cloud:
        with fast_retries():
            start = trio.current_time()
            response = await cloud.execute(op())
            assert trio.current_time() == start
    assert response.attempts == 3


async def test_attempts_cap_every_policy(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([503] * 10)
    async with context(script, policy=POLICY, breaker=None) as cloud:
        with fast_retries(attempts=2), pytest.raises(ck.ServiceUnavailable) as caught:
            await cloud.execute(op())
    assert caught.value.attempt == 2
    assert len(script.requests) == 2


async def test_a_cap_above_the_policy_leaves_the_policy_in_charge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script([503] * 10)
    async with context(script, policy=POLICY, breaker=None) as cloud:
        with fast_retries(attempts=9), pytest.raises(ck.ServiceUnavailable):
            await cloud.execute(op())
    assert len(script.requests) == 4


async def test_channel_submissions_run_on_runtime_tasks_and_are_reached_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script([503, 503])
    async with context(script, policy=POLICY, breaker=None) as cloud:
        with fast_retries():
            start = trio.current_time()
            reply = await cloud.submit(op())
            assert trio.current_time() == start
    assert reply.result().attempts == 3


async def test_the_deadline_and_non_idempotent_rules_still_hold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only *when* changes: a POST that may have reached the server is still not retried."""
    script = Script([503, 503])
    async with context(script, policy=POLICY, breaker=None) as cloud:
        with fast_retries(), pytest.raises(ck.ServiceUnavailable):
            await cloud.execute(op(method="POST", body=b"x"))
    assert len(script.requests) == 1


def test_the_block_restores_what_was_before_however_it_exits() -> None:
    set_fast_retries(True, attempts=3)

    def fails_inside() -> None:
        with fast_retries(attempts=1):
            assert FAST_RETRIES.attempts == 1
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails_inside()
    assert (FAST_RETRIES.enabled, FAST_RETRIES.attempts) == (True, 3)
    set_fast_retries(False)
    with fast_retries():
        pass
    assert not fast_retries_enabled()


@pytest.mark.parametrize("attempts", [0, -1, 1.5, True, "2"])
def test_attempts_are_validated(attempts: object) -> None:
    with pytest.raises(ck.ConfigError, match="attempts"):
        set_fast_retries(True, attempts=attempts)  # type: ignore[arg-type]
    assert not fast_retries_enabled()


def test_enabled_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="bool"):
        set_fast_retries(1)  # type: ignore[arg-type]


async def test_over_a_real_socket(autojump_clock: trio.testing.MockClock) -> None:
    """A loopback server answers 503 with Retry-After: 60 twice, then 200."""
    answers = [
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n",
    ]
    served = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal served
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buffer += chunk
                _head, buffer = buffer.split(b"\r\n\r\n", 1)
                served += 1
                answer = (
                    answers.pop(0) if answers else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                )
                await stream.send_all(answer)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        builder = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=f"http://127.0.0.1:{port}"))
            .signer(NoAuthSigner())
            .logger(ck.NoopLogger())
            .retry_policy(POLICY)
        )
        async with builder.build() as cloud:
            with fast_retries():
                start = trio.current_time()
                response = await cloud.execute(op())
                waited = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert (response.status_code, response.attempts, served) == (200, 3, 3)
    assert waited < 1.0  # not the 60 s the server asked for
