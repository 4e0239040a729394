"""The credential refresher: lazy, shared, ahead of expiry, resilient to provider failures."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.testing import RecordingMetrics
from cloudkit_trio.transport import NoAuthSigner

from ._support import CountingAuth, KeyEcho, Script, context, op


def keys(script: Script) -> list[str]:
    return [h["x-key"] for h in script.headers]


class TestRefresher:
    async def test_first_fetch_is_lazy(self, autojump_clock: trio.testing.MockClock) -> None:
        """Entering the context fetches nothing; the first operation does."""
        auth = CountingAuth()
        script = Script()
        async with context(script, auth=auth, signer=KeyEcho()) as cloud:
            await trio.sleep(10)
            assert auth.fetches == 0
            await cloud.execute(op())
        assert auth.fetches == 1 and keys(script) == ["AKID1"]

    async def test_unsigned_contexts_never_fetch(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With a signer that needs no credentials, the provider is never asked."""
        auth = CountingAuth(fail=True)
        async with context(auth=auth, signer=NoAuthSigner()) as cloud:
            await cloud.execute(op())
        assert auth.fetches == 0

    async def test_one_refresh_under_concurrency(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A hundred concurrent operations share one fetch."""
        auth = CountingAuth(lifetime=3600)
        script = Script()
        async with (
            context(script, auth=auth, signer=KeyEcho()) as cloud,
            trio.open_nursery() as nursery,
        ):
            for _ in range(100):
                nursery.start_soon(cloud.execute, op())
        assert auth.fetches == 1 and set(keys(script)) == {"AKID1"}

    async def test_background_refresh_in_the_advisory_window(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Inside the advisory window the old credentials are served while a refresh runs."""
        auth = CountingAuth(lifetime=3600)
        script = Script()
        ctx = context(script, auth=auth, signer=KeyEcho())
        async with ctx as cloud:
            await cloud.execute(op())
            # Advisory window opens 15 minutes before expiry; the actor refreshes by itself.
            await trio.sleep(3600 - 15 * 60 + 1)
            assert auth.fetches == 2
            await cloud.execute(op())
        assert keys(script) == ["AKID1", "AKID2"]

    async def test_callers_wait_only_in_the_mandatory_window(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A slow refresh does not hold callers in the advisory window, only in the mandatory one."""
        # 200 s credentials: the windows are capped to 100 s and 50 s before expiry, so the
        # held refresh stays shorter than the refresher's 60 s provider timeout.
        auth = CountingAuth(lifetime=200)
        script = Script()
        async with context(script, auth=auth, signer=KeyEcho()) as cloud:
            await cloud.execute(op())
            auth.gate = trio.Event()  # the next refresh hangs until released
            await trio.sleep(100 + 1)  # advisory window: refresh started
            assert cloud.statistics().credentials.refreshing
            start = trio.current_time()
            await cloud.execute(op())
            assert trio.current_time() == start  # served at once, old credentials
            await trio.sleep(50)  # now inside the mandatory window
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cloud.execute, op())
                await trio.sleep(7)
                assert len(script.headers) == 2  # the caller is waiting
                auth.gate.set()
        assert keys(script) == ["AKID1", "AKID1", "AKID2"]

    async def test_failing_refresh_keeps_serving_valid_credentials(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """While refreshes fail, still-valid credentials keep being used; failures are counted."""
        auth = CountingAuth(lifetime=3600)
        metrics = RecordingMetrics()
        script = Script()
        async with context(script, auth=auth, signer=KeyEcho(), metrics=metrics) as cloud:
            await cloud.execute(op())
            auth.fail = True
            await trio.sleep(3600 - 15 * 60 + 1)
            await cloud.execute(op())
            await trio.sleep(30)  # retried with backoff meanwhile: 1, 2, 4, 8 s (jittered)
            snapshot = cloud.statistics().credentials
            assert 3 <= snapshot.failures <= 7 and "vault is down" in (snapshot.last_error or "")
            assert snapshot.next_attempt_in is not None
            assert keys(script) == ["AKID1", "AKID1"]
            auth.fail = False
            await trio.sleep(70)
            await cloud.execute(op())
        assert keys(script)[-1].startswith("AKID") and keys(script)[-1] != "AKID1"
        assert metrics.counter_total("credential_refreshes", outcome="failure") >= 3

    async def test_no_credentials_at_all(self, autojump_clock: trio.testing.MockClock) -> None:
        """When nothing can be fetched, the operation fails with TokenRefreshFailed naming the source."""
        async with context(auth=CountingAuth(fail=True), signer=KeyEcho()) as cloud:
            with pytest.raises(ck.TokenRefreshFailed, match="CountingAuth"):
                await cloud.execute(op())

    async def test_expired_credentials_force_one_refresh_and_one_retry(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An ExpiredToken response refreshes once and retries once, even with NoRetry."""

        def expired(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                400, content=b"<Error><Code>ExpiredToken</Code><Message>m</Message></Error>"
            )

        auth = CountingAuth()
        script = Script([expired])
        metrics = RecordingMetrics()
        async with context(
            script, auth=auth, signer=KeyEcho(), policy=ck.NoRetry(), metrics=metrics
        ) as cloud:
            response = await cloud.execute(op())
            assert response.attempts == 2
            script.steps = [expired, expired]
            with pytest.raises(ck.ExpiredCredentials):
                await cloud.execute(op())
        assert keys(script) == ["AKID1", "AKID2", "AKID2", "AKID3"]
        # Each forced retry is counted as a retry caused by the expired credentials.
        assert metrics.counter_total("retries", error="ExpiredCredentials") == 2

    async def test_refresher_crash_fails_waiters_instead_of_hanging(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """If the refresher dies mid-refresh, waiters get an error and the actor restarts."""
        auth = CountingAuth()
        auth.gate = trio.Event()
        async with context(auth=auth, signer=KeyEcho()) as cloud:
            refresher = cloud._runtime.refresher
            install = refresher._install

            def crash_once(credentials: ck.Credentials) -> None:
                refresher._install = install  # type: ignore[method-assign]
                raise RuntimeError("injected crash in the refresher")

            refresher._install = crash_once  # type: ignore[method-assign]
            errors: list[BaseException] = []

            async def call() -> None:
                try:
                    await cloud.execute(op())
                except ck.CloudError as error:
                    errors.append(error)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(call)
                await trio.testing.wait_all_tasks_blocked()
                auth.gate.set()
            assert len(errors) == 3 and all(isinstance(e, ck.TokenRefreshFailed) for e in errors)
            [child] = [c for c in cloud.snapshot().tree.children if c.id == "credential-refresher"]
            assert child.restarts == 1
            assert (await cloud.execute(op())).status_code == 200


class TestRefresherInTheRuntime:
    async def test_failing_background_refresh_does_not_hammer_the_provider(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Inside the advisory window a failing provider is asked a handful of times a minute."""
        auth = CountingAuth(lifetime=3600)
        async with context(auth=auth, signer=KeyEcho()) as cloud:
            await cloud.execute(op())
            auth.fail = True
            await trio.sleep(3600 - 15 * 60 + 60)
            # 1, 2, 4, 8, 16 s with equal jitter: 6 to 8 attempts in the first minute.
            assert 6 <= auth.fetches - 1 <= 8
            assert cloud.statistics().credentials.consecutive_failures == auth.fetches - 1

    async def test_without_credentials_callers_fail_fast_during_backoff(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After a failed first fetch, the next operation fails at once, without a provider call."""
        auth = CountingAuth(fail=True)
        async with context(auth=auth, signer=KeyEcho(), policy=ck.NoRetry()) as cloud:
            with pytest.raises(ck.TokenRefreshFailed, match="CountingAuth"):
                await cloud.execute(op())
            began = trio.current_time()
            with pytest.raises(ck.TokenRefreshFailed, match="next attempt"):
                await cloud.execute(op())
            assert trio.current_time() == began and auth.fetches == 1

    async def test_missing_credentials_reach_the_caller_as_such(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With no credentials anywhere, execute() raises MissingCredentials, also on a retry."""
        auth = ck.EnvAuthProvider(environ={})
        async with context(auth=auth, signer=KeyEcho()) as cloud:
            for _ in range(2):
                with pytest.raises(ck.MissingCredentials, match="CLOUD_ACCESS_KEY"):
                    await cloud.execute(op())

    async def test_operations_after_shutdown_never_start_a_refresh(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Once the context closed, the refresher answers ContextClosed and asks no provider."""
        auth = CountingAuth()
        async with context(auth=auth, signer=KeyEcho()) as cloud:
            refresher = cloud._runtime.refresher
        assert refresher.closed
        with pytest.raises(ck.ContextClosed):
            await refresher.current()
        assert auth.fetches == 0
