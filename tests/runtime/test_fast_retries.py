"""cloudkit_trio.testing.fast_retries: retries without backoff, attempts capped, for tests."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.runtime._fast_retries import FAST_RETRIES
from cloudkit_trio.testing import (
    FakeEndpoint,
    FakeRequest,
    FakeResponse,
    fast_retries,
    fast_retries_enabled,
    set_fast_retries,
)
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
    statuses = [503, 503]

    async def answer(request: FakeRequest) -> FakeResponse:
        if statuses:
            return FakeResponse(status=statuses.pop(0), headers={"Retry-After": "60"})
        return FakeResponse(body=b"ok")

    endpoint = FakeEndpoint("storage", app=answer)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(endpoint.serve)
        builder = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint=url))
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
    assert (response.status_code, response.attempts, endpoint.requests) == (200, 3, 3)
    assert waited < 1.0  # not the 60 s the server asked for
