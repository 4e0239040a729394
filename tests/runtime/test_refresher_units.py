"""The credential refresher driven directly: backoff, errors, single flight, shutdown, restarts."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.runtime._containment import Containment, Spi
from cloudkit_trio.runtime._credentials import CredentialRefresher
from cloudkit_trio.runtime._events import MetricEvent, RuntimeEvents
from cloudkit_trio.spi import NoopLogger


class UpperJitter(random.Random):
    """Jitter that always picks the longest delay, so backoff times are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class ScriptedAuth(ck.AuthProvider):
    """Credentials that live ``lifetime`` seconds; fails with ``error`` or returns ``garbage``."""

    def __init__(self, lifetime: float | None = 3600.0) -> None:
        self.lifetime = lifetime
        self.calls: list[tuple[str, float]] = []
        self.error: Exception | None = None
        self.garbage: object = None
        self.gate: trio.Event | None = None

    async def get_credentials(self) -> ck.Credentials:
        return await self._answer("get_credentials")

    async def refresh_credentials(self) -> ck.Credentials:
        return await self._answer("refresh_credentials")

    async def _answer(self, method: str) -> ck.Credentials:
        self.calls.append((method, trio.current_time()))
        if self.gate is not None:
            await self.gate.wait()
        else:
            await trio.sleep(0.01)  # a provider takes time; also keeps a busy loop finite
        if self.error is not None:
            raise self.error
        if self.garbage is not None:
            return self.garbage  # type: ignore[return-value]
        expires = (
            None
            if self.lifetime is None
            else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.lifetime)
        )
        return ck.Credentials(f"AKID{len(self.calls)}", "SECRET", expires_at=expires)


class Harness:
    def __init__(self, auth: ScriptedAuth, *, jitter: random.Random | None = None) -> None:
        self.auth = auth
        self.emitted: list[MetricEvent] = []
        self.stderr = io.StringIO()
        self.containment = Containment(lambda: self.stderr)
        events = RuntimeEvents(ck.ProviderType.AWS, NoopLogger(), self.emitted.append)
        self.refresher = CredentialRefresher(
            auth, events, self.containment, random=jitter or UpperJitter()
        )

    async def fetch_into(self, got: list[ck.Credentials]) -> None:
        """One caller: wait for credentials and keep them."""
        got.append(await self.refresher.current())

    def calls_between(self, start: float, end: float) -> list[float]:
        return [t for _, t in self.auth.calls if start <= t < end]


@asynccontextmanager
async def running(harness: Harness) -> AsyncIterator[Harness]:
    async with trio.open_nursery() as nursery:
        await nursery.start(harness.refresher.run)
        yield harness
        nursery.cancel_scope.cancel()


async def failing_for_good(harness: Harness, error: Exception) -> float:
    """Fetch once, then let the provider fail from the advisory window on; its start time."""
    await harness.refresher.current()
    harness.auth.error = error
    start = trio.current_time() + 3600 - 15 * 60 - 1
    await trio.sleep_until(start)
    return start


class TestBackoff:
    async def test_background_failures_back_off(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A refresh failing in the advisory window is retried after 1, 2, 4, 8, 16 s: 6 calls a minute."""
        async with running(Harness(ScriptedAuth())) as h:
            start = await failing_for_good(h, ck.TokenRefreshFailed("vault is down"))
            await trio.sleep(62)
            calls = h.calls_between(start, start + 61)
            assert len(calls) == 6
            gaps = [round(b - a, 1) for a, b in itertools.pairwise(calls)]
            assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0]
            assert h.refresher.snapshot("aws").consecutive_failures == 6

    async def test_backoff_is_capped_at_a_minute(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After enough failures the background retries once a minute, never less often."""
        async with running(Harness(ScriptedAuth())) as h:
            start = await failing_for_good(h, ck.TokenRefreshFailed("vault is down"))
            await trio.sleep(400)
            calls = h.calls_between(start, start + 400)
            gaps = [round(b - a) for a, b in itertools.pairwise(calls)]
            assert gaps == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]

    async def test_current_in_the_advisory_window_during_backoff_does_not_call_the_provider(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """While a failed background refresh backs off, current() serves the old credentials, no call."""
        async with running(Harness(ScriptedAuth())) as h:
            await failing_for_good(h, ck.TokenRefreshFailed("vault is down"))
            await trio.sleep(1.5)  # the first attempt failed 1 s ago; the next is 1 s after it
            assert len(h.auth.calls) == 2
            for _ in range(20):
                assert (await h.refresher.current()).access_key == "AKID1"
                await trio.sleep(0.02)
            assert len(h.auth.calls) == 2
            next_attempt_in = h.refresher.snapshot("aws").next_attempt_in
            assert next_attempt_in is not None and 0 < next_attempt_in < 0.2

    async def test_mandatory_window_during_backoff_serves_valid_credentials(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Inside the mandatory window a backoff does not block callers: valid credentials are served."""
        async with running(Harness(ScriptedAuth())) as h:
            await failing_for_good(h, ck.TokenRefreshFailed("vault is down"))
            # Into the mandatory window (5 min after the advisory one opened), between two
            # attempts a minute apart.
            await trio.sleep(5 * 60 + 30)
            assert h.refresher.snapshot("aws").next_attempt_in is not None
            calls = len(h.auth.calls)
            began = trio.current_time()
            credentials = await h.refresher.current()
            assert credentials.access_key == "AKID1" and trio.current_time() == began
            assert len(h.auth.calls) == calls

    async def test_without_credentials_a_second_caller_fails_fast(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With nothing to serve and a backoff running, a caller fails at once with the same class."""
        h = Harness(ScriptedAuth())
        h.auth.error = ck.TokenRefreshFailed("vault is down")
        async with running(h):
            with pytest.raises(ck.TokenRefreshFailed, match="vault is down"):
                await h.refresher.current()
            await trio.sleep(0.5)
            began = trio.current_time()
            with pytest.raises(ck.TokenRefreshFailed, match=r"ScriptedAuth.*next attempt") as info:
                await h.refresher.current()
            assert trio.current_time() == began and len(h.auth.calls) == 1
            assert isinstance(info.value.__cause__, ck.TokenRefreshFailed)
            await trio.sleep(1.0)  # the backoff is over: the next caller may try again
            with pytest.raises(ck.TokenRefreshFailed):
                await h.refresher.current()
            assert len(h.auth.calls) == 2

    async def test_a_success_ends_the_backoff(self, autojump_clock: trio.testing.MockClock) -> None:
        """Once a refresh succeeds, the failure count and the backoff are reset."""
        h = Harness(ScriptedAuth())
        h.auth.error = ck.TokenRefreshFailed("vault is down")
        async with running(h):
            for _ in range(3):
                with pytest.raises(ck.TokenRefreshFailed):
                    await h.refresher.current()
                await trio.sleep(10)
            h.auth.error = None
            assert (await h.refresher.current()).access_key == "AKID4"
            snapshot = h.refresher.snapshot("aws")
            assert (snapshot.consecutive_failures, snapshot.failures) == (0, 3)
            assert snapshot.next_attempt_in is None and snapshot.last_error is None

    async def test_jitter_is_equal_jitter_from_the_injected_random(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The n-th delay lies in [d/2, d] for d = 1, 2, 4, ...; a seeded random repeats it."""

        async def delays(seed: int) -> list[float]:
            h = Harness(ScriptedAuth(), jitter=random.Random(seed))
            h.auth.error = ck.TokenRefreshFailed("vault is down")
            found = []
            async with running(h):
                for _ in range(5):
                    with pytest.raises(ck.TokenRefreshFailed):
                        await h.refresher.current()
                    wait = h.refresher.snapshot("aws").next_attempt_in
                    assert wait is not None
                    found.append(wait)
                    await trio.sleep(wait)
            return found

        first, again = await delays(7), await delays(7)
        assert first == pytest.approx(again)
        for n, delay in enumerate(first):
            assert 2**n / 2 <= delay <= 2**n


class TestNowait:
    async def test_current_nowait_serves_fresh_credentials_and_none_otherwise(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """current_nowait() returns what needs no wait, None before the first fetch and when due."""
        async with running(Harness(ScriptedAuth())) as h:
            assert h.refresher.current_nowait() is None
            fetched = await h.refresher.current()
            assert h.refresher.current_nowait() is fetched
            h.auth.gate = trio.Event()  # the background refresh hangs from the advisory window
            await trio.sleep(3600 - 15 * 60 + 1)
            assert h.refresher.current_nowait() is fetched  # advisory: served while refreshing
            await trio.sleep(5 * 60)
            assert h.refresher.current_nowait() is None  # mandatory: wait for the refresh
            h.auth.gate.set()
            await trio.sleep(1)
            assert h.refresher.current_nowait() is not fetched

    async def test_current_nowait_serves_valid_credentials_during_backoff(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """In the mandatory window with a backoff running, current_nowait() serves, no call."""
        async with running(Harness(ScriptedAuth())) as h:
            await failing_for_good(h, ck.TokenRefreshFailed("vault is down"))
            await trio.sleep(5 * 60 + 30)
            calls = len(h.auth.calls)
            credentials = h.refresher.current_nowait()
            assert credentials is not None and credentials.access_key == "AKID1"
            assert len(h.auth.calls) == calls


class TestErrors:
    async def test_missing_credentials_propagate_as_missing_credentials(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A provider's MissingCredentials reaches callers as MissingCredentials, during backoff too."""
        h = Harness(ScriptedAuth())
        original = ck.MissingCredentials("set CLOUD_ACCESS_KEY", provider="aws")
        h.auth.error = original
        async with running(h):
            with pytest.raises(ck.MissingCredentials, match="ScriptedAuth: set CLOUD") as first:
                await h.refresher.current()
            with pytest.raises(ck.MissingCredentials, match="next attempt") as second:
                await h.refresher.current()
        for error in (first.value, second.value):
            assert error is not original and error.__cause__ is original
            assert error.provider == "aws"
        assert h.containment.failures() == {}  # a CloudError is the provider's normal way to fail

    async def test_other_failures_become_token_refresh_failed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A non-auth CloudError from the provider is reported as TokenRefreshFailed from it."""
        h = Harness(ScriptedAuth())
        h.auth.error = ck.ServiceUnavailable("vault sealed")
        async with running(h):
            with pytest.raises(ck.TokenRefreshFailed, match="vault sealed") as info:
                await h.refresher.current()
        assert info.value.__cause__ is h.auth.error

    async def test_each_waiter_gets_its_own_error(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Waiters of one failed round get distinct error objects (the runner adds context to each)."""
        h = Harness(ScriptedAuth())
        h.auth.error = ck.MissingCredentials("none")
        errors: list[ck.CloudError] = []

        async def wait() -> None:
            try:
                await h.refresher.current()
            except ck.MissingCredentials as error:
                errors.append(error)

        async with running(h), trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(wait)
        assert len(errors) == 3 and len({id(e) for e in errors}) == 3
        assert len(h.auth.calls) == 1

    async def test_garbage_return_counts_as_a_containment_failure(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A provider returning something other than Credentials is an SPI failure and a failed refresh."""
        h = Harness(ScriptedAuth())
        h.auth.garbage = {"access_key": "AKID"}
        async with running(h):
            with pytest.raises(ck.TokenRefreshFailed, match="returned dict") as info:
                await h.refresher.current()
        assert isinstance(info.value.__cause__, TypeError)
        assert h.containment.failures() == {Spi.AUTH_PROVIDER: 1}
        assert "auth_provider.get_credentials raised TypeError" in h.stderr.getvalue()

    async def test_a_raising_provider_is_contained_without_its_message(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A non-CloudError is counted and wrapped; its text (maybe a secret) is not repeated."""
        h = Harness(ScriptedAuth())
        h.auth.error = RuntimeError("token=hunter2")
        async with running(h):
            with pytest.raises(ck.TokenRefreshFailed, match="raised RuntimeError") as info:
                await h.refresher.current()
        assert "hunter2" not in str(info.value)
        assert "hunter2" not in (h.refresher.snapshot("aws").last_error or "")
        assert info.value.__cause__ is h.auth.error
        assert h.containment.failures() == {Spi.AUTH_PROVIDER: 1}

    async def test_a_hanging_provider_times_out(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A provider that never answers fails the round after fetch_timeout and is counted."""
        h = Harness(ScriptedAuth())
        h.auth.gate = trio.Event()  # never set
        async with running(h):
            with pytest.raises(ck.TokenRefreshFailed, match="did not answer within 60 s"):
                await h.refresher.current()
            assert trio.current_time() == pytest.approx(60.0)
        assert h.containment.failures() == {Spi.AUTH_PROVIDER: 1}


class TestSingleFlight:
    async def test_waiters_share_one_round(self, autojump_clock: trio.testing.MockClock) -> None:
        """Fifty concurrent first callers share one provider call and get the same credentials."""
        h = Harness(ScriptedAuth())
        got: list[ck.Credentials] = []

        wait = partial(h.fetch_into, got)
        async with running(h), trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(wait)
        assert len(h.auth.calls) == 1 and len({id(c) for c in got}) == 1 and len(got) == 50

    async def test_a_cancelled_waiter_leaves_the_round_to_the_others(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelling one waiter (its deadline) neither cancels the round nor fails the others."""
        h = Harness(ScriptedAuth())
        h.auth.gate = trio.Event()
        got: list[ck.Credentials] = []

        wait = partial(h.fetch_into, got)
        async with running(h):
            with trio.move_on_after(1.0) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(wait)
                    await h.refresher.current()
            assert scope.cancelled_caught and not got
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await trio.sleep(1.0)
                h.auth.gate.set()
        assert len(got) == 1 and len(h.auth.calls) == 1

    async def test_rejection_forces_refresh_credentials(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After the provider rejects credentials, one refresh_credentials call replaces them."""
        h = Harness(ScriptedAuth())
        async with running(h):
            old = await h.refresher.current()
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(h.refresher.refresh_after_rejection, old)
            assert (await h.refresher.current()).access_key == "AKID2"
        assert [method for method, _ in h.auth.calls] == ["get_credentials", "refresh_credentials"]


class TestShutdownAndRestart:
    async def test_close_answers_waiters_context_closed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """close() fails the round's waiters with ContextClosed and cancels the provider call."""
        h = Harness(ScriptedAuth())
        h.auth.gate = trio.Event()  # the fetch hangs until cancelled
        errors: list[BaseException] = []

        async def wait() -> None:
            try:
                await h.refresher.current()
            except ck.CloudError as error:
                errors.append(error)

        async with running(h):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(wait)
                await trio.sleep(1.0)
                h.refresher.close()
            assert len(errors) == 3 and all(type(e) is ck.ContextClosed for e in errors)
            assert trio.current_time() == pytest.approx(1.0)
            began = trio.current_time()
            with pytest.raises(ck.ContextClosed):
                await h.refresher.current()
            assert trio.current_time() == began and len(h.auth.calls) == 1
            assert h.refresher.snapshot("aws").closed

    async def test_closed_refresher_still_serves_valid_credentials(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After close(), credentials that have not expired still serve finishing operations."""
        h = Harness(ScriptedAuth())
        async with running(h):
            await h.refresher.current()
            h.refresher.close()
            await trio.sleep(3600 - 5 * 60)  # mandatory window: no refresh, nothing hangs
            assert (await h.refresher.current()).access_key == "AKID1"
            await trio.sleep(10 * 60)  # expired
            with pytest.raises(ck.ContextClosed):
                await h.refresher.current()
        assert len(h.auth.calls) == 1

    async def test_a_round_asked_for_while_stopped_is_run_when_the_actor_starts(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A caller arriving while the actor is not running waits for its next run, then is served."""
        h = Harness(ScriptedAuth())
        got: list[ck.Credentials] = []

        wait = partial(h.fetch_into, got)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(3.0)
            assert not got and not h.auth.calls
            async with running(h):
                await trio.sleep(1.0)
        assert len(got) == 1 and len(h.auth.calls) == 1

    async def test_restart_after_cancellation_serves_the_pending_round(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The actor cancelled mid-fetch without close() (a restart) runs the round again next time."""
        h = Harness(ScriptedAuth())
        h.auth.gate = trio.Event()
        got: list[ck.Credentials] = []

        wait = partial(h.fetch_into, got)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            with trio.CancelScope() as actor:
                async with running(h):
                    await trio.sleep(1.0)
                    actor.cancel()
            assert not got and not h.refresher.closed and len(h.auth.calls) == 1
            h.auth.gate = None
            async with running(h):
                await trio.sleep(1.0)
        assert len(got) == 1 and len(h.auth.calls) == 2

    async def test_crash_fails_the_round_and_a_restart_works(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A bug in the actor answers the round TokenRefreshFailed; run() again serves new rounds."""
        h = Harness(ScriptedAuth())
        install = h.refresher._install

        def crash(credentials: ck.Credentials) -> None:
            raise RuntimeError("injected crash in the refresher")

        h.refresher._install = crash  # type: ignore[method-assign]
        errors: list[ck.CloudError] = []

        async def wait() -> None:
            try:
                await h.refresher.current()
            except ck.CloudError as error:
                errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            with pytest.raises(RuntimeError, match="injected"):
                await h.refresher.run()
        assert [type(e) for e in errors] == [ck.TokenRefreshFailed]
        # The crash is the cause: the traceback shows the real reason.
        assert isinstance(errors[0].__cause__, RuntimeError)
        h.refresher._install = install  # type: ignore[method-assign]
        async with running(h):
            assert (await h.refresher.current()).access_key == "AKID2"
